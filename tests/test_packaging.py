"""pyproject.toml must list every package: a non-editable install would otherwise miss code."""

from __future__ import annotations

import tomllib
from pathlib import Path

from conftest import PROJECT_ROOT


def package_dirs() -> set[str]:
    found = set()
    for top, name in (("tools/mlatlas", "mlatlas"), ("reproductions", "reproductions")):
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
    patterns = config["tool"]["setuptools"]["package-data"]["mlatlas.outputs"]
    outputs = PROJECT_ROOT / "tools" / "mlatlas" / "outputs"
    templates = outputs / "templates"
    shipped = {p for pattern in patterns for p in outputs.glob(pattern) if p.is_file()}
    assert set((templates / "readme").glob("*.j2")) <= shipped
    site_templates = {p for p in (templates / "site").rglob("*") if p.is_file()}
    assert site_templates and site_templates <= shipped


def test_import_paths_match_file_paths():
    """``mlatlas.a.b`` is ``tools/mlatlas/a/b.py``: editors and structure tools can follow every import by path."""
    import importlib

    base = PROJECT_ROOT / "tools"
    modules = [p for p in (base / "mlatlas").rglob("*.py") if "__pycache__" not in p.parts]
    assert len(modules) > 20
    for path in modules:
        parts = path.relative_to(base).with_suffix("").parts
        dotted = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        assert Path(importlib.import_module(dotted).__file__).resolve() == path.resolve(), dotted


def test_tools_holds_only_the_package():
    """The toolkit's folder is the package: nothing importable sits beside ``tools/mlatlas/``."""
    stray = sorted(p.name for p in (PROJECT_ROOT / "tools").glob("*.py"))
    assert not stray, f"move these into tools/mlatlas/: {stray}"
