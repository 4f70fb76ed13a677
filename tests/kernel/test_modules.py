"""The module contract's machinery: the wiring, which modules are enabled, build/start/stop order."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import pytest

from apprun.kernel.config import ConfigError, KernelSettings
from apprun.kernel.module import HealthCheck, Module, Wiring
from apprun.kernel.modules import assemble, check_module_list, enabled_modules, needed_for
from apprun.kernel.runtime import Runtime
from apprun.modules import Settings


class Clock:
    """What the fake modules did, in order."""

    def __init__(self) -> None:
        self.log: list[str] = []


class Lower:
    """A service a lower module publishes."""


class Port:
    """A port a lower module declares and a higher one fills."""

    def __init__(self) -> None:
        self.filled_by: str | None = None


def fake(name: str, requires: tuple[str, ...] = (), log: Clock | None = None) -> type[Module]:
    clock = log or Clock()

    class Fake(Module):
        requires: ClassVar[tuple[str, ...]] = ()

        def __init__(self, runtime: Runtime, wiring: Wiring) -> None:  # noqa: ARG002 - the contract's signature
            clock.log.append(f"build {self.name}")
            assert wiring.building == self.name
            if not self.requires:
                wiring.provide(Lower())
                wiring.provide(Port())

        def wire(self, wiring: Wiring) -> None:
            clock.log.append(f"wire {self.name}")
            if self.requires:
                wiring.get(Port).filled_by = self.name

        def health_checks(self) -> Mapping[str, HealthCheck]:
            async def check() -> str:
                return "ok"

            return {f"{self.name}-engine": (check, False)}

        async def start(self, runtime: Runtime) -> None:  # noqa: ARG002 - the contract's signature
            clock.log.append(f"start {self.name}")

        async def stop(self, runtime: Runtime) -> None:  # noqa: ARG002 - the contract's signature
            clock.log.append(f"stop {self.name}")

    Fake.name = name
    Fake.requires = requires
    Fake.__name__ = Fake.__qualname__ = f"{name.capitalize()}Module"
    return Fake


def test_wiring_is_typed_and_names_the_missing_provider() -> None:
    wiring = Wiring()
    port = Port()
    wiring.provide(port)
    assert wiring.get(Port) is port
    assert wiring.find(Lower) is None
    wiring.building = "reports"
    with pytest.raises(ConfigError, match=r"reports needs Runtime, which nothing provided: the kernel module"):
        wiring.get(Runtime)
    with pytest.raises(ConfigError, match="Port is provided twice"):
        wiring.provide(Port())
    with pytest.raises(TypeError):
        wiring.provide(port, as_type=Lower)


def test_every_module_is_enabled_by_default_in_list_order() -> None:
    a, b, c = fake("a"), fake("b", ("a",)), fake("c", ("a",))
    assert enabled_modules((a, b, c), KernelSettings(_env_file=None)) == (a, b, c)
    assert enabled_modules((a, b, c), KernelSettings(_env_file=None, apprun_modules="c, A")) == (a, c)


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        ("a,c", r"module c requires module b, which APPRUN_MODULES switches off: add b to APPRUN_MODULES, or remove c"),
        ("a,b,x", r"APPRUN_MODULES names no module x: the modules are a, b, c"),
    ],
)
def test_a_selection_that_cannot_work_is_refused_by_name(selection: str, message: str) -> None:
    modules = (fake("a"), fake("b", ("a",)), fake("c", ("b",)))
    with pytest.raises(ConfigError, match=message):
        enabled_modules(modules, KernelSettings(_env_file=None, apprun_modules=selection))


@pytest.mark.parametrize(
    ("modules", "message"),
    [
        (lambda: (fake("b", ("a",)), fake("a")), "module b requires module a, which the module list has after it"),
        (lambda: (fake("b", ("z",)),), "module b requires module z, which the module list has nowhere"),
        (lambda: (fake("a"), fake("a")), "two modules are named 'a'"),
    ],
)
def test_the_list_itself_must_be_in_dependency_order(modules: Callable[[], Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_module_list(modules())


def test_a_module_whose_settings_section_is_not_composed_is_refused() -> None:
    class Section(KernelSettings):
        pass

    module = fake("a")
    module.settings = Section
    with pytest.raises(ConfigError, match="lack module a's section Section"):
        enabled_modules((module,), KernelSettings(_env_file=None))


async def test_built_and_wired_in_order_started_in_order_stopped_in_reverse(
    make_settings: Callable[..., Settings],
) -> None:
    clock = Clock()
    modules = (fake("a", log=clock), fake("b", ("a",), log=clock), fake("c", ("a",), log=clock))
    runtime = Runtime(make_settings(apprun_modules="a,c"))
    assembly = assemble(modules, runtime)
    assert assembly.names == ["a", "c"]
    assert clock.log == ["build a", "build c", "wire a", "wire c"]
    assert assembly.wiring.get(Port).filled_by == "c"
    clock.log.clear()
    await runtime.start()
    try:
        assert clock.log == ["start a", "start c"]
        # Each module's checks join the health check once it has started; b is off.
        assert runtime.health.names() == ["database", "a-engine", "c-engine"]
    finally:
        await runtime.stop()
    assert clock.log == ["start a", "start c", "stop c", "stop a"]


def test_a_command_builds_its_module_and_what_it_requires() -> None:
    a, b, c, d = fake("a"), fake("b", ("a",)), fake("c"), fake("d", ("b", "c"))
    assert needed_for((a, b, c, d), "b") == (a, b)
    assert needed_for((a, b, c, d), "d") == (a, b, c, d)
    with pytest.raises(ConfigError, match="no module x"):
        needed_for((a,), "x")
