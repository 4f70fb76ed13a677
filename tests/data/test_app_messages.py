"""An application's own error codes, raised by its hooks, read in the caller's language."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from apprun.app import create_app
from apprun.data.hooks import Hooks, WriteEvent
from apprun.kernel.config import ConfigError
from apprun.kernel.errors import ApiError
from apprun.modules import load_settings
from tests.support.accounts import bearer, make_admin_on, register
from tests.support.schema import define

PO = """msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\\n"

msgid "shop.out_of_stock"
msgstr "{text}"
"""


def _catalogs(root: Path) -> Path:
    for locale, text in (("en", "{sku} is out of stock."), ("zh_CN", "{sku} 已售罄。")):
        folder = root / locale / "LC_MESSAGES"
        folder.mkdir(parents=True)
        (folder / "shop.po").write_text(PO.replace("{text}", text), encoding="utf-8")
    return root


async def test_a_hook_raises_the_apps_own_code_with_its_own_messages(
    make_settings: Any, database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(database_url=database_url, apprun_locales_dir=_catalogs(tmp_path / "locales"))
    hooks = Hooks()

    @hooks.on_create("orders")
    async def check_stock(event: WriteEvent) -> None:
        if event.data.get("sku") == "gone":
            raise ApiError("shop.out_of_stock", status=409, params={"sku": event.data["sku"]})
        await event.next()

    app = create_app(settings, hooks=hooks, configure_logs=False)
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
        admin = await make_admin_on(client, settings)
        rules = dict.fromkeys(("list", "view", "create", "update", "delete"), "authenticated")
        await define(client, admin, {"name": "orders", "fields": [{"name": "sku", "type": "text"}], "rules": rules})
        user = await register(client)
        r = await client.post("/data/orders", json={"sku": "gone"}, headers=bearer(user))
        assert r.status_code == 409
        assert r.json()["code"] == "shop.out_of_stock"
        assert r.json()["message"] == "gone is out of stock."
        r = await client.post(
            "/data/orders", json={"sku": "gone"}, headers={**bearer(user), "Accept-Language": "zh-CN"}
        )
        assert r.json()["message"] == "gone 已售罄。"
        assert (await client.post("/data/orders", json={"sku": "ok"}, headers=bearer(user))).status_code == 201


def test_a_locales_dir_that_does_not_exist_is_a_config_error(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("APPRUN_LOCALES_DIR", str(tmp_path / "missing"))
    monkeypatch.setenv("APPRUN_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(ConfigError, match="APPRUN_LOCALES_DIR"):
        load_settings()
