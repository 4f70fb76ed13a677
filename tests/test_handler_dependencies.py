"""Handlers get services and the request context injected, typed, and never from ``app.state``.

The HTTP files (``api.py``, ``*_api.py``, ``oauth.py``) hold no ``app.state``
lookups or cast helpers; every parameter a handler takes by injection is
declared ``NamedDependency[<its class>]`` (a module's ``deps.py`` alias, so mypy
--strict checks what the handler does with it) and receives an instance of
that class; names are declared once; and the data API resolves its
dependencies one at a time (kernel/http.py, `provide_service`, says why).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.di import Dependency, Provide
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute

import apprun
from apprun.app import create_app, runtime_of, wiring_of
from apprun.kernel.config import ConfigError
from apprun.kernel.context import SCOPE_KEY, RequestContext
from apprun.kernel.http import provide_service
from apprun.kernel.module import Module, Wiring
from apprun.kernel.modules import Assembly
from apprun.kernel.runtime import Runtime
from apprun.modules import MODULES, Settings

SRC = Path(apprun.__file__).parent
HTTP_FILES = sorted(
    path for path in SRC.glob("*/*.py") if path.name in ("api.py", "oauth.py") or path.name.endswith("_api.py")
)
#: What a handler must not do to find a service: read it by name off the application's state.
STATE_LOOKUP = re.compile(r"\bapp\.state\b|\bstate\.[a-z_]+\b|\bState\b|\bctx_of\b")
#: Handlers that take two services, resolved together in a task group (tens of µs) on requests that
#: hash a password or send mail; anything else (the data API above all) resolves one at a time.
TWO_SERVICES = {
    "/auth/password",
    "/auth/recover",
    "/auth/reset",
    "/auth/verify",
    "/auth/verify/resend",
}


@pytest.fixture
def app(make_settings: Callable[..., Settings], tmp_path: Path) -> Litestar:
    """The whole application, built but not started (building does no I/O)."""
    return create_app(make_settings(database_url=f"sqlite:///{tmp_path / 'app.db'}"), configure_logs=False)


def _handlers(app: Litestar) -> Iterator[tuple[str, HTTPRouteHandler, Any]]:
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for method, (handler, kwargs_model) in route.route_handler_map.items():
                if method != "OPTIONS":
                    yield f"{method} {route.path}", handler, kwargs_model


def _provided(provide: Provide) -> object:
    """What ``provide`` injects, called outside a request (a service is a constant, ``ctx`` comes from a scope)."""
    available: dict[str, Any] = {"scope": {SCOPE_KEY: RequestContext(request_id="test")}, "ctx": None}
    return provide.dependency(**{name: available[name] for name in provide.parsed_fn_signature.parameters})


def test_the_http_files_are_found() -> None:
    names = {f"{path.parent.name}/{path.name}" for path in HTTP_FILES}
    assert {"data/api.py", "auth/api.py", "auth/oauth.py", "auth/oauth_api.py", "events/api.py"} <= names


@pytest.mark.parametrize("path", HTTP_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_http_file_looks_services_up_on_the_app_state(path: Path) -> None:
    found = [
        f"{number}: {line.strip()}"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if STATE_LOOKUP.search(line)
    ]
    assert found == [], "inject the service (the module's deps.py) instead"


def test_every_injected_parameter_is_typed_and_gets_its_type(app: Litestar) -> None:
    dependencies = app.dependencies
    checked = 0
    for route, handler, _ in _handlers(app):
        for name, field in handler.parsed_fn_signature.parameters.items():
            if name not in dependencies:
                continue
            assert any(isinstance(marker, Dependency) for marker in field.metadata), f"{route}: {name} is not injected"
            declared = field.annotation
            assert isinstance(declared, type) and declared is not object, f"{route}: {name} is {declared!r}"
            value = _provided(dependencies[name])
            assert isinstance(value, declared), f"{route}: {name} is declared {declared}, gets {value!r}"
            checked += 1
    assert checked > 80


def test_handlers_resolve_their_dependencies_one_at_a_time(app: Litestar) -> None:
    together = {
        route.split(" ", 1)[1]
        for route, _, kwargs_model in _handlers(app)
        if any(len(batch) > 1 for batch in kwargs_model.dependency_batches)
    }
    assert together == TWO_SERVICES


def test_the_data_api_gets_the_context_then_the_service(app: Litestar) -> None:
    for route, _, kwargs_model in _handlers(app):
        if route.split(" ", 1)[1].startswith(("/data/", "/rest/v1/")):
            batches = [sorted(d.key for d in batch) for batch in kwargs_model.dependency_batches]
            assert batches == [["ctx"], ["data_service"]], route


def test_the_app_state_holds_the_runtime_and_the_wiring_only(app: Litestar) -> None:
    assert set(app.state.dict()) == {"runtime", "wiring"}
    assert isinstance(runtime_of(app), Runtime)
    assert isinstance(wiring_of(app), Wiring)


class _Declares(Module):
    name = "declares"
    declared: Mapping[str, Provide] = {}

    def __init__(self, runtime: Runtime, wiring: Wiring) -> None:
        """Never built: the tests read only its declarations (see `_module`)."""

    def dependencies(self) -> Mapping[str, Provide]:
        return self.declared


def _module(name: str, declared: Mapping[str, Provide]) -> Module:
    cls = type(f"M{name}", (_Declares,), {"name": name, "declared": declared})
    module: Module = cls.__new__(cls)  # nothing to build: only its declarations are read
    return module


def test_a_dependency_name_is_declared_once() -> None:
    one = _module("one", {"thing": provide_service(object())})
    other = _module("other", {"thing": provide_service(object())})
    with pytest.raises(ConfigError, match="modules one and other both declare the handler dependency 'thing'"):
        Assembly((one, other), Wiring()).dependencies()
    shadow = _module("shadow", {"ctx": provide_service(object())})
    with pytest.raises(ConfigError, match="modules kernel and shadow both declare"):
        Assembly((shadow,), Wiring()).dependencies()


def test_every_module_declares_its_dependencies_in_its_deps_file() -> None:
    for module in MODULES:
        deps = SRC / module.name / "deps.py"
        assert deps.is_file(), f"{module.name} has no deps.py"
