"""pyproject.toml must list every package: a non-editable install would otherwise miss code."""

from __future__ import annotations

import tomllib

from conftest import PROJECT_ROOT


def package_dirs() -> set[str]:
    found = set()
    for top, name in (("tools", "mlatlas"), ("reproductions", "reproductions")):
        base = PROJECT_ROOT / top
        for init in base.rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            parts = init.parent.relative_to(base).parts
            found.add(".".join((name, *parts)))
    return found


def test_every_package_is_listed_in_pyproject():
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    missing = sorted(package_dirs() - listed)
    stale = sorted(listed - package_dirs())
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {missing}"
    assert not stale, f"these listed packages have no __init__.py any more: {stale}"


def test_readme_templates_are_shipped_as_package_data():
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["mlatlas"]
    templates = PROJECT_ROOT / "tools" / "templates"
    shipped = {p for pattern in patterns for p in (PROJECT_ROOT / "tools").glob(pattern) if p.is_file()}
    assert set((templates / "readme").glob("*.j2")) <= shipped
