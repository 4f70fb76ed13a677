"""The auth module's settings section: tokens, passwords, sign-up, rate limits, identity bridges, mail.

The names are the environment variables (``AUTH_*``, ``KRATOS_PUBLIC_URL``,
``MAIL_*``, ``SMTP_*``); the deployment's signing secret ``JWT_SECRET`` is the
kernel's. See docs/configuration.md, "Auth" and "Mail".
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from apprun.kernel.config import KernelSettings, split_csv

__all__ = ["AuthSettings"]


class AuthSettings(KernelSettings):
    """The auth module's section of the settings."""

    # --- tokens and sessions -------------------------------------------
    auth_jwt_algorithm: Literal["HS256", "EdDSA", "RS256"] = "HS256"
    auth_jwt_private_key_file: Path | None = Field(None, description="PEM key for EdDSA/RS256")
    auth_jwt_issuer: str = "apprun"
    auth_jwt_audience: str = "apprun"
    auth_jwt_leeway: int = Field(10, ge=0, le=30, description="clock skew allowed, seconds")
    auth_access_ttl: int = Field(900, ge=30, le=86400, description="access token lifetime, seconds")
    auth_session_ttl: int = Field(30 * 86400, ge=300, description="refresh token / session lifetime, seconds")
    auth_refresh_reuse_grace: int = Field(10, ge=0, le=60, description="seconds a used refresh token may be retried")

    # --- passwords and sign-up -----------------------------------------
    auth_password_min_length: int = Field(8, ge=6, le=128)
    auth_password_blocklist_file: Path | None = None
    auth_argon2_memory_kib: int = Field(19 * 1024, ge=19 * 1024)
    auth_argon2_time_cost: int = Field(2, ge=2)
    auth_argon2_parallelism: int = Field(1, ge=1)
    auth_hash_threads: int = Field(
        0,
        ge=0,
        le=64,
        description="threads hashing passwords in each worker; 0 = the cores shared among the workers (at least 1)",
    )
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

    # --- identity bridges ----------------------------------------------
    auth_oidc_issuer: str | None = None
    auth_oidc_jwks_url: str | None = None
    auth_oidc_audience: str | None = None
    auth_oidc_email_claim: str = "email"
    auth_oidc_tenant_claim: str = "tenant_id"
    auth_oidc_roles_claim: str = "roles"
    auth_oauth_providers: str = Field("[]", description="JSON list of OAuth2/OIDC login providers")
    kratos_public_url: str | None = None

    # --- mail ----------------------------------------------------------
    mail_backend: Literal["log", "smtp", "none"] | None = None
    mail_from: str = "apprun <no-reply@localhost>"
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_tls: bool = False

    @field_validator("auth_redirect_allowlist", mode="before")
    @classmethod
    def _auth_csv(cls, value: Any) -> Any:
        return split_csv(value)

    @model_validator(mode="after")
    def _smtp_needs_a_host(self) -> AuthSettings:
        if self.mail_backend == "smtp" and not self.smtp_host:
            raise ValueError("MAIL_BACKEND=smtp needs SMTP_HOST (and usually SMTP_PORT, SMTP_USER, SMTP_PASSWORD)")
        return self

    @model_validator(mode="after")
    def _auth_prod_checks(self) -> AuthSettings:
        if self.apprun_env == "prod" and self.mail_backend == "log":
            raise ValueError(
                "MAIL_BACKEND=log only prints mail, which APPRUN_ENV=prod does not allow: "
                "configure SMTP_HOST (MAIL_BACKEND=smtp) or set MAIL_BACKEND=none"
            )
        return self

    @property
    def mailer(self) -> Literal["log", "smtp", "none"]:
        """Mail delivery: as configured, else SMTP when a host is set, else log (dev) or none."""
        if self.mail_backend is not None:
            return self.mail_backend
        if self.smtp_host:
            return "smtp"
        return "log" if self.is_dev else "none"

    @property
    def register_reveals_existing(self) -> bool:
        """Whether sign-up (without email verification) answers 409 for a registered address."""
        if self.auth_register_reveals_existing is not None:
            return self.auth_register_reveals_existing
        return self.is_dev
