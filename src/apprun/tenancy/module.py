"""The tenancy module, as the kernel sees it: tenants and memberships, and their HTTP API.

Memberships grant roles, so tenancy is one of rbac's assignment sources; the
users it lists live in auth, which fills tenancy's `Directory` port.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from apprun.kernel.module import Module, Wiring
from apprun.rbac.service import Rbac
from apprun.tenancy.api import TenantsController
from apprun.tenancy.service import Tenancy
from apprun.tenancy.settings import TenancySettings

if TYPE_CHECKING:
    from litestar.types import ControllerRouterHandler

    from apprun.kernel.runtime import Runtime

__all__ = ["TenancyModule"]


class TenancyModule(Module):
    name = "tenancy"
    requires = ("rbac",)
    settings = TenancySettings
    messages = "tenancy"

    def __init__(self, runtime: Runtime, wiring: Wiring) -> None:
        self.tenancy = Tenancy(runtime.db, wiring.get(Rbac))
        wiring.provide(self.tenancy)

    def wire(self, wiring: Wiring) -> None:
        wiring.get(Rbac).add_source(self.tenancy)

    def routes(self) -> Sequence[ControllerRouterHandler]:
        return [TenantsController]

    def state(self) -> Mapping[str, object]:
        return {"tenancy": self.tenancy}
