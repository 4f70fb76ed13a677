"""The rbac module's handler dependencies: ``rbac: RbacDep`` is the `Rbac` service (see `apprun.kernel.http`)."""

from __future__ import annotations

from litestar.di import NamedDependency, Provide

from apprun.kernel.http import provide_service
from apprun.rbac.service import Rbac

__all__ = ["RbacDep", "rbac_dependencies"]

RbacDep = NamedDependency[Rbac]


def rbac_dependencies(rbac: Rbac) -> dict[str, Provide]:
    """What `RbacModule.dependencies` returns: the service under its handlers' parameter name."""
    return {"rbac": provide_service(rbac)}
