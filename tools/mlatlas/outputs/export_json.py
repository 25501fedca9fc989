"""``catalog.json``: the whole validated catalog as one versioned JSON document.

The format is described in ``catalog/schema/README.md``; bump ``FORMAT_VERSION`` on any change that
could break a reader (renaming or removing a key, changing a type).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlatlas import __version__
from mlatlas.outputs.bibtex import bibtex_keys
from mlatlas.outputs.leaderboards import benchmarks_json, build_leaderboards, leaderboards_json
from mlatlas.catalog.entries import Catalog
from mlatlas.files import write_text_atomic
from mlatlas.catalog.problems import relative
from mlatlas.records import summaries, verdict

FORMAT_NAME = "meta-learning-atlas-catalog"
FORMAT_VERSION = 2  # 2: results take metric and unit from catalog/vocab/benchmarks.yaml; benchmarks, leaderboards


def _dump(model) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=True)


def catalog_to_json(catalog: Catalog) -> dict[str, Any]:
    """The catalog as JSON-ready data; deterministic (no time stamps), so unchanged data gives equal output."""
    keys = bibtex_keys(catalog)
    lines = summaries(record for _, record in catalog.records)
    papers = []
    for pid, paper in catalog.papers.items():
        entry = _dump(paper)
        entry["bibtex_key"] = keys[pid]
        entry["file"] = relative(catalog.files[pid], catalog.root)
        if pid in lines:
            entry["reproduction_summary"] = lines[pid]
        papers.append(entry)
    records = []
    for path, record in catalog.records:
        entry = _dump(record)
        entry["file"] = relative(path, catalog.root)
        v = verdict(record)
        entry["verdict"] = {"kind": v.kind, "gap": v.gap, "margin": v.margin, "reason": v.reason,
                            "differs": list(v.differs)}
        records.append(entry)
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "generator": f"mlatlas {__version__}",
        "vocabularies": {
            "labels": _dump(catalog.labels)["families"],
            "topics": _dump(catalog.topics)["topics"],
            "venues": _dump(catalog.venues)["venues"],
        },
        "papers": papers,
        "resources": {kind: [_dump(item) for item in items] for kind, items in sorted(catalog.resources.items())},
        "records": records,
        "benchmarks": benchmarks_json(catalog),
        "leaderboards": leaderboards_json(build_leaderboards(catalog)),
    }


def write_catalog_json(catalog: Catalog, path: Path) -> None:
    write_text_atomic(path, json.dumps(catalog_to_json(catalog), indent=2, ensure_ascii=False, allow_nan=False) + "\n")
