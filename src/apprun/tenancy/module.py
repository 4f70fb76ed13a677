"""The tenancy module, as the kernel sees it: tenants and memberships, and their HTTP API.

Memberships grant roles, so tenancy is one of rbac's assignment sources, and
it keeps the tenants' policy versions (rbac's `PolicyVersions` port); the
users it lists live in auth, which fills tenancy's `Directory` port.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from typing_extensions import override

from apprun.kernel.module import Module, Wiring
from apprun.rbac.service import Rbac
from apprun.tenancy.api import TenantsController
from apprun.tenancy.deps import tenancy_dependencies
from apprun.tenancy.queries import TenantPolicyVersions
from apprun.tenancy.service import Tenancy
from apprun.tenancy.settings import TenancySettings

if TYPE_CHECKING:
    from litestar.di import Provide
    from litestar.types import ControllerRouterHandler

    from apprun.kernel.runtime import Runtime

__all__ = ["TenancyModule"]


class TenancyModule(Module):
    name = "tenancy"
    requires = ("rbac",)
    settings = TenancySettings
    messages = "tenancy"
    tables = "apprun.tenancy.tables"
    migrations = "apprun.tenancy.migrations"

    def __init__(self, runtime: Runtime, wiring: Wiring) -> None:
        self.tenancy = Tenancy(runtime.db, wiring.get(Rbac))
        wiring.provide(self.tenancy)

    @override
    def wire(self, wiring: Wiring) -> None:
        wiring.get(Rbac).add_source(self.tenancy)
        # The policy versions live on tenancy's tenant rows (rbac's PolicyVersions port).
        wiring.get(Rbac).use(versions=TenantPolicyVersions())

    @override
    def routes(self) -> Sequence[ControllerRouterHandler]:
        return [TenantsController]

    @override
    def dependencies(self) -> Mapping[str, Provide]:
        return tenancy_dependencies(self.tenancy)
