"""``python -m apprun``: the same as the ``apprun`` command."""

from __future__ import annotations

from apprun.cli import main

main()
