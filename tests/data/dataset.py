"""One fixed dataset for the data API's read tests, inserted through the API.

Five collections: ``authors``; ``tags``; ``posts`` (every field type, a
searchable ``title``/``body``, a relation to ``authors`` and a many-to-many
``tags`` through ``post_tags``); ``comments`` (to ``posts``); ``post_tags``.
Some values are NULL on purpose. Rows are inserted in the order written here,
so ``id`` order is this order on every database.

`load` returns a `Labels` that maps every generated value (row ids, the
user, the tenant) to a stable label (``P1``, ``A2``, ``<user>``…) and
`Labels.normalize` rewrites a reply with them, so expectations are written
with labels and replies from two databases can be compared.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tests.support.accounts import bearer, register
from tests.support.schema import define

__all__ = ["COLLECTIONS", "Labels", "load"]

_RULES = {"list": "authenticated", "view": "authenticated", "create": "authenticated"}

COLLECTIONS: list[dict[str, Any]] = [
    {
        "name": "authors",
        "rules": _RULES,
        "fields": [
            {"name": "name", "type": "text", "required": True},
            {"name": "email", "type": "email"},
            {"name": "bio", "type": "text"},
        ],
    },
    {"name": "tags", "rules": _RULES, "fields": [{"name": "name", "type": "text", "required": True}]},
    {
        "name": "posts",
        "rules": _RULES,
        "fields": [
            {"name": "title", "type": "text", "required": True, "searchable": True},
            {"name": "body", "type": "text", "searchable": True},
            {"name": "views", "type": "integer"},
            {"name": "score", "type": "number"},
            {"name": "published", "type": "boolean"},
            {"name": "published_at", "type": "datetime"},
            {"name": "day", "type": "date"},
            {"name": "meta", "type": "json"},
            {"name": "status", "type": "enum", "values": ["draft", "published", "archived"]},
            {"name": "author", "type": "relation", "collection": "authors", "on_delete": "set_null"},
            {"name": "tags", "type": "relation", "collection": "tags", "many": True, "through": "post_tags"},
            {"name": "secret", "type": "text", "hidden": True},
        ],
    },
    {
        "name": "comments",
        "rules": _RULES,
        "fields": [
            {"name": "post", "type": "relation", "collection": "posts", "on_delete": "cascade", "required": True},
            {"name": "body", "type": "text"},
            {"name": "likes", "type": "integer"},
        ],
    },
    {
        "name": "post_tags",
        "rules": _RULES,
        "fields": [
            {"name": "post", "type": "relation", "collection": "posts", "on_delete": "cascade", "required": True},
            {"name": "tag", "type": "relation", "collection": "tags", "on_delete": "cascade", "required": True},
        ],
    },
]

AUTHORS: list[tuple[str, dict[str, Any]]] = [
    ("A1", {"name": "Ada Lovelace", "email": "ada@example.com", "bio": "First programmer"}),
    ("A2", {"name": "Brian Kernighan", "email": "bwk@example.com", "bio": None}),
    ("A3", {"name": "Claude Shannon", "email": None, "bio": "Information theory"}),
]
TAGS: list[tuple[str, dict[str, Any]]] = [("T1", {"name": "python"}), ("T2", {"name": "sql"}), ("T3", {"name": "rust"})]
#: Relations name rows by label; `load` swaps in the ids.
POSTS: list[tuple[str, dict[str, Any]]] = [
    (
        "P1",
        {
            "title": "Hello World",
            "body": "An introduction to the world of databases",
            "views": 100,
            "score": 4.5,
            "published": True,
            "published_at": "2024-01-15T10:00:00Z",
            "day": "2024-01-15",
            "meta": {"tags": ["intro", "news"], "rating": 5, "info": {"lang": "en"}, "list": [1, 2, 3]},
            "status": "published",
            "author": "A1",
            "secret": "s1",
        },
    ),
    (
        "P2",
        {
            "title": "Second Post",
            "body": "More about Python and SQL",
            "views": 50,
            "score": 3.25,
            "published": True,
            "published_at": "2024-02-01T12:30:00Z",
            "day": "2024-02-01",
            "meta": {"tags": ["python"], "rating": 3, "info": {"lang": "fr"}},
            "status": "published",
            "author": "A1",
        },
    ),
    (
        "P3",
        {
            "title": "Draft ideas",
            "body": "Unfinished thoughts about rust",
            "views": 0,
            "score": None,
            "published": False,
            "published_at": None,
            "day": None,
            "meta": {"tags": [], "rating": None},
            "status": "draft",
            "author": "A2",
        },
    ),
    (
        "P4",
        {
            "title": "Archived news",
            "body": None,
            "views": 7,
            "score": 2.0,
            "published": None,
            "published_at": "2023-12-31T23:59:59.5Z",
            "day": "2023-12-31",
            "meta": None,
            "status": "archived",
            "author": None,
        },
    ),
    (
        "P5",
        {
            "title": "hello again",
            "body": "Say hello to the world again",
            "views": None,
            "score": -1.5,
            "published": True,
            "published_at": "2024-03-01T00:00:00+02:00",
            "day": "2024-02-29",
            "meta": {"tags": ["intro", "python"], "rating": 4.5, "info": {"lang": "en"}},
            "status": "published",
            "author": "A2",
        },
    ),
]
COMMENTS: list[tuple[str, dict[str, Any]]] = [
    ("C1", {"post": "P1", "body": "Great post", "likes": 3}),
    ("C2", {"post": "P1", "body": "Thanks", "likes": 0}),
    ("C3", {"post": "P2", "body": "Nice", "likes": 5}),
    ("C4", {"post": "P1", "body": "Third", "likes": None}),
    ("C5", {"post": "P5", "body": "hi", "likes": 1}),
]
POST_TAGS: list[tuple[str, dict[str, Any]]] = [
    ("PT1", {"post": "P1", "tag": "T1"}),
    ("PT2", {"post": "P1", "tag": "T2"}),
    ("PT3", {"post": "P2", "tag": "T1"}),
    ("PT4", {"post": "P5", "tag": "T2"}),
]
_RELATIONS = ("author", "post", "tag")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
_SYSTEM_TIMES = ("created_at", "updated_at")


@dataclass
class Labels:
    """Generated values and their stable labels."""

    by_value: dict[str, str] = field(default_factory=dict)
    by_label: dict[str, str] = field(default_factory=dict)
    #: The data user's access token.
    token: str = ""

    def add(self, label: str, value: str) -> None:
        self.by_value[value] = label
        self.by_label[label] = value

    def normalize(self, value: Any, key: str | None = None) -> Any:
        """``value`` with generated ids as labels and system timestamps as ``<ts>``."""
        if isinstance(value, dict):
            return {k: self.normalize(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self.normalize(v) for v in value]
        if isinstance(value, str):
            if key in _SYSTEM_TIMES and _TIMESTAMP.match(value):
                return "<ts>"
            return self.by_value.get(value, value)
        return value

    def normalize_text(self, text: str) -> str:
        """Labels in a text reply (CSV): every generated id replaced."""
        for value, label in self.by_value.items():
            text = text.replace(value, label)
        return text


async def _insert(client: Any, token: str, labels: Labels, name: str, rows: list[tuple[str, dict[str, Any]]]) -> None:
    body = [{k: labels.by_label.get(v, v) if k in _RELATIONS else v for k, v in row.items()} for _, row in rows]
    reply = await client.post(f"/data/{name}", json=body, headers={**bearer(token), "Prefer": "return=representation"})
    assert reply.status_code == 201, reply.text
    created = reply.json()
    assert len(created) == len(rows)
    for (label, _), row in zip(rows, created, strict=True):
        labels.add(label, row["id"])
        labels.add("<tenant>", row["tenant_id"])


async def load(client: Any, admin: dict[str, Any]) -> Labels:
    """Define the collections, register the data user and insert every row."""
    for definition in COLLECTIONS:
        await define(client, admin, definition)
    tokens = await register(client)
    labels = Labels(token=tokens["access_token"])
    labels.add("<user>", tokens["user"]["id"])
    for name, rows in (
        ("authors", AUTHORS),
        ("tags", TAGS),
        ("posts", POSTS),
        ("comments", COMMENTS),
        ("post_tags", POST_TAGS),
    ):
        await _insert(client, labels.token, labels, name, rows)
    return labels
