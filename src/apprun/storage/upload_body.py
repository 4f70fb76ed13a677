"""Upload bodies, read as they arrive: a raw body, or ``multipart/form-data`` with a ``file`` part.

Supabase's clients send both: ``storage3`` a form (``cacheControl``,
``metadata``, then ``file``), supabase-js a raw body with its type in
``Content-Type``. Either way the file's bytes are handed on chunk by chunk
as the client sends them (`multipart`'s push parser never buffers a part),
so an upload never sits whole in memory. The form's small fields are
collected: those before the file are known when it starts, those after it
once it has been read, which is before the metadata row is written.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from multipart import MultipartError, MultipartSegment, PushMultipartParser, parse_options_header

from apprun.kernel.errors import BadRequest

__all__ = ["FORM_OVERHEAD", "FormUpload", "RawUpload", "upload_body"]

#: A form field other than the file is a name, a number or a small JSON object.
MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 16
#: The most a form adds to its file: every other field at its largest, with the parts' headers.
FORM_OVERHEAD = (MAX_FIELDS + 1) * (MAX_FIELD_BYTES + 1024)


class RawUpload:
    """A body that is the file itself."""

    def __init__(self, stream: AsyncIterator[bytes], content_type: str | None, cache_control: str | None) -> None:
        self._stream = stream
        self.content_type = content_type
        self.cache_control = cache_control
        self.metadata: dict[str, Any] | None = None
        self.filename: str | None = None
        self.fields: dict[str, str] = {}

    async def start(self) -> None:
        """Nothing to read ahead of the bytes."""

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            if chunk:
                yield chunk


class FormUpload:
    """A ``multipart/form-data`` body whose ``file`` part is the file."""

    def __init__(self, stream: AsyncIterator[bytes], boundary: str, file_field: str = "file") -> None:
        self._stream = stream
        self._parser = PushMultipartParser(boundary, max_segment_count=MAX_FIELDS + 1, strict=True)
        self._events = self._parse()
        self._file_field = file_field
        self.fields: dict[str, str] = {}
        self.content_type: str | None = None
        self.filename: str | None = None

    @property
    def cache_control(self) -> str | None:
        return self.fields.get("cacheControl")

    @property
    def metadata(self) -> dict[str, Any] | None:
        raw = self.fields.get("metadata")
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise BadRequest("storage.invalid_metadata") from exc
        if not isinstance(value, dict):
            raise BadRequest("storage.invalid_metadata")
        return value

    async def start(self) -> None:
        """Read up to the file part: the fields before it, its type and name."""
        segment = await self._next_fields()
        if segment is None:
            raise BadRequest("storage.no_file")
        self.content_type = segment.content_type
        self.filename = segment.filename

    async def chunks(self) -> AsyncIterator[bytes]:
        async for event in self._events:
            if event is None:
                break
            if isinstance(event, bytes | bytearray):
                yield bytes(event)
        if await self._next_fields() is not None:
            raise BadRequest("storage.one_file_only")

    async def _next_fields(self) -> MultipartSegment | None:
        """Collect fields until the next file part (returned) or the end (None)."""
        current: MultipartSegment | None = None
        value = bytearray()
        async for event in self._events:
            if isinstance(event, MultipartSegment):
                if event.filename is not None or event.name == self._file_field:
                    return event
                current, value = event, bytearray()
            elif event is None:
                if current is not None:
                    self.fields[current.name] = value.decode("utf-8", errors="replace")
                current = None
            else:
                value += event
                if len(value) > MAX_FIELD_BYTES:
                    raise BadRequest("storage.field_too_large", params={"max": MAX_FIELD_BYTES})
        return None

    async def _parse(self) -> AsyncIterator[MultipartSegment | bytearray | bytes | None]:
        try:
            async for data in self._stream:
                if data:
                    for event in self._parser.parse(data):
                        yield event
            for event in self._parser.parse(b""):
                yield event
            self._parser.close()
        except MultipartError as exc:
            raise BadRequest("storage.malformed_multipart") from exc


def upload_body(
    stream: AsyncIterator[bytes], content_type: str | None, cache_control: str | None = None
) -> RawUpload | FormUpload:
    """The reader for a body of ``content_type``: a form's ``file`` part, or the whole body."""
    value, options = parse_options_header(content_type or "")
    if value.lower() == "multipart/form-data":
        boundary = options.get("boundary")
        if not boundary:
            raise BadRequest("storage.malformed_multipart")
        return FormUpload(stream, boundary)
    return RawUpload(stream, content_type or None, cache_control)
