"""The CloudEvents 1.0 envelope, in JSON structured mode.

Every event apprun emits or carries looks like this on the wire::

    {"specversion": "1.0", "id": "01a2…", "source": "apprun/host-1",
     "type": "apprun.user.registered", "subject": "users/01a2…",
     "time": "2026-11-23T13:00:00.123Z", "datacontenttype": "application/json",
     "tenantid": "01a2…", "traceparent": "00-…-…-01", "data": {…}}

``id`` is a UUIDv7, unique and sortable by time. ``tenantid`` is an
extension attribute (absent for platform-wide events); ``traceparent`` is
the W3C trace context of the request that caused the event (the CloudEvents
distributed-tracing extension), so a handler's span joins that trace.

The schema is checked here rather than by the ``cloudevents`` SDK: apprun
needs only the JSON structured format, and msgspec reads and writes it in
one pass.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import msgspec

from apprun.kernel.errors import BadRequest
from apprun.kernel.ids import new_id

__all__ = ["SPEC_VERSION", "CloudEvent", "decode", "encode", "make_event", "subject_for"]

SPEC_VERSION = "1.0"
#: Event types: dotted lower-case words, as reverse-DNS-ish CloudEvents types.
_TYPE = re.compile(r"^[a-z][a-z0-9_\-]*(\.[a-z0-9_\-]+)+$")
_DEFAULT_SOURCE = ["apprun/unknown"]
#: NATS subject token for events that belong to no tenant.
PLATFORM_TOKEN = "platform"  # noqa: S105 - a subject token, not a secret

_encoder = msgspec.json.Encoder()


class CloudEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One event. Field names are the CloudEvents attribute names."""

    specversion: str
    id: str
    source: str
    type: str
    subject: str | None = None
    time: str | None = None
    datacontenttype: str | None = None
    tenantid: str | None = None
    traceparent: str | None = None
    data: Any = None


_decoder = msgspec.json.Decoder(CloudEvent)


def set_default_source(source: str) -> None:
    """``apprun/<instance>``, set once at start."""
    _DEFAULT_SOURCE[0] = source


def valid_type(event_type: str) -> bool:
    return len(event_type) <= 200 and bool(_TYPE.match(event_type))


def make_event(
    event_type: str,
    *,
    tenant_id: str | None,
    subject: str | None = None,
    data: Any = None,
    source: str | None = None,
    traceparent: str | None = None,
) -> CloudEvent:
    """A new event with a fresh id and the current time (UTC)."""
    if not valid_type(event_type):
        raise BadRequest("events.invalid_type", params={"type": event_type})
    if traceparent is None:
        traceparent = _current_traceparent()
    now = dt.datetime.now(dt.UTC)
    return CloudEvent(
        specversion=SPEC_VERSION,
        datacontenttype="application/json",
        id=new_id(),
        source=source or _DEFAULT_SOURCE[0],
        type=event_type,
        subject=subject,
        time=now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        tenantid=tenant_id,
        traceparent=traceparent,
        data=data,
    )


def _current_traceparent() -> str | None:
    from opentelemetry import trace

    span = trace.get_current_span().get_span_context()
    if not span.is_valid:
        return None
    return f"00-{span.trace_id:032x}-{span.span_id:016x}-{int(span.trace_flags):02x}"


def encode(event: CloudEvent) -> bytes:
    return _encoder.encode(event)


def decode(raw: bytes | str) -> CloudEvent:
    event = _decoder.decode(raw)
    if event.specversion != SPEC_VERSION:
        raise ValueError(f"unsupported specversion {event.specversion!r}")
    return event


def subject_for(event: CloudEvent) -> str:
    """The NATS subject: ``apprun.<tenant>.<type>`` (``platform`` for no tenant)."""
    return subject_of(event.tenantid, event.type)


def subject_of(tenant_id: str | None, event_type: str) -> str:
    """`subject_for` an event of ``tenant_id`` and ``event_type``, without the event itself."""
    return f"apprun.{tenant_id or PLATFORM_TOKEN}.{event_type}"
