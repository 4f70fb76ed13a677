"""The tenancy module's handler dependencies: ``tenancy: TenancyDep`` is the `Tenancy` service.

See `apprun.kernel.http`.
"""

from __future__ import annotations

from litestar.di import NamedDependency, Provide

from apprun.kernel.http import provide_service
from apprun.tenancy.service import Tenancy

__all__ = ["TenancyDep", "tenancy_dependencies"]

TenancyDep = NamedDependency[Tenancy]


def tenancy_dependencies(tenancy: Tenancy) -> dict[str, Provide]:
    """What `TenancyModule.dependencies` returns: the service under its handlers' parameter name."""
    return {"tenancy": provide_service(tenancy)}
