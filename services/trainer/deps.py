"""Request dependencies of the trainer API, as annotated aliases (`SessionDep`, `AdminDep`).

All of them are every service's (`regrasp.platform.web.fastapi`); the trainer names its routes'
rules ("trainer" in `regrasp.platform.accounts`) and keeps no token cache.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from regrasp.platform.accounts import Principal
from regrasp.platform.web.fastapi import (
    SessionDep,
    SettingsDep,
    admin_dependency,
    caller_dependency,
)

__all__ = ["AdminDep", "CurrentPrincipal", "SessionDep", "SettingsDep"]

#: Who calls: a user's token, an API key, or the services' shared key (401 otherwise).
get_principal = caller_dependency("trainer")
CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
# Jobs take GPU hours: only admins and the services may queue or cancel them.
AdminDep = Annotated[Principal, Depends(admin_dependency(get_principal))]
