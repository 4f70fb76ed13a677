"""The data module's settings section: the data API's role, page size, write guards.

The names are the environment variables (``DB_DATA_ROLE``, ``DATA_*``); see
docs/configuration.md, "Data API".
"""

from __future__ import annotations

from pydantic import Field, model_validator

from apprun.kernel.config import KernelSettings

__all__ = ["DataSettings"]


class DataSettings(KernelSettings):
    """The data module's section of the settings."""

    db_data_role: str = Field(
        "apprun_data", pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="PostgreSQL role data requests run as"
    )
    data_max_page_size: int = Field(1000, ge=1, description="rows a data request returns at most")
    data_allow_unfiltered_writes: bool = Field(False, description="allow PATCH/DELETE without a filter")
    #: Test-only: leave the tenant predicate out of compiled SQL, to prove that
    #: row-level security alone isolates tenants on PostgreSQL. Refused in prod.
    data_tenant_predicate: bool = True

    @model_validator(mode="after")
    def _data_prod_checks(self) -> DataSettings:
        if self.apprun_env == "prod" and not self.data_tenant_predicate:
            raise ValueError("DATA_TENANT_PREDICATE=false is for tests only and refused with APPRUN_ENV=prod")
        return self
