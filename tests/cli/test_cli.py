"""The apprun command, run as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from apprun import __version__
from apprun.testing.engines import NatsServer, free_port


def apprun(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_", "APPRUN_", "JWT_"))}
    full_env = {**clean, "APPRUN_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "apprun", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )


def test_version(tmp_path: Path) -> None:
    out = apprun(tmp_path, "version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"apprun {__version__}"


def test_help_lists_the_commands(tmp_path: Path) -> None:
    out = apprun(tmp_path, "--help")
    for command in ("serve", "migrate", "config", "doctor", "version"):
        assert command in out.stdout


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    env = {"JWT_SECRET": "a-very-long-secret-value-of-more-than-32-bytes", "DATABASE_URL": "postgresql://u:pw123@h/d"}
    out = apprun(tmp_path, "config", "show", "--json", env=env)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["JWT_SECRET"] == "********"
    assert shown["DATABASE_URL"] == "postgresql://u:********@h/d"
    assert "pw123" not in out.stdout and "a-very-long-secret" not in out.stdout
    table = apprun(tmp_path, "config", "show", env=env)
    assert "HTTP_PORT" in table.stdout and "pw123" not in table.stdout


def test_config_error_is_a_clear_message_and_exit_2(tmp_path: Path) -> None:
    out = apprun(tmp_path, "config", "show", env={"APPRUN_ENV": "prod", "JWT_SECRET": "short"})
    assert out.returncode == 2
    assert "JWT_SECRET is 5 bytes" in out.stderr
    assert "Traceback" not in out.stderr


def test_migrate_then_status(tmp_path: Path, database_url: str) -> None:
    env = {"DATABASE_URL": database_url}
    before = apprun(tmp_path, "migrate", "--status", env=env)
    assert before.returncode == 1
    assert "needs `apprun migrate`" in before.stdout, before.stdout + before.stderr
    done = apprun(tmp_path, "migrate", env=env)
    assert done.returncode == 0, done.stderr
    assert "schema at revision" in done.stdout
    after = apprun(tmp_path, "migrate", "--status", env=env)
    assert "up to date" in after.stdout


def test_doctor_all_up(tmp_path: Path) -> None:
    assert apprun(tmp_path, "migrate").returncode == 0
    out = apprun(tmp_path, "doctor")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "database (sqlite)" in out.stdout
    assert "DOWN" not in out.stdout


def test_doctor_reports_a_down_database_with_what_to_do(tmp_path: Path) -> None:
    out = apprun(tmp_path, "doctor", env={"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/x"})
    assert out.returncode == 1
    assert "DOWN" in out.stdout
    assert "start PostgreSQL" in out.stdout


@pytest.mark.slow
def test_doctor_checks_nats_when_configured(tmp_path: Path) -> None:
    assert apprun(tmp_path, "migrate").returncode == 0
    with NatsServer(tmp_path / "nats") as nats:
        up = apprun(tmp_path, "doctor", env={"PUBSUB_BACKEND": "nats", "PUBSUB_NATS_URL": nats.url})
    assert up.returncode == 0, up.stdout
    assert "bus (NATS)" in up.stdout
    down = apprun(
        tmp_path, "doctor", env={"PUBSUB_BACKEND": "nats", "PUBSUB_NATS_URL": f"nats://127.0.0.1:{free_port()}"}
    )
    assert down.returncode == 1
    assert "start nats-server" in down.stdout


def test_serve_in_prod_on_an_unmigrated_database_says_what_to_do(tmp_path: Path) -> None:
    env = {"APPRUN_ENV": "prod", "JWT_SECRET": "x" * 40, "HTTP_PORT": str(free_port())}
    out = apprun(tmp_path, "serve", env=env)
    assert out.returncode == 2
    assert "run `apprun migrate`" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_serve_with_the_database_down_waits_then_says_what_to_do(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/x",
        "DB_BOOT_WAIT": "1",
        "HTTP_PORT": str(free_port()),
    }
    out = apprun(tmp_path, "serve", env=env)
    assert out.returncode == 2
    assert "cannot reach the database" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
