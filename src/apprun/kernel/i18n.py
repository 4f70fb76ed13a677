"""Localized messages, chosen by the request's ``Accept-Language``.

Catalogs are gettext ``.po`` files under ``apprun/locales/<locale>/LC_MESSAGES/``,
one file per module (``kernel.po``, ``auth.po`` …), read with Babel at start.
The message id is the stable error code (``http.not_found``); the English
catalog holds the English text, so a code is never shown to a user as its own
message unless a catalog lacks it. Messages may use ``{name}`` placeholders
filled from the error's parameters.

Locale names on the wire are BCP 47 (``en``, ``zh-CN``); internally Babel's
``zh_CN``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from babel.messages.pofile import read_po

__all__ = ["DEFAULT_LOCALE", "Translator", "negotiate", "translator"]

DEFAULT_LOCALE = "en"


class _SafeDict(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class Translator:
    """Every catalog of every locale, loaded once."""

    def __init__(self, catalogs: Mapping[str, Mapping[str, str]]) -> None:
        self._catalogs = {loc: dict(msgs) for loc, msgs in catalogs.items()}
        self.locales: tuple[str, ...] = tuple(sorted(self._catalogs))

    @classmethod
    def from_package(cls, package: str = "apprun") -> Translator:
        """Read every ``.po`` file under ``<package>/locales``."""
        return cls(_read_catalogs(resources.files(package).joinpath("locales")))

    def merge(self, directory: Path) -> None:
        """Add the catalogs of ``directory`` (``<locale>/LC_MESSAGES/*.po``) over the ones held.

        An application's own error codes get their messages this way; a
        message for one of apprun's codes replaces apprun's wording.
        """
        for locale, messages in _read_catalogs(directory).items():
            self._catalogs.setdefault(locale, {}).update(messages)
        self.locales = tuple(sorted(self._catalogs))

    def gettext(self, msgid: str, locale: str, params: Mapping[str, Any] | None = None) -> str:
        """The message for ``msgid`` in ``locale`` (falling back to English)."""
        text = self._catalogs.get(locale, {}).get(msgid)
        if text is None:
            text = self._catalogs.get(DEFAULT_LOCALE, {}).get(msgid, msgid)
        if params:
            try:
                return text.format_map(_SafeDict(params))
            except (ValueError, IndexError):  # a malformed catalog entry must not become a 500
                return text
        return text

    def has(self, msgid: str) -> bool:
        return msgid in self._catalogs.get(DEFAULT_LOCALE, {})

    def negotiate(self, accept_language: str | None) -> str:
        """The best available locale for an ``Accept-Language`` header."""
        return negotiate(accept_language, self.locales)

    def catalog(self, locale: str) -> Mapping[str, str]:
        return self._catalogs.get(locale, {})


# Tags that mean a locale we hold under another name. Traditional Chinese
# (zh-TW, zh-HK, zh-Hant) is deliberately absent: it is not zh_CN.
_ALIASES = {"zh": "zh_cn", "zh_hans": "zh_cn", "zh_sg": "zh_cn", "zh_hans_cn": "zh_cn", "zh_hans_sg": "zh_cn"}


def _read_catalogs(root: Traversable | Path) -> dict[str, dict[str, str]]:
    catalogs: dict[str, dict[str, str]] = {}
    for locale_dir in root.iterdir():
        messages_dir = locale_dir.joinpath("LC_MESSAGES")
        if not messages_dir.is_dir():
            continue
        merged = catalogs.setdefault(locale_dir.name, {})
        for po in sorted(messages_dir.iterdir(), key=lambda p: p.name):
            if not po.name.endswith(".po"):
                continue
            with po.open("rb") as fh:
                catalog = read_po(fh, locale=locale_dir.name)
            for message in catalog:
                if message.id and isinstance(message.id, str) and message.string:
                    merged[message.id] = str(message.string)
    return catalogs


@functools.lru_cache(maxsize=512)
def negotiate(accept_language: str | None, available: tuple[str, ...]) -> str:
    """Pick a locale from ``Accept-Language`` (q-values honoured), else English.

    A tag matches an available locale exactly (case-insensitive), through an
    alias (``zh``, ``zh-Hans`` → ``zh_CN``), or by its language when we hold
    the bare language (``en-US`` → ``en``).
    """
    if not accept_language:
        return DEFAULT_LOCALE
    by_lower = {loc.lower(): loc for loc in available}
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(accept_language.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip().lower().replace("-", "_")
        if not tag or tag == "*":
            continue
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, index, tag))
    for _, _, tag in sorted(ranked):
        for candidate in (tag, _ALIASES.get(tag), tag.split("_", 1)[0]):
            if candidate and candidate in by_lower:
                return by_lower[candidate]
    return DEFAULT_LOCALE


@functools.lru_cache(maxsize=1)
def translator() -> Translator:
    """The process-wide translator for apprun's own catalogs."""
    return Translator.from_package("apprun")


def to_bcp47(locale: str) -> str:
    """``zh_CN`` → ``zh-CN``."""
    return locale.replace("_", "-")
