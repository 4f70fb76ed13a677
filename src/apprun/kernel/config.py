"""apprun's configuration: the kernel's settings, and the base of every module's section.

Every field is read from the environment variable of the same name in upper
case (``HTTP_PORT``, ``DB_HOST``, ``JWT_SECRET`` …) or from an optional
``.env`` file in the working directory. The names follow the seed
architecture's deployment files, so they work unchanged.

`KernelSettings` holds what the kernel itself uses: the process, HTTP, the
database, logs, traces, metrics, Redis, the deployment's signing secret and
the data dir. Each module declares its own section, a subclass of
`KernelSettings` holding only its fields (``auth/settings.py``:
`AuthSettings` …); ``apprun/modules.py`` composes them into the one
``Settings`` class a process reads. A module types its settings with its own
section (`section`), kernel code with `KernelSettings`.

With nothing set, apprun runs on its embedded defaults: SQLite in
``APPRUN_DATA_DIR`` (``./apprun_data``), an in-process event bus, and a
signing secret generated once and kept in the data dir with 0600
permissions. ``APPRUN_ENV=prod`` refuses those conveniences that are unsafe
in production: it will not boot without a ``JWT_SECRET`` of at least 32
bytes.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from pydantic import DirectoryPath, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = [
    "MIN_SECRET_BYTES",
    "ConfigError",
    "DatabaseConfig",
    "KernelSettings",
    "load",
    "masked_sections",
    "masked_settings",
    "own_fields",
    "section",
    "split_csv",
]

MIN_SECRET_BYTES = 32
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_SECRET_FILE = "jwt_secret"  # noqa: S105 - a file name, not a secret

S = TypeVar("S", bound="KernelSettings")


class ConfigError(Exception):
    """The configuration cannot be used; the message says what to change."""


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    """Where the database is, resolved from ``DATABASE_URL`` or ``DB_*``."""

    dialect: Literal["sqlite", "postgres"]
    #: SQLite: path of the database file.
    path: Path | None = None
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str | None = None
    name: str = "apprun"
    #: libpq's sslmode (disable, allow, prefer, require, verify-ca, verify-full); None: the driver's default.
    sslmode: str | None = None

    @property
    def dsn(self) -> str:
        """The libpq-style DSN (PostgreSQL) or ``sqlite:///path``."""
        if self.dialect == "sqlite":
            return f"sqlite:///{self.path}"
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        tail = f"?sslmode={self.sslmode}" if self.sslmode else ""
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(self.name, safe='')}{tail}"

    @property
    def sqlalchemy_url(self) -> str:
        """The URL SQLAlchemy/Alembic use (async drivers)."""
        if self.dialect == "sqlite":
            return f"sqlite+aiosqlite:///{self.path}"
        # asyncpg spells libpq's sslmode `ssl`.
        url = self.dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
        return url.replace("?sslmode=", "?ssl=", 1)

    def describe(self) -> str:
        """A human description without the password."""
        if self.dialect == "sqlite":
            return f"SQLite at {self.path}"
        return f"PostgreSQL at {self.host}:{self.port}/{self.name} as {self.user}"


def split_csv(value: Any) -> Any:
    """A comma-separated environment value as a list (for ``mode="before"`` validators of list fields)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class KernelSettings(BaseSettings):
    """The kernel's settings; every module's section derives from it."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
    )

    # --- process -------------------------------------------------------
    apprun_env: Literal["dev", "prod"] = Field("dev", description="dev or prod")
    apprun_data_dir: Path = Field(Path("apprun_data"), description="where embedded state lives")
    apprun_locales_dir: DirectoryPath | None = Field(
        None, description="your own gettext catalogs, <locale>/LC_MESSAGES/*.po, merged over apprun's"
    )
    apprun_instance: str = Field("", description="instance name in event sources; default: hostname")
    apprun_auto_migrate: bool | None = Field(
        None, description="migrate the schema at start; default: on in dev, off in prod"
    )
    apprun_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="the modules to run, comma-separated; empty: every module"
    )

    # --- HTTP ----------------------------------------------------------
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    http_workers: int = Field(0, ge=0, description="granian workers; 0 = one per core")
    http_max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    http_max_json_depth: int = Field(
        64, ge=1, le=512, description="deepest nesting of arrays and objects a JSON body may have"
    )
    http_cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*"])
    http_trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    http_fast_path: bool = Field(
        True,
        description="serve the modules' hot requests (data reads, inserts) without the framework, identically",
    )
    http_public_url: str = Field(
        "http://127.0.0.1:8080", description="apprun's own URL as clients reach it (OAuth callbacks)"
    )
    http_graceful_timeout: int = Field(30, ge=1, description="seconds in-flight requests get on stop")

    # --- database ------------------------------------------------------
    database_url: SecretStr | None = None
    db_dialect: Literal["sqlite", "postgres", "postgresql"] = "sqlite"
    db_host: str = "127.0.0.1"
    db_port: int = 5432
    db_user: str = "postgres"
    db_password: SecretStr | None = None
    db_name: str = "apprun"
    db_pool_size: int = Field(10, ge=1, description="connections per worker")
    db_pool_timeout: float = Field(5.0, gt=0, description="seconds to wait for a connection")
    db_connect_timeout: float = Field(3.0, gt=0)
    db_statement_timeout: float = Field(15.0, gt=0, description="seconds before a query is cancelled")
    db_sqlite_busy_timeout: float = Field(5.0, gt=0)
    db_sqlite_inline_ms: float = Field(
        5.0,
        ge=0,
        le=1000,
        description="ms a SQLite read may run on the event loop before moving to a thread; 0 = all on threads",
    )
    db_sqlite_group_commit: bool = Field(
        True, description="concurrent SQLite writes in one worker share one transaction and one COMMIT"
    )
    db_sqlite_group_max: int = Field(64, ge=1, description="most transactions one SQLite group commit takes")
    db_sqlite_group_max_ms: float = Field(
        10.0, gt=0, description="ms a SQLite group commit stays open for more members once started"
    )
    db_boot_wait: float = Field(10.0, ge=0, description="seconds to wait for the database at start")
    db_strict_checkout: bool = Field(
        False, description="refuse (not just log) a PostgreSQL checkout by a task already holding a connection"
    )

    # --- Redis and rate-limit counters (kernel/ratelimit.py) -----------
    redis_host: str | None = None
    redis_port: int = 6379
    redis_prefix: str = Field("apprun", description="key prefix, so deployments can share one Redis")
    rate_limit_backend: Literal["database", "redis", "memory"] | None = None

    # --- security ------------------------------------------------------
    jwt_secret: SecretStr | None = None

    # --- observability -------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    otel_exporter_otlp_endpoint: str | None = None
    otel_service_name: str = "apprun"
    metrics_enabled: bool = True

    # Validator names are unique across every section: the composed Settings
    # inherits them all, and two of the same name would hide one another.
    @field_validator("http_cors_origins", "http_trusted_proxies", "apprun_modules", mode="before")
    @classmethod
    def _kernel_csv(cls, value: Any) -> Any:
        return split_csv(value)

    @field_validator("apprun_modules")
    @classmethod
    def _module_names(cls, value: list[str]) -> list[str]:
        return [name.lower() for name in value]

    @field_validator("http_trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network (e.g. 10.0.0.0/8)") from None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _database_url_is_usable(self) -> KernelSettings:
        if self.database_url is not None:
            _parse_database_url(self.database_url.get_secret_value(), self.data_dir)
        return self

    @model_validator(mode="after")
    def _prod_needs_a_secret(self) -> KernelSettings:
        if self.apprun_env == "prod":
            secret = self.jwt_secret.get_secret_value() if self.jwt_secret else ""
            if not secret:
                raise ValueError(
                    "APPRUN_ENV=prod needs JWT_SECRET: set it to a random value of at least "
                    f"{MIN_SECRET_BYTES} bytes, e.g. JWT_SECRET=$(openssl rand -base64 48)"
                )
            if len(secret.encode()) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"JWT_SECRET is {len(secret.encode())} bytes; APPRUN_ENV=prod needs at least "
                    f"{MIN_SECRET_BYTES}: generate one with `openssl rand -base64 48`"
                )
        return self

    # --- derived values ------------------------------------------------
    @property
    def is_dev(self) -> bool:
        return self.apprun_env == "dev"

    @property
    def data_dir(self) -> Path:
        return self.apprun_data_dir.expanduser().resolve()

    @property
    def auto_migrate(self) -> bool:
        return self.is_dev if self.apprun_auto_migrate is None else self.apprun_auto_migrate

    @property
    def instance(self) -> str:
        return self.apprun_instance or os.uname().nodename

    @property
    def workers(self) -> int:
        return self.http_workers or os.cpu_count() or 1

    @property
    def rate_limiter(self) -> Literal["database", "redis", "memory"]:
        """Where limit counters live: as configured, else Redis when a host is set, else the database.

        Never memory by default: each worker would count alone, multiplying every limit.
        """
        if self.rate_limit_backend is not None:
            return self.rate_limit_backend
        return "redis" if self.redis_host else "database"

    @property
    def database(self) -> DatabaseConfig:
        """The database this process uses (``DATABASE_URL`` wins over ``DB_*``)."""
        if self.database_url is not None:
            return _parse_database_url(self.database_url.get_secret_value(), self.data_dir)
        if self.db_dialect == "sqlite":
            return DatabaseConfig(dialect="sqlite", path=self.data_dir / "apprun.db")
        return DatabaseConfig(
            dialect="postgres",
            host=self.db_host,
            port=self.db_port,
            user=self.db_user,
            password=self.db_password.get_secret_value() if self.db_password else None,
            name=self.db_name,
        )

    def jwt_secret_value(self) -> str:
        """The signing secret: ``JWT_SECRET``, or in dev one generated once.

        The generated secret lives in ``APPRUN_DATA_DIR/jwt_secret`` with 0600
        permissions, so tokens survive a restart and no secret is a constant in
        the code.
        """
        if self.jwt_secret is not None and self.jwt_secret.get_secret_value():
            return self.jwt_secret.get_secret_value()
        if not self.is_dev:  # pragma: no cover - the validator refuses this earlier
            raise ConfigError("JWT_SECRET is required outside dev mode")
        return _persisted_secret(self.data_dir / _SECRET_FILE)


def section(settings: KernelSettings, cls: type[S]) -> S:
    """``settings`` as the module section ``cls`` (the composed settings are every section at once)."""
    if not isinstance(settings, cls):
        raise ConfigError(
            f"the settings ({type(settings).__name__}) lack the {cls.__name__} section: "
            "compose it into Settings in apprun/modules.py"
        )
    return settings


def own_fields(cls: type[KernelSettings]) -> list[str]:
    """The fields a section declares itself (the kernel's, for `KernelSettings`)."""
    if cls is KernelSettings:
        return list(KernelSettings.model_fields)
    return [name for name in cls.model_fields if name not in KernelSettings.model_fields]


def _parse_database_url(url: str, data_dir: Path) -> DatabaseConfig:
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme == "sqlite":
        # sqlite:///relative.db (to the working directory) and sqlite:////absolute.db,
        # read the way SQLAlchemy reads them.
        raw = unquote(parts.path)[1:]
        if not raw:
            return DatabaseConfig(dialect="sqlite", path=data_dir / "apprun.db")
        return DatabaseConfig(dialect="sqlite", path=Path(raw).expanduser().resolve())
    if scheme in ("postgres", "postgresql"):
        query = dict(parse_qsl(parts.query))
        sslmode = query.get("sslmode")
        if sslmode is not None and sslmode not in _SSLMODES:
            raise ValueError(f"DATABASE_URL sslmode={sslmode!r} is not one of {', '.join(_SSLMODES)}")
        return DatabaseConfig(
            dialect="postgres",
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password) if parts.password else None,
            name=unquote(parts.path.lstrip("/")) or "postgres",
            sslmode=sslmode,
        )
    raise ValueError(f"DATABASE_URL scheme {parts.scheme!r} is not supported: use postgresql://… or sqlite:///…")


def _persisted_secret(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        existing = path.read_text(encoding="utf-8").strip()
        if existing:
            return existing
    except FileNotFoundError:
        pass
    value = secrets.token_urlsafe(48)
    # Several workers may start at once. The secret is written whole to a file
    # of this process's own, then linked into place: the link either creates
    # the complete file or fails because another worker's is there — a reader
    # can never see a file that is still being written (which gave one worker
    # an empty secret and its tokens 401s on the others).
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(value)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return path.read_text(encoding="utf-8").strip()
        return value
    finally:
        tmp.unlink(missing_ok=True)


def load(cls: type[S], **overrides: Any) -> S:
    """Read the settings ``cls``, turning validation failures into one clear `ConfigError`."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]).upper() or "configuration"
            msg = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"{where}: {msg}" if err["loc"] else msg)
        raise ConfigError("; ".join(lines)) from None


def masked_settings(settings: KernelSettings) -> dict[str, str]:
    """Every setting as ``ENV_NAME -> value``, with secrets masked."""
    return {key: value for group in masked_sections(settings).values() for key, value in group.items()}


def masked_sections(
    settings: KernelSettings, sections: Mapping[str, type[KernelSettings]] | None = None
) -> dict[str, dict[str, str]]:
    """Every setting as ``ENV_NAME -> value`` with secrets masked, grouped by section.

    ``sections`` names the module sections composed into ``settings`` (module
    name -> section class); the kernel's own settings come first, as
    ``kernel``. A field no section claims is shown under ``kernel``.
    """
    groups: dict[str, dict[str, str]] = {"kernel": {}}
    owner = {name: section_name for section_name, cls in (sections or {}).items() for name in own_fields(cls)}
    for name in type(settings).model_fields:
        groups.setdefault(owner.get(name, "kernel"), {})[name.upper()] = _shown(name, getattr(settings, name))
    kernel = groups["kernel"]
    if settings.jwt_secret is None:
        kernel["JWT_SECRET"] = (
            f"(generated, kept in {settings.data_dir / _SECRET_FILE})" if settings.is_dev else "(unset)"
        )
    kernel["(database)"] = settings.database.describe()
    return groups


def _shown(name: str, value: Any) -> str:
    # Masked by type: a secret of a module's section is masked without being listed here.
    if isinstance(value, SecretStr):
        return _mask_url_password(value.get_secret_value()) if name == "database_url" else "********"
    if value is None:
        return "(unset)"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "(empty)"
    return str(value)


def _mask_url_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":********@", 1)
        return parts._replace(netloc=netloc).geturl()
    return url
