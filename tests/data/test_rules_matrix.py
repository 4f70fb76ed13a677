"""The data API's access rules as a table: rule, caller, action → status (and, for list, the rows).

Supabase Storage keeps its policy tests as data (role and operation →
status); this is the same for collections. Every rule (``public``,
``authenticated``, ``owner``, ``rbac``, ``nobody``) is one collection with
that rule on all five actions, once tenant-scoped (``t_<rule>``) and once
``global`` (``g_<rule>``), and every kind of caller acts on each:

==============  ===============================================================
owner           alice, who owns tenant A (built-in role ``owner``: ``*``)
member          bob, built-in ``member`` of A (reads and writes collections)
viewer          vera, built-in ``viewer`` of A (reads)
clerk           cody, custom role ``clerk`` of A: read, create, update (not
                delete) on ``collection:t_rbac`` and ``collection:g_rbac``
no_policy       tess, custom role ``temp`` of A, whose only policy is on
                another collection
key             a standard API key of A with the role ``clerk``
service         a service key of A
admin           a platform admin whose active tenant is A, as a ``viewer``
anon            no credentials, no ``X-Tenant-Id``
anon_tenant     no credentials, ``X-Tenant-Id: <A>``
other_tenant    carol, owner of tenant B (signed in there)
==============  ===============================================================

The actions are the five a rule names: list (``GET /data/c?select=title``),
view, update and delete (by id, on bob's row ``A-bob`` / ``G-bob``) and
create. Tenant collections hold ``A-alice`` and ``A-bob`` in tenant A and
``B-carol`` in tenant B; global ones ``G-bob`` and ``G-carol``. A write
that is refused must leave the rows as they were; one that is allowed must
do exactly its change, in the caller's tenant and under the caller's name,
and the rows are put back before the next cell.

Mutation check (what this table is for): making ``rbac`` always allow,
``nobody`` allow, or ``public`` drop the tenant in data/access.py each
fails many cells here, on both databases.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from apprun.data.schema.validation import canonical_datetime
from apprun.kernel.db import Database
from apprun.kernel.ids import new_id
from apprun.kernel.times import utcnow
from tests.support.accounts import bearer, join, make_admin, register
from tests.support.scenarios import Case, run, run_all
from tests.support.schema import define

pytestmark = pytest.mark.checklist(10, 11, 14)

RULES = ("public", "authenticated", "owner", "rbac", "nobody")
ACTIONS = ("list", "view", "create", "update", "delete")

#: An outcome per action: list → the titles read (in title order) or the refusal's status; others → status.
Outcome = tuple[tuple[str, ...] | int, int, int, int, int]

A = ("A-alice", "A-bob")
B = ("B-carol",)
G = ("G-bob", "G-carol")
FULL_A: Outcome = (A, 200, 201, 200, 204)
FULL_G: Outcome = (G, 200, 201, 200, 204)
IN_B: Outcome = (B, 404, 201, 404, 404)  # carol: her tenant's rows; A's row is not there for her
NO_ROWS: Outcome = ((), 404, 201, 404, 404)  # an owner rule, signed in, owning none of the rows
UNAUTHORIZED: Outcome = (401, 401, 401, 401, 401)
FORBIDDEN: Outcome = (403, 403, 403, 403, 403)
NO_TENANT: Outcome = (400, 400, 400, 400, 400)

# fmt: off
#: Tenant-scoped collections (``t_<rule>``).
TENANT: dict[str, dict[str, Outcome]] = {
    "public": {
        "owner": FULL_A, "member": FULL_A, "viewer": FULL_A, "clerk": FULL_A, "no_policy": FULL_A,
        "key": FULL_A, "service": FULL_A, "admin": FULL_A,
        "anon": NO_TENANT,            # which tenant's rows? X-Tenant-Id says
        "anon_tenant": FULL_A,
        "other_tenant": IN_B,
    },
    "authenticated": {
        "owner": FULL_A, "member": FULL_A, "viewer": FULL_A, "clerk": FULL_A, "no_policy": FULL_A,
        "key": FULL_A, "service": FULL_A, "admin": FULL_A,
        "anon": UNAUTHORIZED,
        "anon_tenant": UNAUTHORIZED,  # the header names a tenant for public rules only
        "other_tenant": IN_B,
    },
    "owner": {
        "owner": (("A-alice",), 404, 201, 404, 404),  # owning the tenant is not owning bob's row
        "member": (("A-bob",), 200, 201, 200, 204),
        "viewer": NO_ROWS, "clerk": NO_ROWS, "no_policy": NO_ROWS,
        "key": FORBIDDEN,             # an API key is nobody's user
        "service": FULL_A, "admin": FULL_A,
        "anon": UNAUTHORIZED, "anon_tenant": UNAUTHORIZED,
        "other_tenant": IN_B,
    },
    "rbac": {
        "owner": FULL_A, "member": FULL_A,
        "viewer": (A, 200, 403, 403, 403),
        "clerk": (A, 200, 201, 200, 403),
        "no_policy": FORBIDDEN,
        "key": (A, 200, 201, 200, 403),
        "service": FULL_A, "admin": FULL_A,
        "anon": UNAUTHORIZED, "anon_tenant": UNAUTHORIZED,
        "other_tenant": IN_B,         # carol owns B: her policies allow, on B's rows
    },
    "nobody": {
        "owner": FORBIDDEN, "member": FORBIDDEN, "viewer": FORBIDDEN, "clerk": FORBIDDEN, "no_policy": FORBIDDEN,
        "key": FORBIDDEN,
        "service": FULL_A, "admin": FULL_A,
        "anon": UNAUTHORIZED, "anon_tenant": UNAUTHORIZED,
        "other_tenant": FORBIDDEN,
    },
}
#: ``global`` collections (``g_<rule>``): rows every tenant shares. A service key stands for its tenant, so
#: it bypasses no rule here (it would change every tenant's rows); a platform admin does.
GLOBAL: dict[str, dict[str, Outcome]] = {
    "public": dict.fromkeys(TENANT["public"], FULL_G),
    "authenticated": {
        "owner": FULL_G, "member": FULL_G, "viewer": FULL_G, "clerk": FULL_G, "no_policy": FULL_G,
        "key": FULL_G, "service": FULL_G, "admin": FULL_G,
        "anon": UNAUTHORIZED, "anon_tenant": UNAUTHORIZED,
        "other_tenant": FULL_G,
    },
    "owner": {
        "owner": NO_ROWS,
        "member": (("G-bob",), 200, 201, 200, 204),
        "viewer": NO_ROWS, "clerk": NO_ROWS, "no_policy": NO_ROWS,
        "key": FORBIDDEN,
        "service": FORBIDDEN,
        "admin": FULL_G,
        "anon": UNAUTHORIZED, "anon_tenant": UNAUTHORIZED,
        "other_tenant": (("G-carol",), 404, 201, 404, 404),
    },
    "rbac": {                         # the policies of the caller's active tenant decide
        "owner": FULL_G, "member": FULL_G,
        "viewer": (G, 200, 403, 403, 403),
        "clerk": (G, 200, 201, 200, 403),
        "no_policy": FORBIDDEN,
        "key": (G, 200, 201, 200, 403),
        "service": FULL_G, "admin": FULL_G,
        "anon": UNAUTHORIZED, "anon_tenant": UNAUTHORIZED,
        "other_tenant": FULL_G,
    },
    "nobody": {
        "owner": FORBIDDEN, "member": FORBIDDEN, "viewer": FORBIDDEN, "clerk": FORBIDDEN, "no_policy": FORBIDDEN,
        "key": FORBIDDEN,
        "service": FORBIDDEN,
        "admin": FULL_G,
        "anon": UNAUTHORIZED, "anon_tenant": UNAUTHORIZED,
        "other_tenant": FORBIDDEN,
    },
}
# fmt: on
CODES = {400: "data.tenant_required", 401: "auth.unauthorized", 403: "data.forbidden", 404: "data.record_not_found"}
#: The seed rows: (title, tenant "A"/"B"/None, creator).
SEED: dict[str, list[tuple[str, str | None, str]]] = {
    "tenant": [("A-alice", "A", "alice"), ("A-bob", "A", "bob"), ("B-carol", "B", "carol")],
    "global": [("G-bob", None, "bob"), ("G-carol", None, "carol")],
}
#: The row view, update and delete name.
TARGET = {"tenant": "A-bob", "global": "G-bob"}


def definition(rule: str, scope: str) -> dict[str, Any]:
    return {
        "name": f"{scope[0]}_{rule}",
        "scope": scope,
        "fields": [{"name": "title", "type": "text"}],
        "rules": dict.fromkeys(ACTIONS, rule),
    }


# --- the world ---------------------------------------------------------------------------------------
@dataclass
class World:
    client: Any
    db: Database
    #: Each caller's request headers.
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Tenant "A"/"B" → id; user name → id.
    tenants: dict[str, str] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    #: (collection, title) → the seed row's id.
    ids: dict[tuple[str, str], str] = field(default_factory=dict)
    #: The seed rows' timestamps (the same at every reseed, so the rows compare equal).
    now: Any = None

    async def rows(self, collection: str) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            rows = await conn.fetch(f'SELECT * FROM "{collection}" ORDER BY title')  # noqa: S608 - our names
        return [{k: None if v is None else str(v) for k, v in dict(r).items()} for r in rows]

    async def seed(self, collection: str, scope: str) -> None:
        """The collection's rows put (back) as the table expects them, written as the tables' owner."""
        if self.now is None:
            self.now = utcnow() if self.db.dialect == "postgres" else canonical_datetime(utcnow())
        async with self.db.transaction() as conn:
            await conn.execute(f'DELETE FROM "{collection}"')  # noqa: S608
            for title, tenant, creator in SEED[scope]:
                await conn.execute(
                    f'INSERT INTO "{collection}" (id, tenant_id, created_at, updated_at, created_by, title) '  # noqa: S608
                    "VALUES ($1, $2, $3, $3, $4, $5)",
                    self.ids[(collection, title)],
                    self.tenants.get(tenant or ""),
                    self.now,
                    self.users[creator],
                    title,
                )


async def _post(client: Any, path: str, tokens: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    r = await client.post(path, json=body, headers=bearer(tokens))
    assert r.status_code in (200, 201), r.text
    data: dict[str, Any] = r.json()
    return data


async def _member(
    client: Any, db: Database, owner: dict[str, Any], person: dict[str, Any], role: str
) -> dict[str, Any]:
    """``person`` added to ``owner``'s tenant with ``role`` (invited, accepting) and signed in there."""
    await join(client, db, owner, person, role)
    return await _post(client, "/auth/tenant", person, {"tenant_id": owner["tenant_id"]})


async def build_world(client: Any, db: Database) -> World:
    admin = await make_admin(client, db)
    for rule in RULES:
        for scope in ("tenant", "global"):
            await define(client, admin, definition(rule, scope))
    alice, carol = await register(client), await register(client)
    for role in ("clerk", "temp"):
        await _post(client, "/api/v1/roles", alice, {"name": role})
    for name in ("t_rbac", "g_rbac"):
        for action in ("read", "create", "update"):
            await _post(
                client, "/api/v1/policies", alice, {"role": "clerk", "object": f"collection:{name}", "action": action}
            )
    await _post(client, "/api/v1/policies", alice, {"role": "temp", "object": "collection:elsewhere", "action": "*"})
    people = {
        "bob": await _member(client, db, alice, await register(client), "member"),
        "vera": await _member(client, db, alice, await register(client), "viewer"),
        "cody": await _member(client, db, alice, await register(client), "clerk"),
        "tess": await _member(client, db, alice, await register(client), "temp"),
        "admin": await _member(client, db, alice, admin, "viewer"),
    }
    key = await _post(client, "/api/v1/api-keys", alice, {"name": "clerk key", "role": "clerk"})
    service = await _post(client, "/api/v1/api-keys", alice, {"name": "service key", "kind": "service"})
    tenant_a = alice["tenant_id"]
    world = World(client, db)
    world.headers = {
        "owner": bearer(alice),
        "member": bearer(people["bob"]),
        "viewer": bearer(people["vera"]),
        "clerk": bearer(people["cody"]),
        "no_policy": bearer(people["tess"]),
        "key": {"Authorization": f"Bearer {key['key']}"},
        "service": {"apikey": service["key"]},  # the other way to present a key (Supabase's)
        "admin": bearer(people["admin"]),
        "anon": {},
        "anon_tenant": {"X-Tenant-Id": tenant_a},
        "other_tenant": bearer(carol),
    }
    world.tenants = {"A": tenant_a, "B": carol["tenant_id"]}
    world.users = {"alice": alice["user"]["id"], "bob": people["bob"]["user"]["id"], "carol": carol["user"]["id"]}
    # Who a created row must name as its creator (keys and anonymous callers are nobody).
    world.users |= {
        "owner": world.users["alice"],
        "member": world.users["bob"],
        "viewer": people["vera"]["user"]["id"],
        "clerk": people["cody"]["user"]["id"],
        "no_policy": people["tess"]["user"]["id"],
        "admin": people["admin"]["user"]["id"],
        "other_tenant": world.users["carol"],
    }
    for rule in RULES:
        for scope in ("tenant", "global"):
            name = definition(rule, scope)["name"]
            for title, _, _ in SEED[scope]:
                world.ids[(name, title)] = new_id()
            await world.seed(name, scope)
    return world


# --- the table, cell by cell -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    scope: str
    rule: str
    caller: str
    action: str
    expected: tuple[str, ...] | int

    @property
    def collection(self) -> str:
        return f"{self.scope[0]}_{self.rule}"

    @property
    def name(self) -> str:
        return f"{self.collection} x {self.caller} x {self.action}"

    @property
    def status(self) -> int:
        if isinstance(self.expected, int):
            return self.expected
        return 200


def cells() -> list[Cell]:
    out = []
    for scope, table in (("tenant", TENANT), ("global", GLOBAL)):
        for rule in RULES:
            for caller, outcome in table[rule].items():
                for action, expected in zip(ACTIONS, outcome, strict=True):
                    out.append(Cell(scope, rule, caller, action, expected))
    return out


#: What an allowed write fires; a read or a refusal fires nothing.
EVENTS = {"create": ["apprun.record.created"], "update": ["apprun.record.updated"], "delete": ["apprun.record.deleted"]}


def case_of(cell: Cell, world: World) -> Case:
    c = cell.collection
    target = world.ids[(c, TARGET[cell.scope])]
    expected: Any = {"code": CODES[cell.status]} if cell.status >= 400 else None
    body = None
    if cell.action == "list":
        method, path = "GET", f"/data/{c}?select=title&order=title"
        if not isinstance(cell.expected, int):
            expected = [{"title": title} for title in cell.expected]
    elif cell.action == "create":
        method, path, body = "POST", f"/data/{c}", {"title": "new"}
    else:
        method = {"view": "GET", "update": "PATCH", "delete": "DELETE"}[cell.action]
        path = f"/data/{c}/{target}"
        body = {"title": "changed"} if cell.action == "update" else None
        if cell.status == 200:
            expected = {"id": target, "title": "changed" if cell.action == "update" else TARGET[cell.scope]}
    events = EVENTS.get(cell.action, []) if cell.status < 400 else []
    return Case(cell.name, method, path, headers=world.headers[cell.caller], body=body, status=cell.status,
                json=expected, events=events)  # fmt: skip


def effect_problems(cell: Cell, world: World, before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[str]:
    """What is wrong with the rows after a write (``before``: the seed)."""
    if cell.status >= 400:
        return [] if after == before else [f"refused, yet the rows changed: {after}"]
    target = world.ids[(cell.collection, TARGET[cell.scope])]
    kept = [r for r in after if r["id"] != target and r["title"] != "new"]
    problems = [] if kept == [r for r in before if r["id"] != target] else [f"other rows changed: {after}"]
    mine = [r for r in after if r["id"] == target or r["title"] == "new"]
    if cell.action == "delete" and mine:
        problems.append(f"not deleted: {mine}")
    if cell.action == "update" and [r["title"] for r in mine] != ["changed"]:
        problems.append(f"not updated: {mine}")
    if cell.action == "create":
        tenant = None if cell.scope == "global" else world.tenants["B" if cell.caller == "other_tenant" else "A"]
        new = [(r["title"], r["tenant_id"], r["created_by"]) for r in mine if r["id"] != target]
        if new != [("new", tenant, world.users.get(cell.caller))]:
            problems.append(f"created {new}, expected one row in tenant {tenant} by {cell.caller}")
    return problems


async def test_every_rule_for_every_caller_and_action(client: Any, db: Database) -> None:
    for table in (TENANT, GLOBAL):  # a caller left out of a row of the table would go untested
        assert all(set(table[rule]) == set(TENANT["public"]) for rule in RULES)
    world = await build_world(client, db)
    seeded = {definition(r, s)["name"]: await world.rows(definition(r, s)["name"]) for r in RULES for s in SEED}
    failures: list[str] = []
    all_cells = cells()
    for cell in all_cells:
        try:
            await run(client, case_of(cell, world), db)
        except AssertionError as exc:
            failures.append(str(exc))
        if cell.action in ("list", "view"):
            continue
        after = await world.rows(cell.collection)
        failures += [f"{cell.name}: {p}" for p in effect_problems(cell, world, seeded[cell.collection], after)]
        if after != seeded[cell.collection]:
            await world.seed(cell.collection, cell.scope)
    assert not failures, f"{len(failures)} of {len(all_cells)} cells failed:\n\n" + "\n\n".join(failures)


async def test_the_tenant_header_names_a_tenant_for_anonymous_readers_only(client: Any, db: Database) -> None:
    world = await build_world(client, db)
    tenant_a, tenant_b = world.tenants["A"], world.tenants["B"]

    def read(name: str, headers: dict[str, str], expected: Any, status: int = 200) -> Case:
        return Case(
            name, "GET", "/data/t_public?select=title&order=title", headers=headers, status=status, json=expected
        )

    def titles(*names: str) -> list[dict[str, str]]:
        return [{"title": n} for n in names]

    b_row = world.ids[("t_authenticated", "B-carol")]
    table = [
        read("anonymous, tenant B", {"X-Tenant-Id": tenant_b}, titles(*B)),
        read("anonymous, a tenant no one has", {"X-Tenant-Id": new_id()}, []),
        read("anonymous, tenant B in capitals", {"X-Tenant-Id": f" {tenant_b.upper()} "}, titles(*B)),
        read("anonymous, not an id", {"X-Tenant-Id": "x' OR 1=1"}, {"code": "data.invalid_tenant_header"}, 400),
        # The header is read for every request but refused only where a rule would use it.
        read("bob naming no id at all", {**world.headers["member"], "X-Tenant-Id": "x' OR 1=1"}, titles(*A)),
        read("carol naming tenant A", {**world.headers["other_tenant"], "X-Tenant-Id": tenant_a}, titles(*B)),
        read("bob naming tenant B", {**world.headers["member"], "X-Tenant-Id": tenant_b}, titles(*A)),
        read("the service key naming tenant B", {**world.headers["service"], "X-Tenant-Id": tenant_b}, titles(*A)),
        Case(
            "anonymous writing B's row of an authenticated collection",
            "PATCH",
            f"/data/t_authenticated/{b_row}",
            headers={"X-Tenant-Id": tenant_b},
            body={"title": "x"},
            status=401,
            events=[],
        ),
        Case(
            "anonymous naming no id, writing B's row of an authenticated collection",
            "PATCH",
            f"/data/t_authenticated/{b_row}",
            headers={"X-Tenant-Id": "not-a-tenant"},
            body={"title": "x"},
            status=401,
            events=[],
        ),
    ]
    await run_all(client, table, db)
