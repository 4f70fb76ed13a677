"""Every item of the security checklist is proved by at least one test.

The checklist (docs/security.md) is a test suite, not a document: a test
says which items it proves with ``@pytest.mark.checklist(n, ...)`` (or a
module's ``pytestmark``). This test reads the markers from the test files'
syntax trees, so it holds whatever subset of the suite runs, and fails when
an item has no test at all (items 9 and 33 once had none).
"""

from __future__ import annotations

import ast
from pathlib import Path

#: The checklist's items, 1 to 37.
ITEMS = range(1, 38)
#: Items about modules that do not exist yet, each with the issue that builds it.
NOT_YET = {
    24: "realtime (issue 16)",
    25: "functions (issue 14)",
    26: "functions (issue 14)",
    27: "workflows (issue 15)",
}
TESTS = Path(__file__).parent


def _is_checklist_mark(node: ast.expr) -> bool:
    # pytest.mark.checklist(...)
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "checklist"
        and isinstance(node.func.value, ast.Attribute)
        and node.func.value.attr == "mark"
    )


def marked_items() -> dict[int, list[str]]:
    """Checklist item → the tests (``file::name``, or ``file`` for a module mark) that claim it."""
    found: dict[int, list[str]] = {}
    for path in sorted(TESTS.rglob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        where = str(path.relative_to(TESTS))
        for node in ast.walk(tree):
            name = where
            candidates: list[ast.expr] = []
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{where}::{node.name}"
                candidates = list(node.decorator_list)
            elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
            ):
                value = node.value
                candidates = list(value.elts) if isinstance(value, ast.List | ast.Tuple) else [value]
            for mark in candidates:
                if _is_checklist_mark(mark):
                    assert isinstance(mark, ast.Call)
                    for arg in mark.args:
                        assert isinstance(arg, ast.Constant) and isinstance(arg.value, int), f"{name}: {ast.dump(arg)}"
                        found.setdefault(arg.value, []).append(name)
    return found


def test_every_checklist_item_has_a_test() -> None:
    found = marked_items()
    assert set(found) <= set(ITEMS), f"unknown checklist items: {sorted(set(found) - set(ITEMS))}"
    missing = [item for item in ITEMS if item not in found and item not in NOT_YET]
    assert not missing, f"checklist items without a test: {missing} (mark the test with @pytest.mark.checklist)"


def test_items_of_modules_yet_to_come_are_not_claimed_before_they_exist() -> None:
    # When a module lands, its items move out of NOT_YET together with their tests.
    found = marked_items()
    early = {item: found[item] for item in NOT_YET if item in found}
    assert not early, f"tests claim items listed as not yet built; remove them from NOT_YET: {early}"


def test_docs_security_lists_the_tests_of_each_item() -> None:
    """docs/security.md's table names, for each item, exactly the test files that mark it."""
    table: dict[int, set[str]] = {}
    doc = TESTS.parent / "docs" / "security.md"
    for line in doc.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].isdigit():
            table[int(cells[0])] = {c.strip("` ").removeprefix("tests/") for c in cells[2].split(",") if "tests/" in c}
    found = {item: {name.split("::")[0] for name in names} for item, names in marked_items().items()}
    stale = {
        item: {"doc": sorted(table.get(item, set())), "marks": sorted(files)}
        for item, files in found.items()
        if table.get(item, set()) != files
    }
    assert not stale, f"docs/security.md disagrees with the markers: {stale}"
    assert sorted(table) == list(ITEMS), "docs/security.md lists every item, 1 to 37"
