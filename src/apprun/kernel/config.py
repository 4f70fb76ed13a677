"""apprun's configuration: one pydantic-settings object.

Every field is read from the environment variable of the same name in upper
case (``HTTP_PORT``, ``DB_HOST``, ``JWT_SECRET`` …) or from an optional
``.env`` file in the working directory. The names follow the seed
architecture's deployment files, so they work unchanged.

With nothing set, apprun runs on its embedded defaults: SQLite in
``APPRUN_DATA_DIR`` (``./apprun_data``), an in-process event bus, local-disk
storage, and a signing secret generated once and kept in the data dir with
0600 permissions. ``APPRUN_ENV=prod`` refuses those conveniences that are
unsafe in production: it will not boot without a ``JWT_SECRET`` of at least
32 bytes.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from pydantic import DirectoryPath, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = [
    "MIN_SECRET_BYTES",
    "ConfigError",
    "DatabaseConfig",
    "Settings",
    "load_settings",
    "masked_settings",
]

MIN_SECRET_BYTES = 32
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_SECRET_FILE = "jwt_secret"  # noqa: S105 - a file name, not a secret


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


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """The effective configuration of one apprun process."""

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
        description="ms a SQLite read may run on the event loop before moving to a thread; 0 = never",
    )
    db_boot_wait: float = Field(10.0, ge=0, description="seconds to wait for the database at start")
    db_strict_checkout: bool = Field(
        False, description="refuse (not just log) a PostgreSQL checkout by a task already holding a connection"
    )

    # --- engines of later modules --------------------------------------
    pubsub_backend: Literal["memory", "nats"] = "memory"
    pubsub_nats_url: str = "nats://127.0.0.1:4222"
    db_data_role: str = Field(
        "apprun_data", pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="PostgreSQL role data requests run as"
    )
    data_max_page_size: int = Field(1000, ge=1, description="rows a data request returns at most")
    data_allow_unfiltered_writes: bool = Field(False, description="allow PATCH/DELETE without a filter")
    #: Test-only: leave the tenant predicate out of compiled SQL, to prove that
    #: row-level security alone isolates tenants on PostgreSQL. Refused in prod.
    data_tenant_predicate: bool = True
    events_retention_days: int = Field(7, ge=1, description="days published events stay in the history")
    events_relay_batch: int = Field(500, ge=1, le=10_000)
    events_ack_wait: float = Field(30.0, gt=0, description="seconds a handler may take before redelivery")
    events_max_deliver: int = Field(5, ge=1, description="deliveries before an event goes to the dead letters")
    #: Bounded, so a setting cannot let a stream outlive its session by long.
    events_stream_recheck_seconds: float = Field(
        15.0, gt=0, le=300, description="seconds between a live event stream's checks of its session"
    )
    webhook_timeout: float = Field(10.0, gt=0)
    webhook_retry_period: int = Field(86400, ge=1, description="seconds a delivery is retried before it is abandoned")
    webhook_backoff_base: float = Field(10.0, gt=0, description="first retry delay, doubling after")
    webhook_disable_after: int = Field(5, ge=1, description="abandoned deliveries in a row that switch a webhook off")
    webhook_allowlist: Annotated[list[str], NoDecode] = Field(default_factory=list)
    redis_host: str | None = None
    redis_port: int = 6379
    redis_prefix: str = Field("apprun", description="key prefix, so deployments can share one Redis")
    temporal_host: str | None = None
    storage_backend: Literal["local", "s3"] = "local"
    s3_endpoint: str | None = None
    s3_bucket: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None

    # --- security ------------------------------------------------------
    jwt_secret: SecretStr | None = None

    # --- auth ----------------------------------------------------------
    auth_jwt_algorithm: Literal["HS256", "EdDSA", "RS256"] = "HS256"
    auth_jwt_private_key_file: Path | None = Field(None, description="PEM key for EdDSA/RS256")
    auth_jwt_issuer: str = "apprun"
    auth_jwt_audience: str = "apprun"
    auth_jwt_leeway: int = Field(10, ge=0, le=30, description="clock skew allowed, seconds")
    auth_access_ttl: int = Field(900, ge=30, le=86400, description="access token lifetime, seconds")
    auth_session_ttl: int = Field(30 * 86400, ge=300, description="refresh token / session lifetime, seconds")
    auth_refresh_reuse_grace: int = Field(10, ge=0, le=60, description="seconds a used refresh token may be retried")
    auth_password_min_length: int = Field(8, ge=6, le=128)
    auth_password_blocklist_file: Path | None = None
    auth_argon2_memory_kib: int = Field(19 * 1024, ge=19 * 1024)
    auth_argon2_time_cost: int = Field(2, ge=2)
    auth_argon2_parallelism: int = Field(1, ge=1)
    auth_signup_enabled: bool = True
    auth_require_email_verification: bool = False
    auth_site_url: str = Field(
        "http://127.0.0.1:8080", description="your application's URL: base of links in mails, default redirect"
    )
    auth_redirect_allowlist: Annotated[list[str], NoDecode] = Field(default_factory=list)
    auth_rate_limit_ip: str = Field("60/60", description="auth requests per IP: count/seconds")
    auth_rate_limit_account: str = Field(
        "10/900", description="failed sign-ins per account from one client address: count/seconds"
    )
    auth_rate_limit_account_global: str = Field(
        "100/3600", description="failed sign-ins per account from all addresses together: count/seconds"
    )
    auth_register_reveals_existing: bool | None = Field(
        None, description="sign-up answers 409 for a registered email; default: on in dev, off in prod"
    )
    auth_oidc_issuer: str | None = None
    auth_oidc_jwks_url: str | None = None
    auth_oidc_audience: str | None = None
    auth_oidc_email_claim: str = "email"
    auth_oidc_tenant_claim: str = "tenant_id"
    auth_oidc_roles_claim: str = "roles"
    auth_oauth_providers: str = Field("[]", description="JSON list of OAuth2/OIDC login providers")
    kratos_public_url: str | None = None
    rate_limit_backend: Literal["database", "redis", "memory"] | None = None

    # --- mail ----------------------------------------------------------
    mail_backend: Literal["log", "smtp", "none"] | None = None
    mail_from: str = "apprun <no-reply@localhost>"
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_tls: bool = False

    # --- observability -------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    otel_exporter_otlp_endpoint: str | None = None
    otel_service_name: str = "apprun"
    metrics_enabled: bool = True

    @field_validator(
        "http_cors_origins", "http_trusted_proxies", "auth_redirect_allowlist", "webhook_allowlist", mode="before"
    )
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

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
    def _smtp_needs_a_host(self) -> Settings:
        if self.mail_backend == "smtp" and not self.smtp_host:
            raise ValueError("MAIL_BACKEND=smtp needs SMTP_HOST (and usually SMTP_PORT, SMTP_USER, SMTP_PASSWORD)")
        return self

    @model_validator(mode="after")
    def _database_url_is_usable(self) -> Settings:
        if self.database_url is not None:
            _parse_database_url(self.database_url.get_secret_value(), self.data_dir)
        return self

    @model_validator(mode="after")
    def _prod_needs_a_secret(self) -> Settings:
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
            if not self.data_tenant_predicate:
                raise ValueError("DATA_TENANT_PREDICATE=false is for tests only and refused with APPRUN_ENV=prod")
            if self.mail_backend == "log":
                raise ValueError(
                    "MAIL_BACKEND=log only prints mail, which APPRUN_ENV=prod does not allow: "
                    "configure SMTP_HOST (MAIL_BACKEND=smtp) or set MAIL_BACKEND=none"
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
    def mailer(self) -> Literal["log", "smtp", "none"]:
        """Mail delivery: as configured, else SMTP when a host is set, else log (dev) or none."""
        if self.mail_backend is not None:
            return self.mail_backend
        if self.smtp_host:
            return "smtp"
        return "log" if self.is_dev else "none"

    @property
    def rate_limiter(self) -> Literal["database", "redis", "memory"]:
        """Where limit counters live: as configured, else Redis when a host is set, else the database.

        Never memory by default: each worker would count alone, multiplying every limit.
        """
        if self.rate_limit_backend is not None:
            return self.rate_limit_backend
        return "redis" if self.redis_host else "database"

    @property
    def register_reveals_existing(self) -> bool:
        """Whether sign-up (without email verification) answers 409 for a registered address."""
        if self.auth_register_reveals_existing is not None:
            return self.auth_register_reveals_existing
        return self.is_dev

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


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning validation failures into one clear `ConfigError`."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]).upper() or "configuration"
            msg = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"{where}: {msg}" if err["loc"] else msg)
        raise ConfigError("; ".join(lines)) from None


_SECRET_FIELDS = {"jwt_secret", "db_password", "database_url", "s3_access_key", "s3_secret_key", "smtp_password"}


def masked_settings(settings: Settings) -> dict[str, str]:
    """Every setting as ``ENV_NAME -> value``, with secrets masked."""
    out: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if name in _SECRET_FIELDS:
            if value is None:
                shown = "(unset)"
            elif name == "database_url":
                shown = _mask_url_password(value.get_secret_value())
            else:
                shown = "********"
        elif value is None:
            shown = "(unset)"
        elif isinstance(value, list):
            shown = ",".join(str(v) for v in value) or "(empty)"
        else:
            shown = str(value)
        out[name.upper()] = shown
    if settings.jwt_secret is None:
        out["JWT_SECRET"] = f"(generated, kept in {settings.data_dir / _SECRET_FILE})" if settings.is_dev else "(unset)"
    out["(database)"] = settings.database.describe()
    return out


def _mask_url_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":********@", 1)
        return parts._replace(netloc=netloc).geturl()
    return url
