"""HTTP for the data API: ``/data/{collection}`` (and ``/rest/v1/{collection}``), PostgREST's dialect.

The handlers translate headers and status codes; the grammar, rules and SQL
live below. Replies to reads are the bytes the database built. The reads
and inserts also run on the kernel's fast path (`DataFastRoute`,
``kernel/fastpath.py``): the same functions (`read_rows_reply`,
`read_record_reply`, `insert_rows_reply`) without the framework;
``tests/data/test_fast_path.py`` compares both paths byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import parse_qsl

from litestar import Request, Response, delete, get, head, patch, post, put
from litestar.params import FromPath
from typing_extensions import override

from apprun.data.deps import DataServiceDep
from apprun.data.http_prefs import CSV, Preferences, content_range, negotiate, parse_prefer, parse_range, to_csv
from apprun.data.query.ast import Filter, ReadQuery
from apprun.data.query.grammar import MAX_PARAMS, parse_read
from apprun.data.reads import ReadResult
from apprun.data.rows import check_single, normalize_id, sole_element
from apprun.data.service import DataService
from apprun.data.writes import WriteResult
from apprun.kernel.context import RequestContext
from apprun.kernel.errors import ApiError, BadRequest, Conflict, ForeignKeyViolation, NotFound, UniqueViolation
from apprun.kernel.fastpath import FastReply, FastRoute, ScopeBody, ScopeHeaders
from apprun.kernel.http import CtxDep, TextResponse

if TYPE_CHECKING:
    from litestar.types import HTTPScope, Receive

__all__ = ["DataFastRoute", "HeaderView", "data_routes"]

_PATHS = ["/data/{collection:str}", "/rest/v1/{collection:str}"]
_RECORD_PATHS = ["/data/{collection:str}/{record_id:str}", "/rest/v1/{collection:str}/{record_id:str}"]
_JSON_TYPES = ("application/json", "application/vnd.pgrst.object+json", "")


def _raw_query(request: Request[Any, Any, Any]) -> str:
    raw: bytes = request.scope.get("query_string", b"")
    return raw.decode("latin-1")


def _query(request: Request[Any, Any, Any]) -> ReadQuery:
    return _parse(_raw_query(request))


@lru_cache(maxsize=1024)
def _parse(raw: str) -> ReadQuery:
    """The parsed query string; pure, so a repeated one is parsed once (refusals are not cached)."""
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, max_num_fields=MAX_PARAMS, encoding="utf-8", errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("data.invalid_query", details={"expected": f"at most {MAX_PARAMS} UTF-8 parameters"}) from None
    return parse_read(pairs)


def _prefs(request: Request[Any, Any, Any]) -> Preferences:
    return parse_prefer(request.headers.getall("prefer", []))


class BodySource(Protocol):
    """Where a write's body comes from: Litestar's request, or the fast path's `ScopeBody`."""

    async def body(self) -> bytes: ...

    async def json(self) -> Any: ...


async def _json_body(headers: HeaderView, source: BodySource) -> Any:
    media = (headers.get("content-type") or "").split(";")[0].strip().lower()
    if media not in _JSON_TYPES:
        raise ApiError("data.unsupported_media_type", status=415, params={"type": media[:100]})
    raw = await source.body()
    if not raw.strip():
        raise BadRequest(
            "data.invalid_body", params={"type": "nothing"}, details={"expected": "a JSON object or array"}
        )
    # The kernel's request decodes it: 400 for a body that is not UTF-8, not JSON or nested too deep.
    return await source.json()


async def _body(request: Request[Any, Any, Any]) -> Any:
    return await _json_body(request.headers, request)


@contextmanager
def _write_errors(action: Literal["write", "delete"]) -> Iterator[None]:
    """Database refusals as the data API's codes."""
    try:
        yield
    except UniqueViolation as exc:
        raise Conflict("data.unique_violation", details={"constraint": exc.constraint or None}) from exc
    except ForeignKeyViolation as exc:
        if exc.code != ForeignKeyViolation.default_code:
            raise
        code = "data.still_referenced" if action == "delete" else "data.invalid_reference"
        raise Conflict(code) from exc


def _headers(prefs: Preferences, *keys: str, **extra: str | None) -> dict[str, str]:
    out = {k.replace("_", "-").title(): v for k, v in extra.items() if v is not None}
    applied = prefs.applied(*keys)
    if applied:
        out["Preference-Applied"] = applied
    return out


def _single(body: str, rows: int) -> str:
    check_single(rows)
    return sole_element(body)


def _render(body: str, rows: int, representation: str) -> tuple[str, str]:
    if representation == "object":
        return _single(body, rows), "application/json"
    if representation == "csv":
        return to_csv(body), CSV  # Litestar adds "; charset=utf-8"
    return body, "application/json"


# --- reads -------------------------------------------------------------------------------------
class HeaderView(Protocol):
    """What a read takes of the request's headers: Litestar's ``Headers``, or the fast path's `ScopeHeaders`."""

    def get(self, key: str, /) -> str | None: ...

    def getall(self, key: str, default: list[str], /) -> list[str]: ...


async def _read(
    headers: HeaderView, raw_query: str, ctx: RequestContext, data_service: DataService, collection: str
) -> tuple[ReadResult, int, dict[str, str], str]:
    representation = negotiate(headers.get("accept"))
    prefs = parse_prefer(headers.getall("prefer", []))
    query = _parse(raw_query)
    limit, offset = query.limit, query.offset
    ranged = parse_range(headers.get("range"), headers.get("range-unit"))
    if ranged is not None and limit is None and offset is None:
        offset, limit = ranged
    count = prefs.get("count")
    result = await data_service.reads.read(
        ctx,
        collection,
        query,
        limit=limit,
        offset=offset,
        count=count,  # type: ignore[arg-type]
    )
    start = offset or 0
    status = 200
    if result.total is not None:
        if start > result.total or (start and start == result.total and result.total > 0 and not result.rows):
            raise ApiError(
                "data.range_not_satisfiable",
                status=416,
                params={"total": result.total},
                headers={"Content-Range": f"*/{result.total}"},
            )
        if result.rows < result.total:
            status = 206
    headers_out = _headers(prefs, "count", "handling", content_range=content_range(start, result.rows, result.total))
    return result, status, headers_out, representation


async def read_rows_reply(
    headers: HeaderView, raw_query: str, ctx: RequestContext, data_service: DataService, collection: str
) -> tuple[str, int, dict[str, str], str]:
    """``GET /data/{collection}``: the body, status, headers and media type (both paths serve this)."""
    result, status, headers_out, representation = await _read(headers, raw_query, ctx, data_service, collection)
    body, media = _render(result.body, result.rows, representation)
    return body, status, headers_out, media


async def read_record_reply(
    raw_query: str, ctx: RequestContext, data_service: DataService, collection: str, record_id: str
) -> str:
    """``GET /data/{collection}/{id}``: the record's JSON (both paths serve this)."""
    query = _parse(raw_query)
    _only_select(query)
    return await data_service.reads.get_one(ctx, collection, record_id, query)


@get(_PATHS, summary="Read rows: PostgREST filters, select, order, paging", tags=["data"])
async def read_rows(
    request: Request[Any, Any, Any], ctx: CtxDep, data_service: DataServiceDep, collection: FromPath[str]
) -> Response[str]:
    body, status, headers, media = await read_rows_reply(
        request.headers, _raw_query(request), ctx, data_service, collection
    )
    return TextResponse(body, status_code=status, media_type=media, headers=headers)


@head(_PATHS, summary="Read rows without a body (counts and ranges in the headers)", tags=["data"])
async def head_rows(
    request: Request[Any, Any, Any], ctx: CtxDep, data_service: DataServiceDep, collection: FromPath[str]
) -> Response[None]:
    _, status, headers, _ = await _read(request.headers, _raw_query(request), ctx, data_service, collection)
    return Response(None, status_code=status, headers=headers)


# --- writes --------------------------------------------------------------------------------------
def _write_reply_parts(
    headers_in: HeaderView, path: str, prefs: Preferences, result: WriteResult, *, created: bool
) -> tuple[str, int, str, dict[str, str]]:
    """A write's reply: body, status, media type and headers (both paths serve this)."""
    returning = prefs.get("return") or "minimal"
    headers = _headers(prefs, "return", "count", "resolution", "missing", "handling")
    if prefs.get("count"):
        headers["Content-Range"] = content_range(0, result.rows, result.rows)
    else:
        headers["Content-Range"] = content_range(0, result.rows, None)
    if returning == "representation" and result.body is not None:
        body, media = _render(result.body, result.rows, negotiate(headers_in.get("accept")))
        return body, 201 if created else 200, media, headers
    if returning == "headers-only" and created and len(result.ids) == 1:
        base = path.rstrip("/")
        headers["Location"] = f"{base}?id=eq.{result.ids[0]}"
    return "", 201 if created else 204, "application/json", headers


def _write_reply(
    request: Request[Any, Any, Any],
    prefs: Preferences,
    result: WriteResult,
    *,
    created: bool,
) -> Response[str]:
    body, status, media, headers = _write_reply_parts(request.headers, request.url.path, prefs, result, created=created)
    return Response(body, status_code=status, media_type=media, headers=headers)


def _returning(prefs: Preferences, query: ReadQuery) -> ReadQuery | None:
    return query if prefs.get("return") == "representation" else None


def _expect_one(request: Request[Any, Any, Any], prefs: Preferences) -> bool:
    return prefs.get("return") == "representation" and negotiate(request.headers.get("accept")) == "object"


async def insert_rows_reply(
    headers: HeaderView,
    raw_query: str,
    *,
    path: str,
    source: BodySource,
    ctx: RequestContext,
    data_service: DataService,
    collection: str,
) -> tuple[str, int, str, dict[str, str]]:
    """``POST /data/{collection}``: body, status, media type and headers (both paths serve this)."""
    prefs = parse_prefer(headers.getall("prefer", []))
    query = _parse(raw_query)
    body = _only_columns(
        await _json_body(headers, source), query.columns, missing_default=prefs.get("missing") == "default"
    )
    resolution = prefs.get("resolution")
    with _write_errors("write"):
        result = await data_service.writes.create(
            ctx,
            collection,
            body,
            returning=_returning(prefs, query),
            resolution=resolution,  # type: ignore[arg-type]
            on_conflict=query.on_conflict,
            expect_one=prefs.get("return") == "representation" and negotiate(headers.get("accept")) == "object",
        )
    return _write_reply_parts(headers, path, prefs, result, created=True)


@post(
    _PATHS, summary="Insert rows (an object or an array, all or nothing); upsert with Prefer: resolution", tags=["data"]
)
async def insert_rows(
    request: Request[Any, Any, Any], ctx: CtxDep, data_service: DataServiceDep, collection: FromPath[str]
) -> Response[str]:
    body, status, media, headers = await insert_rows_reply(
        request.headers,
        _raw_query(request),
        path=request.url.path,
        source=request,
        ctx=ctx,
        data_service=data_service,
        collection=collection,
    )
    return Response(body, status_code=status, media_type=media, headers=headers)


def _only_columns(body: Any, columns: tuple[str, ...], *, missing_default: bool) -> Any:
    """``columns=a,b``: take only these keys of each object (PostgREST's bulk-insert shape).

    A listed key an object lacks is null, as in PostgREST, unless ``Prefer: missing=default``
    (then the field's default applies). Supabase's clients list every key of a bulk insert in
    ``columns`` and rely on this (their ``default_to_null``, on by default).
    """
    if not columns:
        return body
    keep = set(columns)

    def shape(item: Any) -> Any:
        if not isinstance(item, dict):
            return item
        kept = {k: v for k, v in item.items() if k in keep}
        return kept if missing_default else dict.fromkeys(columns) | kept

    return [shape(item) for item in body] if isinstance(body, list) else shape(body)


@patch(_PATHS, summary="Update the rows the filters select", tags=["data"])
async def update_rows(
    request: Request[Any, Any, Any], ctx: CtxDep, data_service: DataServiceDep, collection: FromPath[str]
) -> Response[str]:
    prefs = _prefs(request)
    query = _query(request)
    body = await _body(request)
    with _write_errors("write"):
        result = await data_service.writes.update(
            ctx,
            collection,
            query,
            body,
            returning=_returning(prefs, query),
            expect_one=_expect_one(request, prefs),
        )
    return _write_reply(request, prefs, result, created=False)


@delete(_PATHS, summary="Delete the rows the filters select", tags=["data"], status_code=200)
async def delete_rows(
    request: Request[Any, Any, Any], ctx: CtxDep, data_service: DataServiceDep, collection: FromPath[str]
) -> Response[str]:
    prefs = _prefs(request)
    query = _query(request)
    with _write_errors("delete"):
        result = await data_service.writes.delete(
            ctx,
            collection,
            query,
            returning=_returning(prefs, query),
            expect_one=_expect_one(request, prefs),
        )
    return _write_reply(request, prefs, result, created=False)


@put(_PATHS, summary="Replace one row: PUT /data/c?id=eq.<uuid> with the whole row (404 when not yours)", tags=["data"])
async def put_row(
    request: Request[Any, Any, Any], ctx: CtxDep, data_service: DataServiceDep, collection: FromPath[str]
) -> Response[str]:
    prefs = _prefs(request)
    query = _query(request)
    record_id = _id_from_filter(query)
    return await _put(request, ctx, data_service, collection, record_id, prefs=prefs, query=query)


def _id_from_filter(query: ReadQuery) -> str:
    where = query.where
    if (
        len(where) != 1
        or not isinstance(where[0], Filter)
        or where[0].path.column != "id"
        or where[0].path.json_path
        or where[0].op != "eq"
        or where[0].negate
        or not isinstance(where[0].value, str)
    ):
        raise BadRequest("data.put_needs_id", hint="data.put_needs_id_hint")
    return where[0].value


async def _put(
    request: Request[Any, Any, Any],
    ctx: RequestContext,
    data_service: DataService,
    collection: str,
    record_id: str,
    *,
    prefs: Preferences,
    query: ReadQuery,
) -> Response[str]:
    body = await _body(request)
    with _write_errors("write"):
        result = await data_service.writes.put(
            ctx,
            collection,
            record_id,
            body,
            returning=_returning(prefs, query),
        )
    return _write_reply(request, prefs, result, created=False)


# --- one record by id (PocketBase's shape: 404 when absent or not yours) ----------------------------
def _only_select(query: ReadQuery) -> ReadQuery:
    if query.where or query.order or query.limit is not None or query.offset is not None:
        raise BadRequest("data.record_route_filters")
    return query


def _select_only(request: Request[Any, Any, Any]) -> ReadQuery:
    return _only_select(_query(request))


@get(_RECORD_PATHS, summary="One row by id (404 when it does not exist or is not yours)", tags=["data"])
async def read_record(
    request: Request[Any, Any, Any],
    ctx: CtxDep,
    data_service: DataServiceDep,
    collection: FromPath[str],
    record_id: FromPath[str],
) -> Response[str]:
    body = await read_record_reply(_raw_query(request), ctx, data_service, collection, record_id)
    return TextResponse(body)


@patch(_RECORD_PATHS, summary="Change one row by id; replies with the row", tags=["data"])
async def update_record(
    request: Request[Any, Any, Any],
    ctx: CtxDep,
    data_service: DataServiceDep,
    collection: FromPath[str],
    record_id: FromPath[str],
) -> Response[str]:
    query = _select_only(request)
    prefs = _prefs(request)
    body = await _body(request)
    minimal = prefs.get("return") == "minimal"
    with _write_errors("write"):
        result = await data_service.writes.update(
            ctx,
            collection,
            ReadQuery(),
            body,
            returning=None if minimal else query,
            ids=[normalize_id(record_id)],
        )
    if not result.rows:
        raise NotFound("data.record_not_found")
    if minimal or result.body is None:
        return Response("", status_code=204, headers=_headers(prefs, "return"))
    return Response(_single(result.body, result.rows), media_type="application/json", headers=_headers(prefs, "return"))


@delete(_RECORD_PATHS, summary="Delete one row by id", tags=["data"], status_code=204)
async def delete_record(
    request: Request[Any, Any, Any],
    ctx: CtxDep,
    data_service: DataServiceDep,
    collection: FromPath[str],
    record_id: FromPath[str],
) -> None:
    _select_only(request)
    with _write_errors("delete"):
        result = await data_service.writes.delete(
            ctx,
            collection,
            ReadQuery(),
            ids=[normalize_id(record_id)],
        )
    if not result.rows:
        raise NotFound("data.record_not_found")


@put(_RECORD_PATHS, summary="Replace one row by id (404 when it does not exist or is not yours)", tags=["data"])
async def put_record(
    request: Request[Any, Any, Any],
    ctx: CtxDep,
    data_service: DataServiceDep,
    collection: FromPath[str],
    record_id: FromPath[str],
) -> Response[str]:
    query = _select_only(request)
    prefs = _prefs(request)
    return await _put(request, ctx, data_service, collection, normalize_id(record_id), prefs=prefs, query=query)


# --- the reads on the kernel's fast path (kernel/fastpath.py) ------------------------------------
_FAST_METHODS = frozenset({"GET", "POST"})
#: Each prefix with the templates the framework's router gives its list and record routes.
_PREFIXES = (
    ("/data/", "/data/{collection}", "/data/{collection}/{record_id}"),
    ("/rest/v1/", "/rest/v1/{collection}", "/rest/v1/{collection}/{record_id}"),
)


class DataFastRoute(FastRoute):
    """The data API's hot requests: GETs of rows and of one record, POSTs of rows."""

    def __init__(self, service: DataService, *, max_body_bytes: int, max_json_depth: int) -> None:
        self.service = service
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth

    @override
    def templates(self) -> frozenset[str]:
        return frozenset(t for _, *templates in _PREFIXES for t in templates)

    @override
    def match(self, method: str, path: str) -> tuple[str, tuple[str, ...]] | None:
        if method not in _FAST_METHODS:
            return None
        for prefix, rows_template, record_template in _PREFIXES:
            if path.startswith(prefix):
                parts = path[len(prefix) :].split("/")
                if not all(parts):
                    return None
                if len(parts) == 1:
                    return rows_template, (parts[0],)
                if len(parts) == 2 and method == "GET":
                    return record_template, (parts[0], parts[1])
                return None
        return None

    @override
    async def serve(
        self, scope: HTTPScope, receive: Receive, ctx: RequestContext, params: tuple[str, ...]
    ) -> FastReply:
        raw_query = scope["query_string"].decode("latin-1")
        headers = ScopeHeaders(scope["headers"])
        if scope["method"] == "POST":
            source = ScopeBody(receive, max_bytes=self.max_body_bytes, max_depth=self.max_json_depth)
            body, status, media, out = await insert_rows_reply(
                headers,
                raw_query,
                path=scope["path"],
                source=source,
                ctx=ctx,
                data_service=self.service,
                collection=params[0],
            )
            return FastReply(body.encode(), status, media, out)
        if len(params) == 1:
            body, status, out, media = await read_rows_reply(headers, raw_query, ctx, self.service, params[0])
            return FastReply(body.encode(), status, media, out)
        return FastReply((await read_record_reply(raw_query, ctx, self.service, params[0], params[1])).encode())


def data_routes() -> list[Any]:
    return [
        read_rows, head_rows, insert_rows, update_rows, delete_rows, put_row,
        read_record, update_record, delete_record, put_record,
    ]  # fmt: skip
