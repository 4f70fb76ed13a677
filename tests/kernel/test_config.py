"""Configuration: environment names, embedded defaults, prod refusals, masking."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from apprun.kernel.config import ConfigError, masked_settings
from apprun.modules import Settings, load_settings


def test_embedded_defaults_use_sqlite_in_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(_env_file=None)
    assert s.apprun_env == "dev"
    assert s.http_port == 8080
    assert s.pubsub_backend == "memory"
    db = s.database
    assert db.dialect == "sqlite"
    assert db.path == tmp_path / "apprun_data" / "apprun.db"


def test_reads_the_seed_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PORT", "9999")
    monkeypatch.setenv("DB_DIALECT", "postgres")
    monkeypatch.setenv("DB_HOST", "db.internal")
    monkeypatch.setenv("DB_PORT", "6543")
    monkeypatch.setenv("DB_USER", "app")
    monkeypatch.setenv("DB_PASSWORD", "p@ss word")
    monkeypatch.setenv("DB_NAME", "prod")
    monkeypatch.setenv("PUBSUB_BACKEND", "nats")
    monkeypatch.setenv("HTTP_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    s = load_settings(_env_file=None)
    assert s.http_port == 9999
    assert s.pubsub_backend == "nats"
    assert s.http_cors_origins == ["https://a.example", "https://b.example"]
    assert s.log_level == "DEBUG"
    db = s.database
    assert (db.dialect, db.host, db.port, db.user, db.password, db.name) == (
        "postgres",
        "db.internal",
        6543,
        "app",
        "p@ss word",
        "prod",
    )
    assert db.dsn == "postgresql://app:p%40ss%20word@db.internal:6543/prod"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:pw@h:5433/d", ("postgres", "h", 5433, "u", "pw", "d")),
        ("postgres://h/d", ("postgres", "h", 5432, "postgres", None, "d")),
        ("postgresql+asyncpg://u@h/d", ("postgres", "h", 5432, "u", None, "d")),
    ],
)
def test_database_url_wins_over_db_vars(
    url: str, expected: tuple[object, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_HOST", "ignored")
    db = load_settings(_env_file=None, database_url=url).database
    assert (db.dialect, db.host, db.port, db.user, db.password, db.name) == expected


def test_sqlite_database_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings(_env_file=None, database_url="sqlite:////srv/x.db").database.path == Path("/srv/x.db")
    assert load_settings(_env_file=None, database_url="sqlite:///rel.db").database.path == tmp_path / "rel.db"


def test_unknown_database_scheme_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"DATABASE_URL.*not supported"):
        load_settings(_env_file=None, database_url="mysql://h/d")


def test_sslmode_is_passed_to_the_driver() -> None:
    db = load_settings(_env_file=None, database_url="postgresql://u@h/d?sslmode=require").database
    assert db.sslmode == "require"
    assert db.sqlalchemy_url.endswith("/d?ssl=require")
    with pytest.raises(ConfigError, match="sslmode"):
        load_settings(_env_file=None, database_url="postgresql://u@h/d?sslmode=bogus")


def test_trusted_proxies_must_be_networks() -> None:
    assert load_settings(_env_file=None, http_trusted_proxies="10.0.0.0/8, 127.0.0.1").http_trusted_proxies == [
        "10.0.0.0/8",
        "127.0.0.1",
    ]
    with pytest.raises(ConfigError, match="HTTP_TRUSTED_PROXIES"):
        load_settings(_env_file=None, http_trusted_proxies="not-an-ip")


@pytest.mark.checklist(30)
def test_prod_without_secret_refuses_with_a_clear_message() -> None:
    with pytest.raises(ConfigError, match=r"APPRUN_ENV=prod needs JWT_SECRET.*openssl rand"):
        load_settings(_env_file=None, apprun_env="prod")


@pytest.mark.checklist(30)
def test_prod_with_short_secret_refuses() -> None:
    with pytest.raises(ConfigError, match="JWT_SECRET is 31 bytes"):
        load_settings(_env_file=None, apprun_env="prod", jwt_secret="x" * 31)
    assert load_settings(_env_file=None, apprun_env="prod", jwt_secret="x" * 32).jwt_secret_value() == "x" * 32


def test_dev_secret_is_generated_once_and_private(tmp_path: Path) -> None:
    s = Settings(_env_file=None, apprun_data_dir=tmp_path / "d")
    first = s.jwt_secret_value()
    assert len(first.encode()) >= 32
    path = tmp_path / "d" / "jwt_secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = Settings(_env_file=None, apprun_data_dir=tmp_path / "d").jwt_secret_value()
    assert again == first


def test_dotenv_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("HTTP_PORT=7070\nAPPRUN_ENV=dev\n")
    assert load_settings().http_port == 7070


def test_masked_settings_hide_every_secret() -> None:
    s = load_settings(
        _env_file=None,
        jwt_secret="super-secret-value-that-is-long-enough!!",
        database_url="postgresql://app:hunter2@db/x",
        smtp_password="smtp-secret",
        db_password="pw-secret",
    )
    shown = masked_settings(s)
    text = "\n".join(f"{k}={v}" for k, v in shown.items())
    for secret in ("super-secret-value", "hunter2", "smtp-secret", "pw-secret"):
        assert secret not in text
    assert shown["DATABASE_URL"] == "postgresql://app:********@db/x"
    assert shown["JWT_SECRET"] == "********"


def test_invalid_values_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="HTTP_PORT"):
        load_settings(_env_file=None, http_port=70000)


def _secret_in_child(path: str, start: Any, out: Any) -> None:
    from apprun.kernel.config import _persisted_secret

    start.wait()
    out.put(_persisted_secret(Path(path)))


def test_workers_starting_at_once_share_one_complete_secret(tmp_path: Path) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    path = tmp_path / "data" / "secret"
    procs = [ctx.Process(target=_secret_in_child, args=(str(path), start, out)) for _ in range(8)]
    for p in procs:
        p.start()
    start.set()
    values = {out.get(timeout=20) for _ in procs}
    for p in procs:
        p.join(10)
    assert len(values) == 1
    [value] = values
    assert len(value) >= 32
    assert path.read_text(encoding="utf-8").strip() == value
    assert [p.name for p in path.parent.iterdir()] == ["secret"]  # no temporary files left


def test_the_test_environment_starts_from_apprun_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A setting exported in the developer's shell must not reach a test (any setting, added later too)."""
    from tests.support.environment import clean_environment

    monkeypatch.chdir(tmp_path)
    defaults = load_settings(_env_file=None).model_dump()
    for name in Settings.model_fields:
        monkeypatch.setenv(name.upper(), "shell value that is no valid setting")
    monkeypatch.setenv("DATA_TENANT_PREDICATE", "false")
    clean_environment(monkeypatch)
    assert load_settings(_env_file=None).model_dump() == defaults
