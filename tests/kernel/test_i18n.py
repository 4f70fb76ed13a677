"""Locale negotiation and catalogs."""

from __future__ import annotations

import pytest

from apprun.kernel.i18n import negotiate, translator


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "en"),
        ("", "en"),
        ("zh-CN", "zh_CN"),
        ("zh-cn", "zh_CN"),
        ("zh", "zh_CN"),
        ("zh-Hans", "zh_CN"),
        ("zh-Hans-CN", "zh_CN"),
        ("en-US,en;q=0.9", "en"),
        ("fr-FR,zh-CN;q=0.8,en;q=0.5", "zh_CN"),
        ("en;q=0.4,zh-CN;q=0.9", "zh_CN"),
        ("zh-CN;q=0", "en"),
        ("fr", "en"),
        ("*", "en"),
        ("zh-CN;q=abc", "en"),
        (",,,;;;", "en"),
    ],
)
def test_negotiation(header: str | None, expected: str) -> None:
    assert negotiate(header, ("en", "zh_CN")) == expected


def test_every_english_message_has_a_chinese_one() -> None:
    tr = translator()
    english = set(tr.catalog("en"))
    chinese = set(tr.catalog("zh_CN"))
    assert english, "the English catalog is empty"
    assert english - chinese == set(), "codes missing from zh_CN"
    assert chinese - english == set(), "codes only in zh_CN"


def test_placeholders_are_filled_and_missing_ones_kept() -> None:
    tr = translator()
    assert tr.gettext("http.not_found", "en", {"path": "/x"}) == "Nothing was found at /x."
    assert "{path}" in tr.gettext("http.not_found", "en")
    assert tr.gettext("http.not_found", "zh_CN", {"path": "/x"}) == "在 /x 未找到任何内容。"


def test_unknown_locale_and_code_fall_back() -> None:
    tr = translator()
    assert tr.gettext("db.unavailable", "fr") == tr.gettext("db.unavailable", "en")
    assert tr.gettext("no.such.code", "zh_CN") == "no.such.code"


def test_every_error_code_raised_in_the_code_has_a_message() -> None:
    """A code without a catalog entry would reach users as its bare code."""
    import re
    from pathlib import Path

    import apprun

    root = Path(apprun.__file__).parent
    pattern = re.compile(
        r"""(?:\b(?:[A-Z][A-Za-z]*)?(?:Error|Request|Unauthorized|Forbidden|NotFound|Conflict|Requests|Unavailable|"""
        r"""Large|Timeout|Violation)\(\s*|code=|default_code\s*=\s*)"([a-z_]+\.[a-z_]+)\"""",
    )
    used: dict[str, str] = {}
    for path in root.rglob("*.py"):
        for code in pattern.findall(path.read_text(encoding="utf-8")):
            used.setdefault(code, str(path.relative_to(root)))
    assert len(used) > 100, "the scan found too few codes to be trusted"
    assert "data.record_not_found" in used, "the scan misses a bare NotFound(...)"
    catalog = translator().catalog("en")
    missing = {code: where for code, where in used.items() if code not in catalog}
    assert missing == {}, f"codes without an English message: {missing}"
