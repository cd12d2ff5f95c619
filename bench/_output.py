"""Where a bench's results go: printed, and written as the JSON that docs/ cites."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def emit(out: dict[str, Any], path: Path | None) -> None:
    """Print `out` (less the machine line) and write it to `path` when one is given."""
    print(json.dumps({k: v for k, v in out.items() if k != "machine"}, indent=1))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=1))
        print(f"written: {path}")
