"""The environment a test starts from: apprun's defaults, nothing from the caller's shell."""

from __future__ import annotations

import os

import pytest

from apprun.modules import Settings

__all__ = ["clean_environment"]

#: Variables apprun reads that are not settings fields; the test DSN is the suite's own.
_EXTRA_PREFIXES = ("APPRUN_", "OTEL_", "PROMETHEUS_")
_KEEP = frozenset({"APPRUN_TEST_PG_DSN", "APPRUN_TEST_REDIS"})


def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every variable apprun would read, so a test starts from apprun's defaults.

    Every settings field is an environment variable of the same name (case
    insensitive), so the list comes from `Settings` itself: a setting added
    later cannot leak in from the shell (``DATA_TENANT_PREDICATE=false`` once
    failed a security test).
    """
    fields = {name.upper() for name in Settings.model_fields}
    for key in list(os.environ):
        upper = key.upper()
        if upper in _KEEP:
            continue
        if upper in fields or upper.startswith(_EXTRA_PREFIXES):
            monkeypatch.delenv(key, raising=False)
