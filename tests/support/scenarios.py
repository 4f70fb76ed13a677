"""Table-driven API tests: one row per scenario, one parametrized test per table.

A `Scenario` says what to send and what must (and must not) come back::

    Scenario("unknown route in Chinese", "GET", "/nope",
             headers={"Accept-Language": "zh-CN"}, status=404,
             json={"code": "http.not_found"}, contains=["未找到"])

`run` sends it with any httpx-compatible client and asserts everything the row
names, with a message that shows the response.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Scenario", "run", "scenario_ids"]


@dataclass(frozen=True)
class Scenario:
    name: str
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    json_body: Any = None
    body: bytes | None = None
    status: int = 200
    #: A subset the JSON reply must contain (objects compared as subsets, lists item by item).
    json: dict[str, Any] | None = None
    #: Substrings the raw body must contain / must not contain.
    contains: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    #: Response headers that must be present with these values (None: present, any value).
    response_headers: dict[str, str | None] = field(default_factory=dict)


def scenario_ids(scenario: Scenario) -> str:
    return scenario.name


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


async def run(client: Any, scenario: Scenario) -> Any:
    """Send the scenario's request and check every expectation; returns the response."""
    kwargs: dict[str, Any] = {"headers": scenario.headers}
    if scenario.json_body is not None:
        kwargs["json"] = scenario.json_body
    elif scenario.body is not None:
        kwargs["content"] = scenario.body
    response = await client.request(scenario.method, scenario.path, **kwargs)
    text = response.text
    shown = f"{scenario.name}: {response.status_code} {text[:800]}"
    problems: list[str] = []
    if response.status_code != scenario.status:
        problems.append(f"status {response.status_code}, expected {scenario.status}")
    if scenario.json is not None:
        try:
            problems.extend(_subset(scenario.json, response.json()))
        except ValueError:
            problems.append("body is not JSON")
    problems.extend(f"body lacks {s!r}" for s in scenario.contains if s not in text)
    problems.extend(f"body must not contain {s!r}" for s in scenario.absent if s in text)
    for name, value in scenario.response_headers.items():
        got = response.headers.get(name)
        if got is None:
            problems.append(f"header {name} missing")
        elif value is not None and got != value:
            problems.append(f"header {name}: {got!r}, expected {value!r}")
    assert not problems, shown + "\n  " + "\n  ".join(problems)
    return response
