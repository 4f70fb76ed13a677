"""apprun: a self-hostable Backend-as-a-Service.

`apprun.app.create_app` builds the ASGI application; `apprun.cli` is the
``apprun`` command. See docs/ for each module.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("apprun")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"
