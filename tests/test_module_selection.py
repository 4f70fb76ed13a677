"""``APPRUN_MODULES`` switches modules off: no routes, checks or commands of theirs; refusals name the module."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from apprun.app import create_app
from apprun.kernel.config import ConfigError
from apprun.modules import MODULES, Settings

ALL = [module.name for module in MODULES]


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=create_app(settings, configure_logs=False), raise_server_exceptions=False) as c:
        yield c


async def test_every_module_is_on_by_default(make_settings: Callable[..., Settings], database_url: str) -> None:
    async with running(make_settings(database_url=database_url)) as client:
        info = (await client.get("/api/v1/system/info")).json()
        assert info["modules"] == ALL == ["rbac", "tenancy", "events", "auth", "data", "storage"]


async def test_without_data(make_settings: Callable[..., Settings], database_url: str) -> None:
    settings = make_settings(database_url=database_url, apprun_modules="rbac,tenancy,events,auth")
    async with running(settings) as client:
        assert (await client.get("/api/v1/system/info")).json()["modules"] == ["rbac", "tenancy", "events", "auth"]
        signed_up = await client.post("/auth/register", json={"email": "a@example.com", "password": "a passphrase 1"})
        assert signed_up.status_code == 201, signed_up.text
        token = signed_up.json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert (await client.get("/api/v1/events", headers=headers)).status_code == 200
        for path in ("/data/posts", "/rest/v1/posts", "/api/v1/collections"):
            assert (await client.get(path, headers=headers)).status_code == 404, path
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert "/auth/register" in paths
        assert not any(path.startswith(("/data", "/api/v1/collections")) for path in paths)
        health = (await client.get("/.well-known/health-check")).json()
        assert "bus" in health["details"]


async def test_only_rbac_and_tenancy(make_settings: Callable[..., Settings], database_url: str) -> None:
    settings = make_settings(database_url=database_url, apprun_modules="tenancy, rbac")
    async with running(settings) as client:
        assert (await client.get("/api/v1/system/info")).json()["modules"] == ["rbac", "tenancy"]
        health = await client.get("/.well-known/health-check")
        assert health.status_code == 200
        assert list(health.json()["details"]) == ["database"]  # no bus: events is off
        for method, path in (("POST", "/auth/login"), ("GET", "/api/v1/events"), ("GET", "/data/posts")):
            assert (await client.request(method, path)).status_code == 404, path
        # Tenancy's endpoints are there, and (with nobody to sign anyone in) refuse the anonymous caller.
        assert (await client.get("/api/v1/tenants")).status_code == 401


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        ("rbac,tenancy,auth,data", r"module auth requires module events, which APPRUN_MODULES switches off"),
        ("rbac,events,auth", r"module auth requires module tenancy, which APPRUN_MODULES switches off"),
        (
            "rbac,nosuch",
            r"APPRUN_MODULES names no module nosuch: the modules are rbac, tenancy, events, auth, data, storage",
        ),
    ],
)
def test_a_module_whose_requirement_is_off_refuses_to_start(
    make_settings: Callable[..., Settings], selection: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        create_app(make_settings(apprun_modules=selection), configure_logs=False)


def _apprun(tmp_path: Path, *args: str, modules: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_", "APPRUN_", "JWT_"))}
    env |= {"APPRUN_DATA_DIR": str(tmp_path / "data"), "APPRUN_MODULES": modules, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "apprun", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )


def test_a_switched_off_module_adds_no_commands(tmp_path: Path) -> None:
    listed = re.compile(r"^\W*(\w+)\s{2,}\w", re.MULTILINE)  # a row of the help's command table
    on = _apprun(tmp_path, "--help", modules="")
    assert {"admin", "collections", "serve"} <= set(listed.findall(on.stdout)), on.stdout + on.stderr
    off = _apprun(tmp_path, "--help", modules="rbac,tenancy,events,auth")
    assert "admin" in listed.findall(off.stdout)
    assert "collections" not in listed.findall(off.stdout), off.stdout + off.stderr
    refused = _apprun(tmp_path, "collections", "apply", "schema.yaml", modules="rbac,tenancy,events,auth")
    assert refused.returncode != 0
    assert "No such command 'collections'" in refused.stderr
    broken = _apprun(tmp_path, "config", "show", modules="rbac,tenancy,auth")
    assert broken.returncode == 2
    assert "module auth requires module events" in broken.stderr


def test_the_cli_imports_no_module_before_serve_sets_up_metrics(tmp_path: Path) -> None:
    """prometheus_client reads PROMETHEUS_MULTIPROC_DIR once, at import: `apprun serve` sets it first."""
    probe = (
        "import sys, apprun.cli; print(sorted(m for m in ('prometheus_client', 'apprun.modules') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip() == "[]"
