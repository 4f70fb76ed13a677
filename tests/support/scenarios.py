"""Table-driven API tests: one `Case` per row, one test per table (PocketBase's API scenarios).

A `Case` names the request and everything that must, and must not, come of it::

    Case("unknown route in Chinese", "GET", "/nope", headers={"Accept-Language": "zh-CN"},
         status=404, code="http.not_found", contains=["未找到"], events=[])
    Case("a post", "POST", "/data/posts", headers=bearer(alice), body={"title": "t"},
         status=201, events=["apprun.record.created"])

`run` sends one with any httpx-compatible client and asserts everything the
row names, with a message that shows the response; `run_all` runs a whole
table and reports every row that went wrong at once.

``events`` are the CloudEvents types the request must have written to the
outbox, in the order it wrote them: the order is part of what a request
promises (a cascade deletes the children before the parent), and event ids
sort in the order they were made (tests/support/outbox.py), so the order is
there to check. ``[]`` means no event may be written, which is how a refused
request proves it changed nothing; ``None`` leaves the outbox unchecked.
Checking needs the test's own `Database` (``run(client, case, db)``).

A table written before its data exists names that data with ``$placeholders``
(`Case.filled`) and its caller with ``actor``, a name the table's runner turns
into credentials (`Case.with_credentials`) before the row runs.
"""

from __future__ import annotations

import re
import string
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field, replace
from typing import Any
from urllib.parse import quote, urlencode

from apprun.kernel.db import Database
from tests.support.outbox import events_since, outbox_mark

__all__ = ["Case", "case_ids", "run", "run_all"]


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    #: Query-string pairs, encoded onto ``path`` when the row runs.
    params: tuple[tuple[str, str], ...] = ()
    _: KW_ONLY
    headers: Mapping[str, str] = field(default_factory=dict)
    #: The request body, sent as JSON (None: no body); ``content`` sends raw bytes instead.
    body: Any = None
    content: bytes | None = None
    #: Whose credentials the request carries: a name the table's runner resolves (None: the headers alone).
    actor: str | None = None
    status: int = 200
    #: The reply's error code: shorthand for ``json={"code": ...}`` (merged into ``json``).
    code: str | None = None
    #: A subset the JSON reply must contain (objects compared as subsets, lists item by item).
    json: Any = None
    #: Substrings the raw body must contain / must not contain.
    contains: Sequence[str] = ()
    absent: Sequence[str] = ()
    #: Response headers that must be present with these values (None: present, any value; a pattern: matches
    #: the whole value).
    response_headers: Mapping[str, str | re.Pattern[str] | None] = field(default_factory=dict)
    #: The event types the request writes to the outbox, in order; [] none may fire; None unchecked.
    events: Sequence[str] | None = None
    #: Run on this dialect only (where the two databases rightly differ); `run_all` skips it elsewhere.
    dialect: str | None = None

    def filled(self, values: Mapping[str, str]) -> Case:
        """This case with every ``$name`` in its request and expectations replaced from ``values``."""
        return replace(
            self,
            path=_fill(self.path, values),
            params=_fill(self.params, values),
            headers=_fill(self.headers, values),
            body=_fill(self.body, values),
            json=_fill(self.json, values),
            contains=_fill(self.contains, values),
            absent=_fill(self.absent, values),
            response_headers=_fill(self.response_headers, values),
        )

    def with_credentials(self, credentials: Mapping[str, str]) -> Case:
        """This case sent with ``credentials`` (its actor's headers); its own headers win."""
        return replace(self, headers={**credentials, **self.headers}, actor=None)


def case_ids(case: Case) -> str:
    return case.name


def _fill(value: Any, values: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return string.Template(value).safe_substitute(values)
    if isinstance(value, Mapping):
        return {_fill(k, values): _fill(v, values) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_fill(v, values) for v in value)
    return value


def _subset(expected: Any, actual: Any, path: str = "$") -> list[str]:
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object, got {actual!r}"]
        problems: list[str] = []
        for key, value in expected.items():
            if key not in actual:
                problems.append(f"{path}.{key}: missing")
            else:
                problems.extend(_subset(value, actual[key], f"{path}.{key}"))
        return problems
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [p for i, (e, a) in enumerate(zip(expected, actual, strict=True)) for p in _subset(e, a, f"{path}[{i}]")]
    return [] if expected == actual else [f"{path}: expected {expected!r}, got {actual!r}"]


def _url(case: Case) -> str:
    if not case.params:
        return case.path
    joiner = "&" if "?" in case.path else "?"
    return case.path + joiner + urlencode(case.params, quote_via=quote, safe="")


def _reply_problems(case: Case, response: Any) -> list[str]:
    text = response.text
    problems: list[str] = []
    if response.status_code != case.status:
        problems.append(f"status {response.status_code}, expected {case.status}")
    expected = case.json if case.code is None else {**(case.json or {}), "code": case.code}
    if expected is not None:
        try:
            problems.extend(_subset(expected, response.json()))
        except ValueError:
            problems.append("body is not JSON")
    problems.extend(f"body lacks {s!r}" for s in case.contains if s not in text)
    problems.extend(f"body must not contain {s!r}" for s in case.absent if s in text)
    for name, value in case.response_headers.items():
        got = response.headers.get(name)
        if got is None:
            problems.append(f"header {name} missing")
        elif isinstance(value, re.Pattern):
            if not value.fullmatch(got):
                problems.append(f"header {name}: {got!r}, expected to match {value.pattern!r}")
        elif value is not None and got != value:
            problems.append(f"header {name}: {got!r}, expected {value!r}")
    return problems


async def run(client: Any, case: Case, db: Database | None = None) -> Any:
    """Send the case's request and check every expectation; returns the response.

    ``db``: the test's own database, needed when the case names ``events``.
    """
    if case.actor is not None:
        raise ValueError(f"{case.name}: actor {case.actor!r} unresolved (the table's runner gives its credentials)")
    if case.events is not None and db is None:
        raise ValueError(f"{case.name}: names events, so run it with the test's database")
    mark = await outbox_mark(db) if db is not None and case.events is not None else None
    kwargs: dict[str, Any] = {"headers": dict(case.headers)}
    if case.body is not None:
        kwargs["json"] = case.body
    elif case.content is not None:
        kwargs["content"] = case.content
    response = await client.request(case.method, _url(case), **kwargs)
    problems = _reply_problems(case, response)
    if db is not None and mark is not None and case.events is not None:
        fired = await events_since(db, mark)
        if fired != list(case.events):
            problems.append(f"events {fired}, expected {list(case.events)}")
    assert not problems, f"{case.name}: {response.status_code} {response.text[:800]}\n  " + "\n  ".join(problems)
    return response


async def run_all(
    client: Any,
    cases: Iterable[Case],
    db: Database | None = None,
    *,
    prepare: Callable[[Case], Case] | None = None,
    after: Callable[[Case], Awaitable[None]] | None = None,
) -> None:
    """Every case (``prepare`` fills a template row in), then every failure at once.

    One wrong row must not hide the next. ``after`` runs after each row (a check
    of the state it left); a row for another dialect than ``db``'s is skipped.
    """
    failures: list[str] = []
    ran = 0
    for case in cases:
        if case.dialect is not None:
            if db is None:
                raise ValueError(f"{case.name}: runs on {case.dialect} only, so run it with the test's database")
            if case.dialect != db.dialect:
                continue
        ran += 1
        try:
            await run(client, prepare(case) if prepare else case, db)
        except AssertionError as exc:
            failures.append(str(exc))
        if after is not None:
            try:
                await after(case)
            except AssertionError as exc:
                failures.append(f"after {case.name}: {exc}")
    assert not failures, f"{len(failures)} of {ran} rows failed:\n\n" + "\n\n".join(failures)
