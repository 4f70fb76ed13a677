"""Defining collections: the API, online migrations with history, and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from tests.support.accounts import bearer, register
from tests.support.schema import define

NOTES = {
    "name": "notes",
    "fields": [
        {"name": "title", "type": "text", "required": True, "max_length": 100},
        {"name": "body", "type": "text"},
    ],
    "rules": {
        "list": "authenticated",
        "view": "authenticated",
        "create": "authenticated",
        "update": "owner",
        "delete": "owner",
    },
}


def _with_fields(*fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**NOTES, "fields": [*NOTES["fields"], *fields], **extra}


async def _rows(client: Any, user: dict[str, Any], query: str = "") -> list[dict[str, Any]]:
    r = await client.get(f"/data/notes{query}", headers=bearer(user))
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()
    return rows


async def test_create_alter_and_history(client: Any, admin: dict[str, Any]) -> None:
    created = await client.post("/api/v1/collections", json=NOTES, headers=bearer(admin))
    assert created.status_code == 201, created.text
    assert created.json()["operation"] == "create"
    assert created.json()["version"] == 1
    again = await client.post("/api/v1/collections", json=NOTES, headers=bearer(admin))
    assert again.status_code == 200
    assert again.json()["operation"] == "unchanged"

    user = await register(client)
    r = await client.post("/data/notes", json={"title": "first", "body": "kept"}, headers=bearer(user))
    assert r.status_code == 201, r.text

    # Online migration: a required field with a default fills existing rows.
    grown = await define(
        client, admin, _with_fields({"name": "pinned", "type": "boolean", "required": True, "default": False})
    )
    assert grown["operation"] == "alter"
    assert grown["version"] == 2
    assert any("pinned" in step["step"] for step in grown["changes"])
    assert [(n["title"], n["pinned"]) for n in await _rows(client, user)] == [("first", False)]

    # A rename keeps the data.
    renamed = dict(_with_fields({"name": "pinned", "type": "boolean", "required": True, "default": False}))
    renamed["fields"] = [
        {"name": "title", "type": "text", "required": True, "max_length": 100},
        {"name": "content", "type": "text", "renamed_from": "body"},
        {"name": "pinned", "type": "boolean", "required": True, "default": False},
    ]
    await define(client, admin, renamed)
    assert [n["content"] for n in await _rows(client, user)] == ["kept"]

    # Indexes and constraints change online too.
    indexed = {**renamed, "indexes": [{"fields": ["pinned", "created_at"]}]}
    assert (await define(client, admin, indexed))["operation"] == "alter"
    unique = {**indexed, "fields": [{**indexed["fields"][0], "unique": True}, *indexed["fields"][1:]]}
    assert (await define(client, admin, unique))["operation"] == "alter"
    dup = await client.post("/data/notes", json={"title": "first"}, headers=bearer(user))
    assert dup.status_code == 409
    assert dup.json()["code"] == "data.unique_violation"

    history = await client.get("/api/v1/collections/notes/history", headers=bearer(admin))
    assert history.status_code == 200
    versions = history.json()
    assert [v["version"] for v in versions] == [1, 2, 3, 4, 5]
    assert [v["operation"] for v in versions] == ["create", "alter", "alter", "alter", "alter"]
    assert all(v["applied_by"] == admin["user"]["id"] for v in versions)

    listed = await client.get("/api/v1/collections", headers=bearer(admin))
    assert [c["name"] for c in listed.json()] == ["notes"]
    one = await client.get("/api/v1/collections/notes", headers=bearer(admin))
    assert [f["name"] for f in one.json()["fields"]] == ["title", "content", "pinned"]


async def test_dry_run_prints_sql_and_changes_nothing(client: Any, admin: dict[str, Any]) -> None:
    r = await client.post("/api/v1/collections", json=NOTES, headers=bearer(admin), params={"dry_run": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["applied"] is False
    assert "CREATE TABLE notes" in body["sql"]
    assert (await client.get("/api/v1/collections/notes", headers=bearer(admin))).status_code == 404
    assert (await client.get("/data/notes", headers=bearer(admin))).status_code == 404


async def test_destructive_changes_need_the_flag(client: Any, admin: dict[str, Any]) -> None:
    await define(client, admin, _with_fields({"name": "secret", "type": "text"}))
    user = await register(client)
    await client.post("/data/notes", json={"title": "t", "secret": "s"}, headers=bearer(user))

    refused = await client.post("/api/v1/collections", json=NOTES, headers=bearer(admin))
    assert refused.status_code == 400
    assert refused.json()["code"] == "data.destructive_change"
    assert any("secret" in step for step in refused.json()["details"]["steps"])
    assert (await _rows(client, user))[0]["secret"] == "s"  # nothing changed

    dropped = await client.post(
        "/api/v1/collections", json=NOTES, headers=bearer(admin), params={"allow_destructive": "true"}
    )
    assert dropped.status_code == 200, dropped.text
    assert "secret" not in (await _rows(client, user))[0]

    # Dropping the collection is destructive too.
    refused = await client.delete("/api/v1/collections/notes", headers=bearer(admin))
    assert refused.status_code == 400
    gone = await client.delete("/api/v1/collections/notes", headers=bearer(admin), params={"allow_destructive": "true"})
    assert gone.status_code == 200, gone.text
    assert (await client.get("/data/notes", headers=bearer(user))).status_code == 404
    assert (await client.get("/api/v1/collections/notes/history", headers=bearer(admin))).status_code == 404


async def test_definitions_are_checked(client: Any, admin: dict[str, Any]) -> None:
    cases = [
        ({"name": "apprun_users", "fields": []}, "data.invalid_collection"),
        ({"name": "x", "fields": [{"name": "id", "type": "text"}]}, "data.invalid_collection"),
        ({"name": "x", "fields": [{"name": "a", "type": "enum"}]}, "data.invalid_collection"),
        (
            {"name": "x", "fields": [{"name": "a", "type": "relation", "collection": "nowhere"}]},
            "data.unknown_collection",
        ),
        ({"name": "x", "fields": [{"name": "a", "type": "text", "colour": "red"}]}, "data.invalid_collection"),
    ]
    for definition, code in cases:
        r = await client.post("/api/v1/collections", json=definition, headers=bearer(admin))
        assert r.status_code == 400, (definition, r.text)
        assert r.json()["code"] == code, (definition, r.text)
    # A type change is refused (add a new field and copy instead).
    await define(client, admin, NOTES)
    changed = {**NOTES, "fields": [{"name": "title", "type": "integer"}, NOTES["fields"][1]]}
    r = await client.post("/api/v1/collections", json=changed, headers=bearer(admin))
    assert r.status_code == 400
    assert r.json()["code"] == "data.type_change_unsupported"


async def test_a_collection_in_use_cannot_be_dropped(client: Any, admin: dict[str, Any]) -> None:
    await define(client, admin, {"name": "authors", "fields": [{"name": "name", "type": "text"}]})
    await define(
        client, admin, {"name": "books", "fields": [{"name": "author", "type": "relation", "collection": "authors"}]}
    )
    r = await client.delete("/api/v1/collections/authors", headers=bearer(admin), params={"allow_destructive": "true"})
    assert r.status_code == 409
    assert r.json()["details"]["used_by"] == ["books"]


SCHEMA = """
collections:
  - name: posts            # refers to authors, defined below: the file's order does not matter
    fields:
      - {name: title, type: text, required: true, searchable: true}
      - {name: author, type: relation, collection: authors, on_delete: set_null}
      - {name: tags, type: relation, collection: tags, many: true, through: post_tags}
    rules: {list: authenticated, view: authenticated, create: authenticated, update: owner, delete: owner}
  - name: authors
    fields: [{name: name, type: text, required: true}]
  - name: tags
    fields: [{name: label, type: text, required: true, unique: true}]
  - name: post_tags
    fields:
      - {name: post, type: relation, collection: posts, required: true, on_delete: cascade}
      - {name: tag, type: relation, collection: tags, required: true, on_delete: cascade}
"""


def _cli(tmp_path: Path, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_", "APPRUN_", "JWT_"))}
    return subprocess.run(
        [sys.executable, "-m", "apprun", *args],
        capture_output=True,
        text=True,
        env={**clean, "APPRUN_DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": database_url},
        cwd=tmp_path,
        timeout=90,
        check=False,
    )


async def test_cli_applies_a_schema_file_idempotently(
    client: Any, admin: dict[str, Any], tmp_path: Path, database_url: str
) -> None:
    schema = tmp_path / "schema.yaml"
    schema.write_text(SCHEMA)

    dry = _cli(tmp_path, database_url, "collections", "apply", str(schema), "--dry-run")
    assert dry.returncode == 0, dry.stderr + dry.stdout
    assert "posts: would create" in dry.stdout
    assert "CREATE TABLE" in dry.stdout
    assert (await client.get("/api/v1/collections", headers=bearer(admin))).json() == []

    first = _cli(tmp_path, database_url, "collections", "apply", str(schema))
    assert first.returncode == 0, first.stderr + first.stdout
    for name in ("authors", "posts", "tags", "post_tags"):
        assert f"{name}: created" in first.stdout
    assert first.stdout.index("authors: created") < first.stdout.index("posts: created")

    second = _cli(tmp_path, database_url, "collections", "apply", str(schema))
    assert second.returncode == 0, second.stderr + second.stdout
    assert second.stdout.count("unchanged") == 4

    listed = await client.get("/api/v1/collections", headers=bearer(admin))
    assert sorted(c["name"] for c in listed.json()) == ["authors", "post_tags", "posts", "tags"]

    # A destructive edit of the file is refused without the flag, with what to do.
    schema.write_text(SCHEMA.replace("      - {name: title, type: text, required: true, searchable: true}\n", ""))
    refused = _cli(tmp_path, database_url, "collections", "apply", str(schema))
    assert refused.returncode == 2
    assert "delete data" in refused.stderr
    assert "--dry-run" in refused.stderr

    missing = _cli(tmp_path, database_url, "collections", "apply", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr


async def test_defaults_are_checked_when_the_collection_is_defined(client: Any, admin: dict[str, Any]) -> None:
    bad = [
        {"name": "status", "type": "enum", "values": ["a", "b"], "default": "c"},
        {"name": "n", "type": "integer", "default": "1"},
        {"name": "at", "type": "datetime", "default": "2024-01-01T00:00:00"},  # no zone
    ]
    for field in bad:
        r = await client.post("/api/v1/collections", json={"name": "x", "fields": [field]}, headers=bearer(admin))
        assert r.status_code == 400, (field, r.text)
        assert r.json()["code"] == "data.invalid_collection"
        assert r.json()["details"]["problems"][0]["at"] == "fields.0.default"
    ok = {"name": "x", "fields": [{"name": "at", "type": "datetime", "default": "now"}]}
    assert (await client.post("/api/v1/collections", json=ok, headers=bearer(admin))).status_code == 201


async def test_openapi_describes_each_collection_and_follows_its_changes(client: Any, admin: dict[str, Any]) -> None:
    await define(
        client, admin, {**NOTES, "fields": [*NOTES["fields"], {"name": "secret", "type": "text", "hidden": True}]}
    )
    document = (await client.get("/openapi.json")).json()
    assert {"/data/notes", "/data/notes/{id}"} <= set(document["paths"])
    assert {"get", "post", "patch", "delete"} == set(document["paths"]["/data/notes"])
    row = document["components"]["schemas"]["notes"]
    assert {"id", "tenant_id", "created_at", "title", "body"} <= set(row["properties"])
    assert "secret" not in row["properties"]  # hidden fields are never returned
    write = document["components"]["schemas"]["notes.write"]
    assert write["required"] == ["title"]
    assert write["properties"]["title"]["maxLength"] == 100
    assert "id" not in write["properties"]

    await define(
        client,
        admin,
        {**NOTES, "fields": [*NOTES["fields"], {"name": "pinned", "type": "boolean"}]},
        allow_destructive="true",
    )
    document = (await client.get("/openapi.json")).json()
    assert "pinned" in document["components"]["schemas"]["notes"]["properties"]
    assert "secret" not in document["components"]["schemas"]["notes.write"]["properties"]


async def test_a_collection_may_relate_to_itself(client: Any, admin: dict[str, Any]) -> None:
    """Replies, trees, a manager: a relation to the collection's own table, at creation or added later."""
    comments = {
        "name": "comments",
        "fields": [
            {"name": "body", "type": "text"},
            {"name": "reply_to", "type": "relation", "collection": "comments", "on_delete": "cascade"},
        ],
        "rules": dict.fromkeys(("list", "view", "create", "update", "delete"), "authenticated"),
    }
    assert (await define(client, admin, comments))["operation"] == "create"
    grown = {
        **comments,
        "fields": [
            *comments["fields"],
            {"name": "quoted", "type": "relation", "collection": "comments", "on_delete": "set_null"},
        ],
    }
    assert (await define(client, admin, grown))["operation"] == "alter"

    user = await register(client)
    h = {**bearer(user), "Prefer": "return=representation"}
    first = (await client.post("/data/comments", json={"body": "first"}, headers=h)).json()[0]["id"]
    r = await client.post("/data/comments", json={"body": "reply", "reply_to": first, "quoted": first}, headers=h)
    assert r.status_code == 201, r.text
    r = await client.post("/data/comments", json={"body": "dangling", "reply_to": str(uuid.uuid4())}, headers=h)
    assert r.status_code == 409, r.text
    listed = await client.get(
        "/data/comments?select=body,parent:reply_to(body)&reply_to=not.is.null", headers=bearer(user)
    )
    assert listed.status_code == 200, listed.text
    assert listed.json() == [{"body": "reply", "parent": {"body": "first"}}]
    await client.delete(f"/data/comments?id=eq.{first}", headers=bearer(user))
    assert (await client.get("/data/comments", headers=bearer(user))).json() == []
