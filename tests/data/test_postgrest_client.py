"""Supabase's Python client for PostgREST (``postgrest`` on PyPI) against apprun's data API.

The client is used the way an application uses it — ``AsyncPostgrestClient``
pointed at ``<server>/data``, signed in with ``.auth(token)`` — so what is
tested is the HTTP it really sends (``select``/``columns``/``on_conflict``
parameters, ``Prefer``, ``Accept: application/vnd.pgrst.object+json``, HEAD
for counts) and how it reads the replies (``Content-Range`` for ``count``,
the error body for `APIError`). It runs in-process: the client is handed the
test's ``AsyncTestClient`` (an ``httpx.AsyncClient`` whose transport is the
app, lifespan included) as its HTTP session.

Every scenario names the call and what it must return: the rows (or the one
object, or None), the count, or the error code. Rows are compared whole after
`_normalise` replaces what differs from run to run: known ids become labels
(``author:Ann``, ``post:Orphan``), the caller's user and tenant ids
``<me>``/``<tenant>``, any other UUID ``<new>`` and timestamps ``<time>``.

The dataset (`AUTHORS`, `POSTS`) belongs to one user's tenant; a second
tenant holds a post and an author of its own, which no scenario may see.
Reads change nothing, so the read table runs against one dataset per dialect
(one database per scenario would make this file take minutes); every write
scenario gets a database of its own and checks every post's views afterwards.

Where apprun differs from PostgREST on purpose, the scenario says so:

- error codes are apprun's (``data.not_single``, ``data.unique_violation``…),
  not PostgREST's (``PGRST116``, ``23505``…), under PostgREST's statuses (406,
  409, 416); `APIError` carries the code, not the status;
- an upsert must name ``on_conflict`` (a unique field): clients never send
  ``id``, so PostgREST's primary-key default cannot apply;
- PATCH and DELETE without a filter are refused (``data.unfiltered_write``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import pytest
from postgrest import APIError, APIResponse, AsyncPostgrestClient, CountMethod, ReturnMethod

from tests.support.accounts import register
from tests.support.schema import define

Ids = Mapping[str, str]
#: Builds a request with the client; the test awaits its ``.execute()``.
Call = Callable[[AsyncPostgrestClient, Ids], Any]

NEW = "<new>"
TIME = "<time>"
ME = "<me>"
TENANT = "<tenant>"

_RULES = dict.fromkeys(("list", "view", "create", "update", "delete"), "authenticated")
AUTHORS_DEF = {
    "name": "authors",
    "fields": [
        {"name": "name", "type": "text", "required": True, "unique": True},
        {"name": "country", "type": "text"},
    ],
    "rules": _RULES,
}
POSTS_DEF = {
    "name": "posts",
    "fields": [
        {"name": "title", "type": "text", "required": True, "unique": True},
        {"name": "body", "type": "text"},
        {"name": "views", "type": "integer", "default": 0},
        {"name": "published", "type": "boolean", "default": False},
        {"name": "author", "type": "relation", "collection": "authors", "on_delete": "set_null"},
    ],
    "rules": _RULES,
}

AUTHORS: list[dict[str, Any]] = [
    {"name": "Ann", "country": "NO"},
    {"name": "Bob", "country": "SE"},
    {"name": "Cleo", "country": None},
]
#: ``author`` holds an author's name here; `world` puts the id in its place.
POSTS: list[dict[str, Any]] = [
    {"title": "Hello world", "body": "First post", "views": 10, "published": True, "author": "Ann"},
    {"title": "Second thoughts", "body": None, "views": 25, "published": True, "author": "Ann"},
    {"title": "Draft ideas", "body": "todo", "views": 0, "published": False, "author": "Bob"},
    {"title": "hello again", "body": "lowercase", "views": 5, "published": True, "author": "Bob"},
    {"title": "Orphan", "body": None, "views": 40, "published": False, "author": None},
]
VIEWS = {p["title"]: p["views"] for p in POSTS}


def post(title: str, **values: Any) -> dict[str, Any]:
    """A post as ``select=*`` returns it (after `_normalise`); a seeded post keeps its label and values."""
    seeded = next((p for p in POSTS if p["title"] == title), None)
    row: dict[str, Any] = {"id": NEW, "body": None, "views": 0, "published": False, "author": None}
    if seeded is not None:
        row |= {**seeded, "id": f"post:{title}", "author": _author_label(seeded["author"])}
    row |= {"title": title, "tenant_id": TENANT, "created_at": TIME, "updated_at": TIME, "created_by": ME}
    return row | values


def _author_label(name: str | None) -> str | None:
    return None if name is None else f"author:{name}"


def views(**changes: int | None) -> dict[str, int | None]:
    """Every post's views after a write: the seeded ones with ``changes`` (title with ``_`` for spaces)."""
    return VIEWS | {title.replace("_", " "): v for title, v in changes.items()}


def views_without(*gone: str) -> dict[str, int | None]:
    return {t: v for t, v in VIEWS.items() if t not in gone}


def bulk(*rows: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for a bulk insert (typed: rows with different keys are still rows)."""
    return list(rows)


def titles(*names: str) -> list[dict[str, str]]:
    return [{"title": name} for name in names]


@dataclass(frozen=True)
class Refused:
    """The call raised `APIError` with this ``code``."""

    code: str


@dataclass(frozen=True)
class Case:
    name: str
    call: Call
    #: ``response.data`` after `_normalise` (a list, one object, None for an empty maybe_single), or `Refused`.
    expect: Any
    #: ``response.count``: None unless the call asked for a count.
    count: int | None = None
    #: Writes touching several rows: their order is not part of the contract (PostgREST's neither).
    any_order: bool = False
    #: Writes: every post's ``views`` by title afterwards (None: not checked).
    views_after: dict[str, int | None] | None = None


def _ids(case: Case) -> str:
    return case.name


# --- reads ------------------------------------------------------------------------------------------
READS = [
    Case(
        "eq on text",
        lambda db, ids: db.table("posts").select("title, views").eq("title", "Hello world"),
        [{"title": "Hello world", "views": 10}],
    ),
    Case(
        "select * returns every column, the system columns too",
        lambda db, ids: db.table("posts").select("*").eq("title", "Orphan"),
        [post("Orphan")],
    ),
    Case(
        "a renamed column (alias:column)",
        lambda db, ids: db.table("posts").select("headline:title").eq("views", 25),
        [{"headline": "Second thoughts"}],
    ),
    Case(
        "neq on a boolean",
        lambda db, ids: db.table("posts").select("title").neq("published", True).order("views"),
        titles("Draft ideas", "Orphan"),
    ),
    Case(
        "gt, ordered by a number",
        lambda db, ids: db.table("posts").select("title, views").gt("views", 5).order("views"),
        [
            {"title": "Hello world", "views": 10},
            {"title": "Second thoughts", "views": 25},
            {"title": "Orphan", "views": 40},
        ],
    ),
    Case(
        "gte and lt on the same column",
        lambda db, ids: db.table("posts").select("title").gte("views", 5).lt("views", 25).order("views"),
        titles("hello again", "Hello world"),
    ),
    Case(
        "in_ a list (a value that matches nothing is fine)",
        lambda db, ids: (
            db.table("posts").select("title").in_("title", ["Orphan", "Hello world", "Nope"]).order("views")
        ),
        titles("Hello world", "Orphan"),
    ),
    Case(
        "in_ with a space and a comma in values (the client quotes the comma)",
        lambda db, ids: db.table("posts").select("title").in_("title", ["Draft ideas", "a,b"]),
        titles("Draft ideas"),
    ),
    Case(
        "like is case-sensitive",
        lambda db, ids: db.table("posts").select("title").like("title", "Hello%"),
        titles("Hello world"),
    ),
    Case(
        "like with PostgREST's * wildcard",
        lambda db, ids: db.table("posts").select("title").like("title", "*again"),
        titles("hello again"),
    ),
    Case(
        "ilike ignores case",
        lambda db, ids: db.table("posts").select("title").ilike("title", "hello%").order("views"),
        titles("hello again", "Hello world"),
    ),
    Case(
        "is_ null",
        lambda db, ids: db.table("posts").select("title").is_("body", None).order("views"),
        titles("Second thoughts", "Orphan"),
    ),
    Case(
        "is_ true",
        lambda db, ids: db.table("posts").select("title").is_("published", True).order("views"),
        titles("hello again", "Hello world", "Second thoughts"),
    ),
    Case(
        "not_.is_ null",
        lambda db, ids: db.table("posts").select("title").not_.is_("author", None).order("views"),
        titles("Draft ideas", "hello again", "Hello world", "Second thoughts"),
    ),
    Case(
        "eq on a relation field (the target's id)",
        lambda db, ids: db.table("posts").select("title").eq("author", ids["author:Bob"]).order("views"),
        titles("Draft ideas", "hello again"),
    ),
    Case(
        "or_ of two conditions (a value with a space)",
        lambda db, ids: db.table("posts").select("title").or_("views.gt.20,title.eq.Draft ideas").order("views"),
        titles("Draft ideas", "Second thoughts", "Orphan"),
    ),
    Case(
        "or_ with a nested and()",
        lambda db, ids: (
            db.table("posts").select("title").or_("and(published.is.true,views.lt.10),author.is.null").order("views")
        ),
        titles("hello again", "Orphan"),
    ),
    Case(
        "or_ ANDed with another filter",
        lambda db, ids: (
            db.table("posts").select("title").eq("published", True).or_("views.lt.6,views.gt.20").order("views")
        ),
        titles("hello again", "Second thoughts"),
    ),
    Case(
        "order by two columns, descending",
        lambda db, ids: db.table("posts").select("title").order("published", desc=True).order("views", desc=True),
        titles("Second thoughts", "Hello world", "hello again", "Orphan", "Draft ideas"),
    ),
    Case(
        "order with nulls first",
        lambda db, ids: db.table("posts").select("title").order("body", nullsfirst=True).order("views"),
        titles("Second thoughts", "Orphan", "Hello world", "hello again", "Draft ideas"),
    ),
    Case(
        "limit",
        lambda db, ids: db.table("posts").select("title").order("views", desc=True).limit(2),
        titles("Orphan", "Second thoughts"),
    ),
    Case(
        "range with an exact count (the other tenant's post is not counted)",
        lambda db, ids: db.table("posts").select("title", count=CountMethod.exact).order("views").range(1, 3),
        titles("hello again", "Hello world", "Second thoughts"),
        count=5,
    ),
    Case(
        "exact count of the filtered rows, one row returned",
        lambda db, ids: (
            db.table("posts").select("title", count=CountMethod.exact).eq("published", True).order("views").limit(1)
        ),
        titles("hello again"),
        count=3,
    ),
    Case(
        "count only (head=True sends HEAD)",
        lambda db, ids: db.table("posts").select("*", count=CountMethod.exact, head=True).gt("views", 0),
        [],
        count=4,
    ),
    Case(
        "range past the end without a count: no rows",
        lambda db, ids: db.table("posts").select("title").order("views").range(10, 12),
        [],
    ),
    Case(
        "range past the end with a count: 416",
        lambda db, ids: db.table("posts").select("title", count=CountMethod.exact).order("views").range(10, 12),
        Refused("data.range_not_satisfiable"),
    ),
    Case(
        "single() returns the object",
        lambda db, ids: db.table("posts").select("title, views").eq("title", "Orphan").single(),
        {"title": "Orphan", "views": 40},
    ),
    Case(
        "single() with no row: 406 (PostgREST: PGRST116)",
        lambda db, ids: db.table("posts").select("title").eq("title", "Nope").single(),
        Refused("data.not_single"),
    ),
    Case(
        "single() with two rows: 406",
        lambda db, ids: db.table("posts").select("title").eq("published", False).single(),
        Refused("data.not_single"),
    ),
    Case(
        "maybe_single() with one row",
        lambda db, ids: db.table("posts").select("title").eq("views", 0).maybe_single(),
        {"title": "Draft ideas"},
    ),
    Case(
        "maybe_single() with no row: None",
        lambda db, ids: db.table("posts").select("title").eq("views", 1).maybe_single(),
        None,
    ),
    Case(
        "maybe_single() with two rows: the client refuses",
        lambda db, ids: db.table("posts").select("title").eq("published", False).maybe_single(),
        Refused("406"),
    ),
    Case(
        "embed to-one: author:authors(...) on every post (none: null)",
        lambda db, ids: db.table("posts").select("title, author:authors(name, country)").order("views"),
        [
            {"title": "Draft ideas", "author": {"name": "Bob", "country": "SE"}},
            {"title": "hello again", "author": {"name": "Bob", "country": "SE"}},
            {"title": "Hello world", "author": {"name": "Ann", "country": "NO"}},
            {"title": "Second thoughts", "author": {"name": "Ann", "country": "NO"}},
            {"title": "Orphan", "author": None},
        ],
    ),
    Case(
        "embed to-one by the relation field's name",
        lambda db, ids: db.table("posts").select("title, author(name)").eq("title", "Draft ideas"),
        [{"title": "Draft ideas", "author": {"name": "Bob"}}],
    ),
    Case(
        "embed to-many: authors with their posts, ordered inside",
        lambda db, ids: (
            db.table("authors").select("name, posts(title, views)").order("name").order("views", foreign_table="posts")
        ),
        [
            {
                "name": "Ann",
                "posts": [{"title": "Hello world", "views": 10}, {"title": "Second thoughts", "views": 25}],
            },
            {"name": "Bob", "posts": [{"title": "Draft ideas", "views": 0}, {"title": "hello again", "views": 5}]},
            {"name": "Cleo", "posts": []},
        ],
    ),
    Case(
        "embed to-many with a limit per parent",
        lambda db, ids: (
            db.table("authors")
            .select("name, posts(title)")
            .order("name")
            .order("views", desc=True, foreign_table="posts")
            .limit(1, foreign_table="posts")
        ),
        [
            {"name": "Ann", "posts": titles("Second thoughts")},
            {"name": "Bob", "posts": titles("hello again")},
            {"name": "Cleo", "posts": []},
        ],
    ),
    Case(
        "a filter on the embedded rows narrows the embed, not the parents",
        lambda db, ids: db.table("authors").select("name, posts(title)").eq("posts.published", False).order("name"),
        [
            {"name": "Ann", "posts": []},
            {"name": "Bob", "posts": titles("Draft ideas")},
            {"name": "Cleo", "posts": []},
        ],
    ),
    Case(
        "!inner: only parents with a matching embedded row",
        lambda db, ids: db.table("authors").select("name, posts!inner(title)").gt("posts.views", 20).order("name"),
        [{"name": "Ann", "posts": titles("Second thoughts")}],
    ),
]

# --- writes -----------------------------------------------------------------------------------------
WRITES = [
    Case(
        "insert one row, representation returned",
        lambda db, ids: db.table("posts").insert({"title": "Fresh", "views": 3, "author": ids["author:Cleo"]}),
        [post("Fresh", views=3, author="author:Cleo")],
        views_after=views(Fresh=3),
    ),
    Case(
        "insert one row with single(): the object, defaults applied",
        lambda db, ids: db.table("posts").insert({"title": "Fresh"}).single(),
        post("Fresh"),
        views_after=views(Fresh=0),
    ),
    Case(
        "insert returning chosen columns and an embed",
        lambda db, ids: (
            db.table("posts")
            .insert({"title": "Fresh", "author": ids["author:Ann"]})
            .select("title, author:authors(name)")
        ),
        [{"title": "Fresh", "author": {"name": "Ann"}}],
        views_after=views(Fresh=0),
    ),
    Case(
        "insert with returning=minimal: no body",
        lambda db, ids: db.table("posts").insert({"title": "Fresh", "views": 1}, returning=ReturnMethod.minimal),
        [],
        views_after=views(Fresh=1),
    ),
    Case(
        "bulk insert: rows in the order sent",
        lambda db, ids: db.table("posts").insert(
            bulk(
                {"title": "A", "views": 1, "body": "a", "published": True},
                {"title": "B", "views": 2, "body": None, "published": False},
            )
        ),
        [post("A", views=1, body="a", published=True), post("B", views=2)],
        views_after=views(A=1, B=2),
    ),
    Case(
        "bulk insert: a key another row has is null where missing (columns=, default_to_null)",
        lambda db, ids: db.table("posts").insert(bulk({"title": "A", "views": 7}, {"title": "B"})),
        [post("A", views=7), post("B", views=None)],
        views_after=views(A=7, B=None),
    ),
    Case(
        "bulk insert with default_to_null=False: the default where missing (missing=default)",
        lambda db, ids: db.table("posts").insert(
            bulk({"title": "A", "views": 7}, {"title": "B"}), default_to_null=False
        ),
        [post("A", views=7), post("B", views=0)],
        views_after=views(A=7, B=0),
    ),
    Case(
        "bulk insert is all or nothing",
        lambda db, ids: db.table("posts").insert([{"title": "Fine"}, {"title": "Hello world"}]),
        Refused("data.unique_violation"),
        views_after=views(),
    ),
    Case(
        "insert a duplicate of a unique field: 409 (PostgREST: 23505)",
        lambda db, ids: db.table("posts").insert({"title": "Orphan"}),
        Refused("data.unique_violation"),
        views_after=views(),
    ),
    Case(
        "insert naming a system column: 400",
        lambda db, ids: db.table("posts").insert({"title": "Fresh", "tenant_id": ids["author:Ann"]}),
        Refused("data.validation_failed"),
        views_after=views(),
    ),
    Case(
        "update with an eq filter",
        lambda db, ids: db.table("posts").update({"views": 99}).eq("title", "Orphan"),
        [post("Orphan", views=99)],
        views_after=views(Orphan=99),
    ),
    Case(
        "update several rows, with an exact count",
        lambda db, ids: (
            db.table("posts").update({"published": True, "views": 1}, count=CountMethod.exact).eq("published", False)
        ),
        [post("Draft ideas", published=True, views=1), post("Orphan", published=True, views=1)],
        count=2,
        any_order=True,
        views_after=views(Draft_ideas=1, Orphan=1),
    ),
    Case(
        "update returning chosen columns and an embed",
        lambda db, ids: (
            db.table("posts")
            .update({"author": ids["author:Cleo"]})
            .eq("title", "Orphan")
            .select("title, author:authors(name)")
        ),
        [{"title": "Orphan", "author": {"name": "Cleo"}}],
        views_after=views(),
    ),
    Case(
        "update without a filter is refused (apprun; PostgREST allows it)",
        lambda db, ids: db.table("posts").update({"views": 1}),
        Refused("data.unfiltered_write"),
        views_after=views(),
    ),
    Case(
        "upsert on a unique field: one row merged, one inserted",
        lambda db, ids: db.table("posts").upsert(
            [{"title": "Hello world", "views": 11}, {"title": "Brand new", "views": 1}], on_conflict="title"
        ),
        [post("Hello world", views=11), post("Brand new", views=1)],
        any_order=True,
        views_after=views(Hello_world=11, Brand_new=1),
    ),
    Case(
        "bulk upsert: a key another row has is null where missing, on the merged row too",
        lambda db, ids: db.table("posts").upsert(
            [{"title": "Hello world", "views": 11}, {"title": "Brand new", "views": 1, "body": "new"}],
            on_conflict="title",
        ),
        [post("Hello world", views=11, body=None), post("Brand new", views=1, body="new")],
        any_order=True,
        views_after=views(Hello_world=11, Brand_new=1),
    ),
    Case(
        "upsert of one object on a unique field",
        lambda db, ids: db.table("posts").upsert({"title": "Orphan", "views": 41}, on_conflict="title"),
        [post("Orphan", views=41)],
        views_after=views(Orphan=41),
    ),
    Case(
        "upsert with ignore_duplicates: only the new row comes back",
        lambda db, ids: db.table("posts").upsert(
            [{"title": "Orphan", "views": 1}, {"title": "Brand new", "views": 2}],
            on_conflict="title",
            ignore_duplicates=True,
        ),
        [post("Brand new", views=2)],
        views_after=views(Brand_new=2),
    ),
    Case(
        "upsert without on_conflict is refused (apprun: clients never send id)",
        lambda db, ids: db.table("posts").upsert({"title": "Orphan", "views": 1}),
        Refused("data.on_conflict_required"),
        views_after=views(),
    ),
    Case(
        "delete with a filter returns the deleted rows",
        lambda db, ids: db.table("posts").delete().eq("published", False),
        [post("Draft ideas"), post("Orphan")],
        any_order=True,
        views_after=views_without("Draft ideas", "Orphan"),
    ),
    Case(
        "delete with an exact count and returning=minimal",
        lambda db, ids: (
            db.table("posts").delete(count=CountMethod.exact, returning=ReturnMethod.minimal).lt("views", 6)
        ),
        [],
        count=2,
        views_after=views_without("Draft ideas", "hello again"),
    ),
    Case(
        "delete without a filter is refused (apprun; PostgREST allows it)",
        lambda db, ids: db.table("posts").delete(),
        Refused("data.unfiltered_write"),
        views_after=views(),
    ),
]


# --- the world the scenarios run in -----------------------------------------------------------------
@dataclass(frozen=True)
class World:
    db: AsyncPostgrestClient
    #: label -> id (``author:Ann``, ``post:Orphan``)
    ids: dict[str, str]
    #: id -> label, plus the caller's user and tenant
    labels: dict[str, str]


def _client(http: Any, tokens: dict[str, Any]) -> AsyncPostgrestClient:
    # The client sends absolute URLs through the session it is given (the in-process app), which
    # the `client` fixture closes; nothing closes the PostgREST client, so it never closes the session.
    return AsyncPostgrestClient(f"{http.base_url}/data", http_client=http).auth(tokens["access_token"])


def _rows(response: APIResponse) -> list[dict[str, Any]]:
    return cast("list[dict[str, Any]]", response.data)


async def _seed(db: AsyncPostgrestClient, authors: list[dict[str, Any]], posts: list[dict[str, Any]]) -> dict[str, str]:
    ids: dict[str, str] = {}
    made = _rows(await db.table("authors").insert(authors).execute())
    ids |= {f"author:{row['name']}": row["id"] for row in made}
    rows = [{**p, "author": None if p["author"] is None else ids[f"author:{p['author']}"]} for p in posts]
    made = _rows(await db.table("posts").insert(rows).execute())
    ids |= {f"post:{row['title']}": row["id"] for row in made}
    return ids


@pytest.fixture
async def world(client: Any, admin: dict[str, Any]) -> World:
    await define(client, admin, AUTHORS_DEF)
    await define(client, admin, POSTS_DEF)
    # Another tenant's rows: no scenario may ever see them.
    stranger = await register(client)
    await _seed(
        _client(client, stranger),
        [{"name": "Zed", "country": "DK"}],
        [{"title": "Elsewhere", "body": "not yours", "views": 3, "published": True, "author": "Zed"}],
    )
    user = await register(client)
    db = _client(client, user)
    ids = await _seed(db, AUTHORS, POSTS)
    labels = {v: k for k, v in ids.items()} | {user["user"]["id"]: ME, user["tenant_id"]: TENANT}
    return World(db, ids, labels)


_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")


def _normalise(value: Any, labels: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _normalise(v, labels) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v, labels) for v in value]
    if isinstance(value, str):
        if value in labels:
            return labels[value]
        if _UUID.match(value):
            return NEW
        if _TIMESTAMP.match(value):
            return TIME
    return value


def _sorted(rows: Any) -> Any:
    return sorted(rows, key=repr) if isinstance(rows, list) else rows


async def _outcome(case: Case, world: World) -> tuple[Any, int | None]:
    """What the call returned: (normalised data, count), or (`Refused`, None)."""
    try:
        response = await case.call(world.db, world.ids).execute()
    except APIError as exc:
        if not exc.message:
            raise AssertionError(f"{case.name}: an error without a message: {exc.json()}") from exc
        return Refused(str(exc.code)), None
    if response is None:  # maybe_single() found nothing
        return None, None
    data = _normalise(response.data, world.labels)
    return (_sorted(data) if case.any_order else data), response.count


def _expected(case: Case) -> tuple[Any, int | None]:
    return (_sorted(case.expect) if case.any_order else case.expect), case.count


async def test_reads(world: World) -> None:
    """Every read scenario against one dataset; the failures are listed together."""
    failures = []
    for case in READS:
        got, want = await _outcome(case, world), _expected(case)
        if got != want:
            failures.append(f"{case.name}:\n    got      {got!r}\n    expected {want!r}")
    assert not failures, f"{len(failures)} of {len(READS)} read scenarios differ:\n" + "\n".join(failures)


@pytest.mark.parametrize("case", WRITES, ids=_ids)
async def test_writes(case: Case, world: World) -> None:
    assert await _outcome(case, world) == _expected(case)
    if case.views_after is not None:
        now = await world.db.table("posts").select("title, views").execute()
        assert {row["title"]: row["views"] for row in _rows(now)} == case.views_after, "the posts afterwards"


def test_scenario_names_are_unique() -> None:
    names = [case.name for case in READS + WRITES]
    assert len(names) == len(set(names))
