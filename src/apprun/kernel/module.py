"""The module contract: what a product module declares to the kernel.

A product module (auth, data, events …) is one package under ``src/apprun/``
whose ``module.py`` holds one `Module` subclass. ``apprun/modules.py`` lists
them in dependency order, and `app.py` and `cli.py` loop over that list
(through `apprun.kernel.modules`): adding a module is a new package plus one
line there. A module states only what it has; every hook has a no-op default.

What a module declares, read without building it:

- ``name``: its name (the package's), as ``APPRUN_MODULES`` and
  ``requires`` spell it;
- ``requires``: the modules it needs; each must be enabled and listed before
  it, else the start fails with a `ConfigError` naming both;
- ``settings``: its settings section, a `KernelSettings` subclass holding
  only its own fields (``<module>/settings.py``), composed into the one
  ``Settings`` in ``apprun/modules.py``; its code reads them with
  ``section(runtime.settings, MySettings)``;
- ``messages``: its gettext domain, ``locales/<locale>/LC_MESSAGES/<domain>.po``;
- ``tables``: the Python module defining its tables on the kernel's one
  `metadata` (``"apprun.auth.tables"``); no other module names them in SQL;
- ``migrations``: the package of its Alembic revisions (``"apprun.auth.migrations"``),
  one branch labelled with its ``name``; every listed module's are migrated,
  enabled or not (``kernel.modules.migration_locations``);
- `cli`: the ``apprun`` sub-command groups it adds (typer apps);
- `doctor_checks`: what ``apprun doctor`` checks for it (its engines).

Its lifecycle, in this order:

1. **Build**: ``__init__(runtime, wiring)`` builds its services from its
   settings, takes the services of the modules below it with
   ``wiring.get(Rbac)`` and publishes its own with ``wiring.provide(obj)``.
   No I/O: building the application is cheap.
2. **Wire**: `wire` runs on every module once all are built, lowest first. A
   module fills there the ports a lower module declares (data tells events
   who may see a record's event; auth gives tenancy its user directory). A
   lower module never looks for a higher one: a port whose filler is switched
   off keeps its safe default.
3. **Mount**: app.py collects `routes`, `request_layers`, `middleware`,
   `dependencies`, `fast_routes` and `openapi_extenders`; the health checks
   (`health_checks`) are registered
   when the module has started. Handlers get services and the request context
   as typed parameters (``Provide``, see `apprun.kernel.http`), never from
   ``app.state``.
4. **Run**: `start` once the kernel's resources are up (database, migrations),
   in list order; `stop` at shutdown in reverse order, each bounded by the
   runtime's ``STOP_TIMEOUT`` so a hung module cannot keep the others open.

Event subscribers: the kernel cannot name the events module's types, so a
module whose code handles events registers its `Registry` in `wire`, through
the events module's ``Subscriptions`` service
(``wiring.get(Subscriptions).add(registry)``), the way
``create_app(subscribers=...)`` feeds it the application's own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from apprun.kernel.config import ConfigError, KernelSettings

if TYPE_CHECKING:
    import typer
    from litestar.di import Provide
    from litestar.types import ControllerRouterHandler, Middleware

    from apprun.kernel.doctor import DoctorResult
    from apprun.kernel.fastpath import FastRoute, RequestLayer
    from apprun.kernel.health import CheckFn
    from apprun.kernel.runtime import Runtime

__all__ = ["DoctorCheck", "HealthCheck", "Module", "OpenApiExtender", "Wiring"]

T = TypeVar("T")

#: Rewrites the OpenAPI document (data adds a path per collection): async, document in, document out.
OpenApiExtender = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
#: A health check and whether it is required (DOWN makes the whole check 503) or optional (DEGRADED).
HealthCheck = tuple["CheckFn", bool]
#: One ``apprun doctor`` check, ready to await.
DoctorCheck = Callable[[], Awaitable["DoctorResult"]]


class Wiring:
    """The services the modules publish for one another, keyed by class.

    ``get(Rbac)`` is typed (it returns an `Rbac`), so mypy checks the wiring;
    asking for a service nobody published names the module that should have.
    """

    def __init__(self) -> None:
        self._services: dict[type, object] = {}
        self._providers: dict[type, str] = {}
        #: Who is building now (a module's name, or the application before and after the modules).
        self.building = "the application"

    def provide(self, service: object, *, as_type: type | None = None) -> None:
        """Publish ``service`` under its class (or ``as_type``, a class it is an instance of)."""
        key = as_type or type(service)
        if not isinstance(service, key):
            raise TypeError(f"{service!r} is not a {key.__name__}")
        if key in self._services:
            raise ConfigError(f"{key.__name__} is provided twice: by {self._providers[key]} and by {self.building}")
        self._services[key] = service
        self._providers[key] = self.building

    def get(self, cls: type[T]) -> T:
        """The published ``cls``; a `ConfigError` naming its module when there is none."""
        service = self.find(cls)
        if service is None:
            owner = cls.__module__.split(".")[1] if cls.__module__.startswith("apprun.") else cls.__module__
            raise ConfigError(
                f"{self.building} needs {cls.__name__}, which nothing provided: the {owner} module "
                f"({cls.__module__}) provides it, so it must be enabled and listed before {self.building}"
            )
        return service

    def find(self, cls: type[T]) -> T | None:
        """The published ``cls``, or None (for what is optional: a port's filler, the app's hooks)."""
        service = self._services.get(cls)
        return service if isinstance(service, cls) else None


class Module(ABC):
    """One product module, as the kernel sees it. See the module docstring for the lifecycle."""

    #: The module's name: its package's, as ``APPRUN_MODULES`` and ``requires`` spell it.
    name: ClassVar[str]
    #: The modules it needs, by name (enabled, and earlier in the module list).
    requires: ClassVar[tuple[str, ...]] = ()
    #: Its settings section: a `KernelSettings` subclass with only its own fields.
    settings: ClassVar[type[KernelSettings]] = KernelSettings
    #: Its gettext domain (``locales/<locale>/LC_MESSAGES/<domain>.po``), or None.
    messages: ClassVar[str | None] = None
    #: The Python module that defines its tables on the kernel's ``metadata`` (``"apprun.auth.tables"``), or None.
    tables: ClassVar[str | None] = None
    #: The package of its Alembic revisions, one branch labelled with its ``name`` (``"apprun.auth.migrations"``).
    migrations: ClassVar[str | None] = None

    @abstractmethod
    def __init__(self, runtime: Runtime, wiring: Wiring) -> None:
        """Build the services (no I/O): take lower modules' from ``wiring``, publish its own to it."""

    def wire(self, wiring: Wiring) -> None:  # noqa: ARG002 - a hook: by default it does nothing
        """Fill the ports lower modules declare, once every module is built (default: none)."""
        return None

    def routes(self) -> Sequence[ControllerRouterHandler]:
        """Its HTTP handlers and controllers."""
        return ()

    def request_layers(self) -> Sequence[RequestLayer]:
        """What it does to every routed request before the handler (auth: fill the context with who calls).

        A layer takes the ASGI scope and the request's context, and fills the
        context or raises an `ApiError`. The kernel runs the layers in module
        order on both paths: as one middleware on the framework's, directly on
        the fast path (``kernel/fastpath.py``). Prefer a layer to `middleware`.
        """
        return ()

    def middleware(self) -> Sequence[Middleware]:
        """Its Litestar middleware, for what a request layer cannot do (wrap the reply, say).

        The fast path cannot skip a middleware, so any module declaring one
        turns the fast path off for the whole application.
        """
        return ()

    def fast_routes(self) -> Sequence[FastRoute]:
        """Hot request lines it serves without the framework, exactly as its handlers would (data: reads).

        See ``kernel/fastpath.py``: a route matches only what it serves
        identically, and a test should run its requests through both paths.
        """
        return ()

    def body_limits(self) -> Mapping[str, int | None]:
        """Request bodies it bounds itself, by path prefix: the largest it takes, or None for no kernel limit.

        The kernel refuses a request whose declared ``Content-Length`` passes
        ``HTTP_MAX_BODY_BYTES`` before routing it (413). A module that takes
        larger bodies (storage's uploads) names its paths' prefixes here; for
        those the kernel applies the given limit instead (the longest matching
        prefix wins), and the module's handlers set Litestar's own
        ``request_max_body_size`` (None on a route that cuts the stream off at
        its own limit while reading it).
        """
        return {}

    def cors_expose_headers(self) -> Sequence[str]:
        """Response headers a browser's script may read on a cross-origin reply (data: ``Content-Range``).

        Only the CORS-safelisted headers (``Content-Type``, ``Content-Length``,
        ``Cache-Control``, ...) are readable without being listed; the kernel
        adds its own (``X-Request-Id``).
        """
        return ()

    def dependencies(self) -> Mapping[str, Provide]:
        """Its handlers' dependencies (Litestar ``Provide``), by parameter name (its ``deps.py``).

        Names are unique across the modules and the kernel's ``ctx``.
        """
        return {}

    def openapi_extenders(self) -> Sequence[OpenApiExtender]:
        """What it adds to the OpenAPI document at request time (data: a path per collection)."""
        return ()

    def health_checks(self) -> Mapping[str, HealthCheck]:
        """Its dependencies' checks for ``/.well-known/health-check``: name -> (check, required)."""
        return {}

    async def start(self, runtime: Runtime) -> None:  # noqa: ARG002 - a hook: by default it does nothing
        """Open its resources, once the kernel's are up (in module order)."""
        return None

    async def stop(self, runtime: Runtime) -> None:  # noqa: ARG002 - a hook: by default it does nothing
        """Close its resources (in reverse module order, bounded by ``STOP_TIMEOUT``)."""
        return None

    @classmethod
    def cli(cls) -> Mapping[str, typer.Typer]:
        """The sub-command groups it adds to ``apprun`` (``apprun <group> <command>``)."""
        return {}

    @classmethod
    def doctor_checks(cls, settings: KernelSettings) -> Sequence[DoctorCheck]:  # noqa: ARG003 - a hook: by default none
        """What ``apprun doctor`` checks for it with these settings (the engines it is configured with)."""
        return ()
