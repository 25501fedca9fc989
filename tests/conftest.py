"""Shared fixtures. Keep this small: fixtures used by one test file belong in that file."""

from __future__ import annotations

import re
import shutil
import zlib
from pathlib import Path

import pytest

FIXTURE_CATALOG = Path(__file__).parent / "fixtures" / "catalog"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class CatalogTree:
    """A throw-away copy of the tiny fixture catalog (two papers, one dataset, one result record)."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, relative: str) -> Path:
        return self.root / relative

    def paper(self, paper_id: str) -> Path:
        return self.root / "catalog" / "papers" / f"{paper_id}.yaml"

    def read(self, relative: str) -> str:
        return self.path(relative).read_text(encoding="utf-8")

    def write(self, relative: str, text: str) -> Path:
        path = self.path(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def edit(self, relative: str, old: str, new: str) -> None:
        text = self.read(relative)
        assert old in text, f"{old!r} not in {relative}"
        self.write(relative, text.replace(old, new, 1))

    def copy_paper(self, source_id: str, new_id: str, *replacements: tuple[str, str]) -> Path:
        """A new paper made from an existing one: new id, arXiv id, title and repository, plus ``replacements``."""
        text = self.paper(source_id).read_text(encoding="utf-8").replace(f"id: {source_id}\n", f"id: {new_id}\n")
        text = re.sub(r'arxiv: "[^"]*"', f'arxiv: "2001.{zlib.crc32(new_id.encode()) % 90000 + 10000}"', text)
        text = text.replace("\ntitle: ", f"\ntitle: {new_id.title()} and ", 1)
        text = text.replace("https://github.com/example/alpha", f"https://github.com/example/{new_id}")
        for old, new in replacements:
            assert old in text, f"{old!r} not in {source_id}"
            text = text.replace(old, new)
        return self.write(f"catalog/papers/{new_id}.yaml", text)


@pytest.fixture
def tree(tmp_path: Path) -> CatalogTree:
    root = tmp_path / "atlas"
    shutil.copytree(FIXTURE_CATALOG, root)
    return CatalogTree(root)


@pytest.fixture(scope="session", autouse=True)
def _private_data_cache(tmp_path_factory):
    """Decoded Omniglot images go to a cache of this test session, never to the user's cache folder."""
    import os

    previous = os.environ.get("MLATLAS_CACHE_DIR")
    os.environ["MLATLAS_CACHE_DIR"] = str(tmp_path_factory.mktemp("mlatlas-cache"))
    yield
    if previous is None:
        os.environ.pop("MLATLAS_CACHE_DIR", None)
    else:
        os.environ["MLATLAS_CACHE_DIR"] = previous


@pytest.fixture(autouse=True)
def _no_records_into_this_repository(monkeypatch):
    """Tests never write into this checkout's reproductions/*/results/ (committed results): a run a test starts
    records under its own tmp_path (``--root``) or, being a smoke run, records nothing."""
    from reproductions.core import recording  # imported once per session; then a dictionary look-up

    publish = recording._publish
    results = PROJECT_ROOT / "reproductions"

    def guarded(pairs):
        for _, final in pairs:
            path = Path(final).resolve()
            if path.is_relative_to(results) and "results" in path.relative_to(results).parts[1:2]:
                recording._discard(pairs)  # no temp file left behind either
                raise AssertionError(f"a test wrote {path.relative_to(PROJECT_ROOT)} into the repository; give the "
                                     "run a checkout under tmp_path (--root) or make it a smoke run")
        publish(pairs)

    monkeypatch.setattr(recording, "_publish", guarded)
