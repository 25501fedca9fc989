"""The site build fails, with a clear message and no traceback, on an unknown tag or a broken catalog."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from test_site_browser import PROJECT_ROOT, build_site, copy_checkout


def _config_with_docs(tmp_path: Path, docs: Path) -> Path:
    """mkdocs.yml of the project, pointed at another docs folder (paths made absolute)."""
    config = yaml.safe_load((PROJECT_ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    config["docs_dir"] = str(docs)
    config["hooks"] = [str(PROJECT_ROOT / h) for h in config["hooks"]]
    config["theme"]["custom_dir"] = str(PROJECT_ROOT / config["theme"]["custom_dir"])
    path = tmp_path / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def test_a_tag_outside_the_label_vocabulary_fails_the_build(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(PROJECT_ROOT / "site" / "docs", docs)
    (docs / "notes.md").write_text("---\ntags:\n  - 'Type: Telepathy'\n---\n\n# Notes\n", encoding="utf-8")
    result = build_site(PROJECT_ROOT, tmp_path / "out", config=_config_with_docs(tmp_path, docs))
    assert result.returncode != 0
    assert "Tags not in allow list: Type: Telepathy" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_broken_catalog_fails_the_build_naming_file_and_field(tmp_path):
    root = tmp_path / "atlas"
    copy_checkout(root)
    paper = next(iter(sorted((root / "catalog" / "papers").glob("*.yaml"))))
    text = paper.read_text(encoding="utf-8")
    paper.write_text(text.replace("\nyear: ", "\nyear: nineteen # ", 1), encoding="utf-8")
    result = build_site(root, tmp_path / "out")
    assert result.returncode != 0
    assert f"catalog/papers/{paper.name}:" in result.stderr and "year" in result.stderr
    assert "Traceback" not in result.stderr
