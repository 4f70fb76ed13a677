"""The tenancy module's settings section: none of its own yet.

It exists so that every module has a section (the contract in
kernel/module.py): a setting the tenancy module needs later goes here.
"""

from __future__ import annotations

from apprun.kernel.config import KernelSettings

__all__ = ["TenancySettings"]


class TenancySettings(KernelSettings):
    """The tenancy module's section of the settings (empty)."""
