"""Two ASGI callables answering one fixed JSON body: bare, and behind apprun's kernel middleware.

``python -m benchmarks.kernel_floor`` serves each with granian like apprun
and replays one GET with wrk: the difference is what every apprun request
pays whatever it does (request id, context and locale, the span check,
security headers, Prometheus samples, the access-log line), over HTTP.

``FLOOR_APP`` picks the callable (``bare`` or ``kernel``); ``FLOOR_DATA_DIR``
is the kernel's data directory.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

#: A data API record's size, as the view workload returns one.
BODY = b'{"id":"0192f2f4-5b8e-7c3a-9d1e-000000000001","title":"A title","body":"' + b"x" * 400 + b'"}'


async def bare(scope: Scope, receive: Receive, send: Send) -> None:  # noqa: ARG001 - the ASGI signature
    """The fixed body, nothing else."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": BODY})


def _kernel() -> Any:
    from apprun.kernel.logging import configure_logging
    from apprun.kernel.middleware import KernelMiddleware
    from apprun.kernel.runtime import Runtime
    from apprun.modules import load_settings

    settings = load_settings(
        apprun_env="prod",
        apprun_data_dir=os.environ["FLOOR_DATA_DIR"],
        jwt_secret="x" * 64,
    )
    configure_logging(settings.log_level, settings.log_format)
    return KernelMiddleware(bare, Runtime(settings))  # type: ignore[arg-type]


app = _kernel() if os.environ.get("FLOOR_APP") == "kernel" else bare
