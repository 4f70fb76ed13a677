"""The rbac module's settings section: none of its own yet.

It exists so that every module has a section (the contract in
kernel/module.py): a setting the rbac module needs later goes here.
"""

from __future__ import annotations

from apprun.kernel.config import KernelSettings

__all__ = ["RbacSettings"]


class RbacSettings(KernelSettings):
    """The rbac module's section of the settings (empty)."""
