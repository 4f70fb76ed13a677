"""The one list of apprun's modules, and the settings they compose.

`MODULES` is in dependency order: every module comes after the modules it
``requires`` (rbac <- tenancy, events <- auth, data <- storage). app.py builds them from
this list, cli.py mounts their commands from it, and nothing else names the
modules: adding one is its package plus one line here (and its section in
`Settings`). ``APPRUN_MODULES`` switches modules off (kernel/modules.py).

`Settings` is one pydantic-settings class: the kernel's fields and every
module's section, by multiple inheritance (the sections' fields are
disjoint, which a test checks).
"""

from __future__ import annotations

from typing import Any

from apprun.auth.module import AuthModule
from apprun.auth.settings import AuthSettings
from apprun.data.module import DataModule
from apprun.data.settings import DataSettings
from apprun.events.module import EventsModule
from apprun.events.settings import EventsSettings
from apprun.kernel.config import KernelSettings, load
from apprun.kernel.module import Module
from apprun.kernel.modules import migration_locations
from apprun.rbac.module import RbacModule
from apprun.rbac.settings import RbacSettings
from apprun.storage.module import StorageModule
from apprun.storage.settings import StorageSettings
from apprun.tenancy.module import TenancyModule
from apprun.tenancy.settings import TenancySettings

__all__ = ["MIGRATIONS", "MODULES", "Settings", "load_settings", "sections"]

#: Every module, lowest first: a module's ``requires`` come before it.
MODULES: tuple[type[Module], ...] = (
    RbacModule,
    TenancyModule,
    EventsModule,
    AuthModule,
    DataModule,
    StorageModule,
)
#: Every module's migrations package, for `apprun.kernel.db.migrate` (each module's tables are migrated,
#: enabled or not).
MIGRATIONS: tuple[str, ...] = migration_locations(MODULES)


class Settings(StorageSettings, DataSettings, AuthSettings, EventsSettings, TenancySettings, RbacSettings):
    """The effective configuration of one apprun process: the kernel's settings and every module's section."""


def load_settings(**overrides: Any) -> Settings:
    """Read the settings (environment, ``.env``, ``overrides``); a `ConfigError` says what is wrong."""
    return load(Settings, **overrides)


def sections() -> dict[str, type[KernelSettings]]:
    """Each module's settings section, by module name, in module order (for ``apprun config show``)."""
    return {module.name: module.settings for module in MODULES}
