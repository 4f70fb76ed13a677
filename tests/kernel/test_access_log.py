"""The access log's own JSON writer renders what structlog would have rendered.

The access log builds its line without structlog's processor chain (it runs on
every request); these tests hold it to the same fields and values as the
structlog line it replaces, so log collectors see no difference.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import structlog

from apprun.kernel.context import RequestContext
from apprun.kernel.logging import access_log, configure_logging


@contextmanager
def _logging_to(out: io.StringIO, level: str = "INFO") -> Iterator[None]:
    """Logs configured to ``out``, and put back as they were afterwards (other tests capture them)."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, root_level = root.handlers[:], root.level
    writer = (access_log.out, access_log.enabled)
    structlog.contextvars.clear_contextvars()
    configure_logging(level, "json", stream=out)
    try:
        yield
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(root_level)
        access_log.out, access_log.enabled = writer


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    with _logging_to(out):
        yield out


def _ctx(**fields: object) -> RequestContext:
    return RequestContext(request_id="req-1", client_ip="127.0.0.1", **fields)  # type: ignore[arg-type]


def _line(stream: io.StringIO) -> dict[str, object]:
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    record: dict[str, object] = json.loads(lines[0])
    stream.seek(0)
    stream.truncate()
    return record


@pytest.mark.parametrize(
    "ctx",
    [
        _ctx(),
        _ctx(user_id="u-1", tenant_id="t-1", trace_id="0af7651916cd43dd8448eb211c80319c"),
    ],
    ids=["anonymous", "signed-in-traced"],
)
def test_the_fast_line_is_the_structlog_line(stream: io.StringIO, ctx: RequestContext) -> None:
    # As the middleware does: the request's ids bound, then the line written.
    structlog.contextvars.bind_contextvars(request_id=ctx.request_id, trace_id=ctx.trace_id)
    access_log(ctx, "GET", "/data/{collection}", "/data/posts", status=200, duration_ms=1.234)
    fast = _line(stream)

    out = access_log.out
    access_log.out = None  # the structlog path, on the same stream and format
    try:
        access_log(ctx, "GET", "/data/{collection}", "/data/posts", status=200, duration_ms=1.234)
    finally:
        access_log.out = out
    slow = _line(stream)

    assert isinstance(fast.pop("ts"), str)
    assert isinstance(slow.pop("ts"), str)
    # Same fields and values. Not the same order: structlog adds the bound ids in the order of its
    # context variables' hashes, which differs between processes; JSON readers do not care.
    assert fast == slow


def test_the_timestamp_is_utc_iso_with_z(stream: io.StringIO) -> None:
    access_log(_ctx(), "GET", "/x", "/x", status=404, duration_ms=0.1)
    ts = str(_line(stream)["ts"])
    assert ts.endswith("Z")
    assert "T" in ts


def test_a_level_above_info_writes_no_access_line() -> None:
    out = io.StringIO()
    with _logging_to(out, "WARNING"):
        access_log(_ctx(), "GET", "/x", "/x", status=200, duration_ms=0.1)
    assert out.getvalue() == ""
