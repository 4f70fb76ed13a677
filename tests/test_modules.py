"""Every module keeps the contract (kernel/module.py), and none is left out of the list or the contracts."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import typer

import apprun
from apprun.kernel.config import KernelSettings, own_fields
from apprun.kernel.module import Module
from apprun.kernel.modules import check_module_list
from apprun.modules import MODULES, Settings

SRC = Path(apprun.__file__).parent
PYPROJECT = SRC.parent.parent / "pyproject.toml"
NOT_MODULES = {"kernel", "testing"}


def _contracts() -> list[dict[str, object]]:
    with PYPROJECT.open("rb") as fh:
        contracts: list[dict[str, object]] = tomllib.load(fh)["tool"]["importlinter"]["contracts"]
    return contracts


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_the_module_implements_the_contract(module: type[Module]) -> None:
    assert module.__module__ == f"apprun.{module.name}.module", "a module's class lives in <package>/module.py"
    assert issubclass(module.settings, KernelSettings)
    assert module.settings is not KernelSettings, "every module has its own settings section"
    assert module.settings.__module__ == f"apprun.{module.name}.settings"
    assert module.messages is not None
    for locale in ("en", "zh_CN"):
        assert (SRC / "locales" / locale / "LC_MESSAGES" / f"{module.messages}.po").is_file()
    for name, group in module.cli().items():
        assert isinstance(group, typer.Typer), name
    assert module.doctor_checks(Settings(_env_file=None)) is not None


def test_the_list_is_in_dependency_order() -> None:
    check_module_list(MODULES)


def test_every_setting_belongs_to_exactly_one_section() -> None:
    owners: dict[str, str] = dict.fromkeys(own_fields(KernelSettings), "kernel")
    for module in MODULES:
        assert issubclass(Settings, module.settings), f"Settings lacks {module.name}'s section"
        for name in own_fields(module.settings):
            assert name not in owners, f"{name} is in both {owners[name]} and {module.name}"
            owners[name] = module.name
    assert set(owners) == set(Settings.model_fields)


def test_every_section_validates_inside_the_composed_settings() -> None:
    """Validators keep unique names: in the composed class, one of the same name would hide another."""
    s = Settings(_env_file=None, webhook_allowlist="a, b", auth_redirect_allowlist="https://x/", http_cors_origins="")
    assert (s.webhook_allowlist, s.auth_redirect_allowlist, s.http_cors_origins) == (["a", "b"], ["https://x/"], [])
    with pytest.raises(ValueError, match="SMTP_HOST"):
        Settings(_env_file=None, mail_backend="smtp")
    prod = {"_env_file": None, "apprun_env": "prod", "jwt_secret": "x" * 40}
    with pytest.raises(ValueError, match="DATA_TENANT_PREDICATE"):
        Settings(**prod, data_tenant_predicate=False)
    with pytest.raises(ValueError, match="MAIL_BACKEND=log"):
        Settings(**prod, mail_backend="log")


def test_every_package_is_a_module_in_the_list() -> None:
    packages = {path.parent.name for path in SRC.glob("*/__init__.py")} - NOT_MODULES
    assert packages == {module.name for module in MODULES}


def test_every_module_is_in_the_import_contracts() -> None:
    names = {module.name for module in MODULES}
    contracts = {str(contract["name"]): contract for contract in _contracts()}
    kernel = next(c for name, c in contracts.items() if name.startswith("the kernel imports no module"))
    assert {f"apprun.{name}" for name in names} <= set(kernel["forbidden_modules"])  # type: ignore[arg-type]
    layered = next(c for c in contracts.values() if c["type"] == "layers")
    in_layers = {part.strip() for layer in layered["layers"] for part in layer.split("|")}  # type: ignore[attr-defined]
    assert in_layers == {f"apprun.{name}" for name in names}
    for name in names:
        apis = sorted(
            f"apprun.{name}." + ".".join(path.relative_to(SRC / name).with_suffix("").parts)
            for path in (SRC / name).rglob("*.py")
            if path.stem == "api" or path.stem.endswith("_api")
        )
        contract = contracts[f"{name}: the service layer never imports its api"]
        assert contract["type"] == "protected"
        assert sorted(contract["protected_modules"]) == apis  # type: ignore[call-overload]
        assert contract["allowed_importers"] == [f"apprun.{name}.module"]
