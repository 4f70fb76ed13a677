"""Assembling the modules: which are enabled, building and wiring them, what they mount.

`enabled_modules` reads ``APPRUN_MODULES`` against the ordered module list
(``apprun/modules.py``) and refuses a selection that cannot work; `assemble`
builds the enabled modules in order (`build`), wires them, and registers
their start (in order) and stop (in reverse) on the runtime. The `Assembly` it returns
is what app.py mounts: routes, middleware, the handlers' dependencies (the
kernel's ``ctx`` and the modules', each name declared once) and OpenAPI
extenders.

`migration_locations` and `load_tables` read what every listed module
declares of its schema (enabled or not: a module switched off keeps its
tables migrated, so switching it on needs no step).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from apprun.kernel.config import ConfigError, KernelSettings
from apprun.kernel.http import kernel_dependencies
from apprun.kernel.module import Module, OpenApiExtender, Wiring

if TYPE_CHECKING:
    import sqlalchemy as sa
    from litestar.di import Provide
    from litestar.types import ControllerRouterHandler, Middleware

    from apprun.kernel.fastpath import FastRoute, RequestLayer
    from apprun.kernel.runtime import Hook, Runtime

__all__ = [
    "Assembly",
    "assemble",
    "build",
    "check_module_list",
    "enabled_modules",
    "load_tables",
    "migration_locations",
    "needed_for",
]


def check_module_list(modules: Sequence[type[Module]]) -> None:
    """Names unique, and every module's ``requires`` listed before it: the list itself can work."""
    seen: set[str] = set()
    for module in modules:
        if module.name in seen:
            raise ConfigError(f"two modules are named {module.name!r} in the module list")
        for needed in module.requires:
            if needed not in seen:
                where = "after it" if needed in {m.name for m in modules} else "nowhere"
                raise ConfigError(
                    f"module {module.name} requires module {needed}, which the module list has {where}: "
                    f"list {needed} before {module.name}"
                )
        seen.add(module.name)


def enabled_modules(modules: Sequence[type[Module]], settings: KernelSettings) -> tuple[type[Module], ...]:
    """The modules ``APPRUN_MODULES`` enables (every one when it is empty), in list order.

    A `ConfigError` names what is wrong: an unknown name, or an enabled module
    whose required module is switched off (naming both).
    """
    check_module_list(modules)
    known = [module.name for module in modules]
    wanted = set(settings.apprun_modules) or set(known)
    unknown = sorted(wanted - set(known))
    if unknown:
        raise ConfigError(f"APPRUN_MODULES names no module {', '.join(unknown)}: the modules are {', '.join(known)}")
    enabled = tuple(module for module in modules if module.name in wanted)
    for module in enabled:
        off = [needed for needed in module.requires if needed not in wanted]
        if off:
            raise ConfigError(
                f"module {module.name} requires module {', '.join(off)}, which APPRUN_MODULES switches off: "
                f"add {', '.join(off)} to APPRUN_MODULES, or remove {module.name}"
            )
        if not isinstance(settings, module.settings):
            raise ConfigError(
                f"the settings ({type(settings).__name__}) lack module {module.name}'s section "
                f"{module.settings.__name__}: compose it into Settings in apprun/modules.py"
            )
    return enabled


def needed_for(modules: Sequence[type[Module]], name: str) -> tuple[type[Module], ...]:
    """Module ``name`` and every module it requires, directly or not, in list order (for a command)."""
    by_name = {module.name: module for module in modules}
    wanted: set[str] = set()
    pending = [name]
    while pending:
        current = pending.pop()
        if current not in by_name:
            raise ConfigError(f"no module {current} in the module list")
        if current not in wanted:
            wanted.add(current)
            pending.extend(by_name[current].requires)
    return tuple(module for module in modules if module.name in wanted)


def migration_locations(modules: Sequence[type[Module]]) -> tuple[str, ...]:
    """Every module's migrations package, in list order, whether the module is enabled or not."""
    return tuple(module.migrations for module in modules if module.migrations)


def load_tables(modules: Sequence[type[Module]]) -> sa.MetaData:
    """The kernel's metadata with every module's tables loaded on it (what the migrations must build)."""
    from apprun.kernel.db.schema import metadata

    for module in modules:
        if module.tables:
            importlib.import_module(module.tables)
    return metadata


@dataclass(frozen=True, eq=False)
class Assembly:
    """The built modules, in order, and the services they published."""

    modules: tuple[Module, ...]
    wiring: Wiring

    @property
    def names(self) -> list[str]:
        return [module.name for module in self.modules]

    def routes(self) -> list[ControllerRouterHandler]:
        return [route for module in self.modules for route in module.routes()]

    def middleware(self) -> list[Middleware]:
        return [layer for module in self.modules for layer in module.middleware()]

    def request_layers(self) -> list[RequestLayer]:
        return [layer for module in self.modules for layer in module.request_layers()]

    def fast_routes(self) -> list[FastRoute]:
        return [route for module in self.modules for route in module.fast_routes()]

    def body_limits(self) -> dict[str, int | None]:
        """Every module's `Module.body_limits`; a prefix two modules declare is a `ConfigError`."""
        return _merged("body limit prefix", {module.name: module.body_limits() for module in self.modules})

    def cors_expose_headers(self) -> list[str]:
        """Every module's `Module.cors_expose_headers`, once each, in module order."""
        seen: dict[str, None] = {}
        for module in self.modules:
            seen.update((header, None) for header in module.cors_expose_headers())
        return list(seen)

    def dependencies(self) -> dict[str, Provide]:
        """The kernel's (``ctx``) and every module's, by parameter name; a name declared twice is a `ConfigError`."""
        declared = {"kernel": kernel_dependencies(), **{module.name: module.dependencies() for module in self.modules}}
        return _merged("handler dependency", declared)

    def openapi_extenders(self) -> list[OpenApiExtender]:
        return [extend for module in self.modules for extend in module.openapi_extenders()]

    async def stop(self, runtime: Runtime) -> None:
        """Stop the modules in reverse order, each bounded: for a command that built them without a server."""
        from apprun.kernel.runtime import stop_step

        for module in reversed(self.modules):
            await stop_step(module.stop(runtime), f"{type(module).__name__}.stop")


def _merged(what: str, by_module: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    owner: dict[str, str] = {}
    for name, items in by_module.items():
        for key, value in items.items():
            if key in merged:
                raise ConfigError(f"modules {owner[key]} and {name} both declare the {what} {key!r}")
            merged[key] = value
            owner[key] = name
    return merged


def assemble(modules: Sequence[type[Module]], runtime: Runtime, wiring: Wiring | None = None) -> Assembly:
    """Build and wire the ``modules`` that ``APPRUN_MODULES`` enables (see `build`).

    The runtime migrates every listed module's tables, the disabled ones' too.
    """
    runtime.migrations = migration_locations(modules)
    return build(enabled_modules(modules, runtime.settings), runtime, wiring)


def build(modules: Sequence[type[Module]], runtime: Runtime, wiring: Wiring | None = None) -> Assembly:
    """Build and wire ``modules`` (all of them) on ``runtime``; their start and stop join its hooks.

    ``wiring`` may carry what the application provides before the modules are
    built (data's hooks). Nothing here does I/O. A command that needs a few
    modules' services builds just those (``apprun admin create``).
    """
    check_module_list(modules)
    wiring = wiring or Wiring()
    built: list[Module] = []
    for cls in modules:
        wiring.building = cls.name
        built.append(cls(runtime, wiring))
    for module in built:
        wiring.building = module.name
        module.wire(wiring)
    wiring.building = "the application"
    for module in built:
        runtime.on_start(_starter(module))
        # The runtime bounds each stop (stop_step) and runs them in reverse.
        runtime.on_stop(module.stop)
    return Assembly(tuple(built), wiring)


def _starter(module: Module) -> Hook:
    async def start(runtime: Runtime) -> None:
        await module.start(runtime)
        # Registered once started: a check of a bus that is not connected yet would only say DOWN.
        for name, (check, required) in module.health_checks().items():
            runtime.health.register(name, check, required=required)

    start.__qualname__ = f"{type(module).__name__}.start"
    return start
