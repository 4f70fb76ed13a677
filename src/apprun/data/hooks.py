"""Hooks: application code around each data action, PocketBase-style.

Every action on a record runs a chain of handlers whose *last* handler is
apprun's own (validate and write, or read). A handler receives the event,
may change it, calls ``await event.next()`` to run the rest of the chain,
and may look at the outcome afterwards::

    from apprun.data import hooks

    @hooks.on_create("posts")
    async def slugify(event: hooks.WriteEvent) -> None:
        event.data.setdefault("slug", slug(event.data["title"]))   # before the write
        await event.next()                                          # the write
        log.info("post created", id=event.record["id"])             # after it

A handler that raises an `ApiError` (``raise BadRequest("request.invalid", details={"title": "spam"})``)
stops the action: the client gets that error and the transaction — the
write, its event, whatever the handler wrote with ``event.conn`` — is rolled
back. Not calling ``next()`` skips the write (and its event) silently, as in
PocketBase; a handler that means to refuse should raise instead.

Lifecycle, per action:

* create / update / delete run **once per row**, inside the request's
  transaction; ``event.data`` is the client's JSON for that row before
  validation (change it before ``next()``), ``event.record`` is the row as
  the API returns it after ``next()``, ``event.old`` the row before an
  update or delete. A bulk insert with a create hook bound runs the chain
  per row (without hooks it is one statement per 30 000 values).
* list runs **once per request**: ``event.query`` (the parsed
  `ReadQuery`) may be replaced before ``next()``; ``event.body`` (the JSON
  text the database built) may be replaced after it.

Handlers run in the order bound (``priority`` first, lower earlier). Bind on
the default registry (`DEFAULT`, what ``@hooks.on_create`` uses) at import
time, or pass a `Hooks` to ``create_app(hooks=...)``. Reactions that must not
hold the transaction (mail, HTTP calls) belong in event subscribers
(``apprun.record.created``), which run after commit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from apprun.data.query.ast import ReadQuery
from apprun.data.schema.model import CollectionDef
from apprun.kernel.context import RequestContext
from apprun.kernel.db import Connection

__all__ = ["DEFAULT", "Hooks", "ListEvent", "WriteEvent", "on_create", "on_delete", "on_list", "on_update"]

Action = Literal["create", "update", "delete", "list"]


@dataclass(eq=False)
class _Event:
    collection: CollectionDef
    ctx: RequestContext
    conn: Connection
    _chain: list[Callable[[Any], Awaitable[None]]] = field(default_factory=list, repr=False)
    _at: int = field(default=0, repr=False)

    async def next(self) -> None:
        """Run the rest of the chain (the last handler is apprun's own action)."""
        if self._at >= len(self._chain):
            return
        handler = self._chain[self._at]
        self._at += 1
        await handler(self)


@dataclass(eq=False)
class WriteEvent(_Event):
    action: Literal["create", "update", "delete"] = "create"
    #: The client's JSON for this row (create, update); empty for delete.
    data: dict[str, Any] = field(default_factory=dict)
    #: The row as the API returns it, once written (None before ``next()`` and for delete).
    record: dict[str, Any] | None = None
    #: The row before an update or delete.
    old: dict[str, Any] | None = None


@dataclass(eq=False)
class ListEvent(_Event):
    query: ReadQuery = field(default_factory=ReadQuery)
    #: The JSON reply (an array) once read.
    body: str | None = None
    #: Rows in ``body`` and, when a count was asked for, rows matching (set by the read).
    rows: int = 0
    total: int | None = None


E = TypeVar("E", bound=_Event)
Handler = Callable[[E], Awaitable[None]]


@dataclass(frozen=True)
class _Binding(Generic[E]):
    handler: Handler[E]
    collections: frozenset[str] | None
    priority: int
    order: int


class Hooks:
    """A registry of handlers per action and collection."""

    def __init__(self) -> None:
        self._bindings: dict[Action, list[_Binding[Any]]] = {"create": [], "update": [], "delete": [], "list": []}
        self._count = 0

    def bind(self, action: Action, handler: Handler[Any], *collections: str, priority: int = 0) -> None:
        """Run ``handler`` for ``action`` on ``collections`` (all collections when none are named)."""
        self._count += 1
        binding = _Binding(handler, frozenset(collections) or None, priority, self._count)
        self._bindings[action].append(binding)
        self._bindings[action].sort(key=lambda b: (b.priority, b.order))

    def handlers(self, action: Action, collection: str) -> list[Handler[Any]]:
        return [b.handler for b in self._bindings[action] if b.collections is None or collection in b.collections]

    def has(self, action: Action, collection: str) -> bool:
        return any(b.collections is None or collection in b.collections for b in self._bindings[action])

    def merged(self, other: Hooks | None) -> Hooks:
        """This registry's handlers followed by ``other``'s."""
        out = Hooks()
        for source in (self, other):
            if source is None:
                continue
            for action, bindings in source._bindings.items():
                for b in bindings:
                    out.bind(action, b.handler, *(b.collections or ()), priority=b.priority)
        return out

    def _decorator(
        self, action: Action, collections: tuple[str, ...], priority: int
    ) -> Callable[[Handler[E]], Handler[E]]:
        def register(handler: Handler[E]) -> Handler[E]:
            self.bind(action, handler, *collections, priority=priority)
            return handler

        return register

    def on_create(self, *collections: str, priority: int = 0) -> Callable[[Handler[WriteEvent]], Handler[WriteEvent]]:
        return self._decorator("create", collections, priority)

    def on_update(self, *collections: str, priority: int = 0) -> Callable[[Handler[WriteEvent]], Handler[WriteEvent]]:
        return self._decorator("update", collections, priority)

    def on_delete(self, *collections: str, priority: int = 0) -> Callable[[Handler[WriteEvent]], Handler[WriteEvent]]:
        return self._decorator("delete", collections, priority)

    def on_list(self, *collections: str, priority: int = 0) -> Callable[[Handler[ListEvent]], Handler[ListEvent]]:
        return self._decorator("list", collections, priority)


#: The registry ``@hooks.on_create(...)`` binds to; `create_app` always includes it.
DEFAULT = Hooks()
on_create = DEFAULT.on_create
on_update = DEFAULT.on_update
on_delete = DEFAULT.on_delete
on_list = DEFAULT.on_list


async def run_chain(event: E, handlers: list[Handler[E]], final: Handler[E]) -> E:
    """Run ``handlers`` then ``final`` on ``event``; returns the event."""
    event._chain = [*handlers, final]
    event._at = 0
    await event.next()
    return event
