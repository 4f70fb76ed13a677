"""The rbac module, as the kernel sees it: the policy service and its HTTP API.

Roles are granted by sources other modules own (tenancy's memberships, auth's
API keys): they declare themselves with ``Rbac.add_source`` in their `wire`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from typing_extensions import override

from apprun.kernel.module import Module, Wiring
from apprun.rbac.api import RbacController
from apprun.rbac.deps import rbac_dependencies
from apprun.rbac.service import Rbac
from apprun.rbac.settings import RbacSettings

if TYPE_CHECKING:
    from litestar.di import Provide
    from litestar.types import ControllerRouterHandler

    from apprun.kernel.runtime import Runtime

__all__ = ["RbacModule"]


class RbacModule(Module):
    name = "rbac"
    settings = RbacSettings
    messages = "rbac"
    tables = "apprun.rbac.tables"
    migrations = "apprun.rbac.migrations"

    def __init__(self, runtime: Runtime, wiring: Wiring) -> None:
        self.rbac = Rbac(runtime.db)
        wiring.provide(self.rbac)

    @override
    def routes(self) -> Sequence[ControllerRouterHandler]:
        return [RbacController]

    @override
    def dependencies(self) -> Mapping[str, Provide]:
        return rbac_dependencies(self.rbac)
