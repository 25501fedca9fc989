"""Read ``catalog/`` (and the reproductions' result records) into a :class:`Catalog`, collecting every
problem of every file in one run instead of stopping at the first.

Each file is validated on its own by the models (:mod:`mlatlas.catalog.readers`); the checks that need the whole
catalog live in :mod:`mlatlas.catalog.checks`.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlatlas.catalog.benchmarks import BenchmarkVocabulary, benchmarks_file
from mlatlas.catalog.entries import Catalog
from mlatlas.catalog.checks import check_catalog
from mlatlas.catalog.partial import partial
from mlatlas.catalog.models import RESOURCE_FILES, LabelVocabulary, Paper, TopicVocabulary, VenueVocabulary
from mlatlas.paths import catalog_dir, project_root
from mlatlas.catalog.problems import CatalogError, Problem, relative
from mlatlas.catalog.readers import model_from, read_model
from mlatlas.records import load_records
from mlatlas.catalog.yamlio import read_many

SCHEMA_COMMENT = "# yaml-language-server: $schema=../schema/paper.schema.json"


def _name_order(path: Path) -> str:
    """Sort key of files in one folder, in the order ``sorted(paths)`` gives, without Path comparisons."""
    return os.path.normcase(path.name)


def _load_papers(catalog: Catalog, folder: Path, problems: list[Problem]) -> None:
    root = catalog.root
    for stray in sorted(folder.glob("*.yml")):
        problems.append(Problem(relative(stray, root), 0, "", "paper files end in '.yaml'; rename it"))
    papers: dict[str, Paper] = {}
    paths = sorted(folder.glob("*.yaml"), key=_name_order)
    for path, parsed in zip(paths, read_many(paths, root)):
        paper, doc = model_from(parsed, path, Paper, root, problems)
        if doc is not None:
            catalog.docs[path] = doc
            if not doc.text.startswith(SCHEMA_COMMENT):
                problems.append(
                    Problem(relative(path, root), 1, "", f"the first line must be '{SCHEMA_COMMENT}' (editor autocompletion)")
                )
        if paper is None:
            catalog.unreadable.add(path.stem)  # already reported; references to it are not errors too
            leftover = partial(Paper, doc.data) if doc is not None and isinstance(doc.data, dict) else None
            if leftover is not None and leftover.id is not None:
                catalog.partial[path] = leftover  # the whole-catalog checks still see what passed
            continue
        if paper.id in papers:
            first = relative(catalog.files[paper.id], root)
            problems.append(
                Problem(relative(path, root), doc.line_of(("id",)), "id", f"id {paper.id!r} is already used by {first}")
            )
            continue
        papers[paper.id] = paper
        catalog.files[paper.id] = path
    catalog.papers = {p.id: p for p in sorted(papers.values(), key=lambda p: (p.date, p.id))}


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Loading builds millions of small objects and no reference cycles; Python's cycle collector would
    otherwise scan the growing heap again and again (half the time of loading a large catalog). Afterwards
    the objects are frozen (left out of later collections, still freed as usual when dropped), or the
    first collection after loading would scan them all once more, during rendering."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def load_catalog(root: Path | None = None) -> tuple[Catalog | None, list[Problem]]:
    """The catalog (None when the vocabularies themselves are broken) and every problem found, sorted."""
    with _gc_paused():
        return _load_catalog(Path(root) if root else project_root())


def _load_catalog(root: Path) -> tuple[Catalog | None, list[Problem]]:
    base = catalog_dir(root)
    problems: list[Problem] = []
    vocab = {}
    docs = {}
    for name, model in (("labels", LabelVocabulary), ("topics", TopicVocabulary), ("venues", VenueVocabulary)):
        path = base / "vocab" / f"{name}.yaml"
        vocab[name], docs[path] = read_model(path, model, root, problems)
    if not all(vocab.values()):
        # Without the vocabularies the whole-catalog checks cannot run; each paper file's own problems still can.
        paths = sorted((base / "papers").glob("*.yaml"), key=_name_order)
        for path, parsed in zip(paths, read_many(paths, root)):
            model_from(parsed, path, Paper, root, problems)
        return None, sorted(problems)
    catalog = Catalog(root=root, **vocab)
    catalog.docs.update(docs)
    bench_path = benchmarks_file(root)
    if bench_path.exists():  # optional: a catalog without leaderboards has none
        catalog.benchmarks, catalog.docs[bench_path] = read_model(bench_path, BenchmarkVocabulary, root, problems)
    _load_papers(catalog, base / "papers", problems)
    for name, model in RESOURCE_FILES.items():
        path = base / "resources" / name
        if path.exists():
            listing, doc = read_model(path, model, root, problems)
            catalog.docs[path] = doc
            if listing is not None:
                key = name.removesuffix(".yaml")
                catalog.resources[key] = getattr(listing, key)
    catalog.records, record_problems = load_records(root)
    problems.extend(record_problems)
    problems.extend(check_catalog(catalog))
    return catalog, sorted(problems)


def load_valid_catalog(root: Path | None = None) -> Catalog:
    """The catalog, or :class:`CatalogError` listing every error (infos do not count)."""
    catalog, problems = load_catalog(root)
    errors = [p for p in problems if p.severity == "error"]
    if errors or catalog is None:
        raise CatalogError(errors)
    return catalog
