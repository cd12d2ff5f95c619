"""HTTP routes, one module per resource; every route declares its response model."""

from __future__ import annotations

from typing import Any

from regrasp.clients.orchestrator import ErrorPublic

#: Error responses every authenticated route may give, documented once.
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorPublic} for code in (401, 403, 404, 409, 422)
}
