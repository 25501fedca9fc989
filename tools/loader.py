"""Read ``catalog/`` into a :class:`Catalog`, collecting every problem instead of stopping at the first.

Interim version: validates each file with the models. The foundation issue replaces the internals with
line-accurate errors and cross-file checks; the public API (``load_catalog``, ``load_valid_catalog``) stays.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from mlatlas.catalog import Catalog
from mlatlas.models import RESOURCE_FILES, LabelVocabulary, Paper, TopicVocabulary, VenueVocabulary
from mlatlas.paths import catalog_dir, project_root
from mlatlas.problems import CatalogError, Problem, relative


def _read(path: Path, model, root: Path, problems: list[Problem]):
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return model.model_validate(data)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problems.append(Problem(relative(path, root), (mark.line + 1) if mark else 0, "", f"broken YAML: {exc}"))
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"])
            problems.append(Problem(relative(path, root), 0, loc, err["msg"]))
    return None


def load_catalog(root: Path | None = None) -> tuple[Catalog | None, list[Problem]]:
    root = root or project_root()
    base = catalog_dir(root)
    problems: list[Problem] = []
    labels = _read(base / "vocab" / "labels.yaml", LabelVocabulary, root, problems)
    topics = _read(base / "vocab" / "topics.yaml", TopicVocabulary, root, problems)
    venues = _read(base / "vocab" / "venues.yaml", VenueVocabulary, root, problems)
    if not (labels and topics and venues):
        return None, problems
    catalog = Catalog(root=root, labels=labels, topics=topics, venues=venues)
    papers = []
    for path in sorted((base / "papers").glob("*.yaml")):
        paper = _read(path, Paper, root, problems)
        if paper:
            papers.append(paper)
            catalog.files[paper.id] = path
    catalog.papers = {p.id: p for p in sorted(papers, key=lambda p: (p.date, p.id))}
    for name, model in RESOURCE_FILES.items():
        path = base / "resources" / name
        if path.exists():
            listing = _read(path, model, root, problems)
            if listing:
                key = name.removesuffix(".yaml")
                catalog.resources[key] = getattr(listing, key)
    return catalog, problems


def load_valid_catalog(root: Path | None = None) -> Catalog:
    """The catalog, or :class:`CatalogError` listing every problem."""
    catalog, problems = load_catalog(root)
    errors = [p for p in problems if p.severity == "error"]
    if errors or catalog is None:
        raise CatalogError(errors)
    return catalog
