"""`TextResponse` sends what Litestar's `Response` would for the same text, status, media type and headers.

It skips Response's serializer lookup on the data API's hot path; a Litestar
upgrade that changed what Response sends must fail here, not in production.
"""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar, Response, get
from litestar.params import FromPath
from litestar.testing import AsyncTestClient

from apprun.kernel.http import TextResponse

CASES: dict[str, dict[str, Any]] = {
    "json": {"content": '[{"a":1}]'},
    "empty json": {"content": ""},
    "csv": {"content": "a,b\n1,2\n", "media_type": "text/csv"},
    "partial with headers": {"content": "[]", "status_code": 206, "headers": {"Content-Range": "0-0/*"}},
    "unicode": {"content": '{"t":"中文 ✓"}'},
}


def _app() -> Litestar:
    @get("/plain/{case:str}", media_type="application/json")
    async def plain(case: FromPath[str]) -> Response[str]:
        args = dict(CASES[case])
        return Response(args.pop("content"), media_type=args.pop("media_type", "application/json"), **args)

    @get("/text/{case:str}", media_type="application/json")
    async def text(case: FromPath[str]) -> Response[str]:
        args = dict(CASES[case])
        return TextResponse(args.pop("content"), **args)

    return Litestar([plain, text])


@pytest.mark.parametrize("case", list(CASES))
async def test_text_response_sends_what_response_sends(case: str) -> None:
    async with AsyncTestClient(app=_app()) as client:
        plain = await client.get(f"/plain/{case}")
        text = await client.get(f"/text/{case}")
    assert text.status_code == plain.status_code
    assert text.content == plain.content
    assert list(text.headers.multi_items()) == list(plain.headers.multi_items())
