"""``evaluation-tables.json``: the leaderboards in the layout Papers with Code published its results in
(``paperswithcode-data``'s evaluation tables, read by ``sota-extractor``'s ``TaskDB``), so that tools written
for that file read ours.

Layout: a list of tasks ``{task, description, categories, datasets, subtasks, synonyms, source_link}``; each
dataset ``{dataset, description, sota: {metrics, rows}, subdatasets, dataset_links, dataset_citations}`` is one
board and protocol variant (``"Omniglot 5-way 1-shot"``, ``"mini-ImageNet 5-way 1-shot (transductive)"``); each
row ``{model_name, paper_title, paper_url, paper_date, code_links, model_links, metrics, uses_additional_data}``.
Only reported numbers are rows (our re-runs are not reported results); the layout has no field for where a
number was read, so ``model_name`` carries the row as printed and, for second-hand numbers, the citing paper
and table. The full provenance is in ``catalog.json``'s ``leaderboards``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlatlas.catalog.entries import Catalog
from mlatlas.files import write_text_atomic
from mlatlas.outputs.leaderboards import RERUN, Board, Row, build_leaderboards

ADDITIONAL_DATA = ("pre-train", "extra data", "additional data")


def _paper_url(catalog: Catalog, paper_id: str) -> str:
    paper = catalog.papers[paper_id]
    for field, url in paper.all_links():
        if field in ("ids.arxiv", "ids.doi", "ids.proceedings", "ids.openreview", "ids.pdf"):
            return url
    return ""


def _model_name(catalog: Catalog, row: Row) -> str:
    details = [d for d in (row.backbone, *row.extras) if d]
    name = row.method + (f" ({'; '.join(details)})" if details else "")
    if row.second_hand:
        cited = catalog.papers[row.source_paper].method or catalog.papers[row.source_paper].title \
            if row.source_paper in catalog.papers else row.source_citation
        name += f" [as reported in {cited}, {row.table}]"
    return name


def _dataset(catalog: Catalog, board: Board, variant: str) -> dict[str, Any]:
    bench = board.benchmark
    name = f"{bench.name} {board.setting}" + ("" if variant == bench.default_variant else f" ({variant})")
    metric = bench.metric[:1].upper() + bench.metric[1:]
    rows = []
    for row in board.rows:
        if row.kind == RERUN or row.variant != variant:
            continue
        paper = catalog.papers[row.paper_id]
        code = [{"title": r.url.rstrip("/").split("/")[-1], "url": r.url} for r in paper.code.repositories]
        rows.append({
            "model_name": _model_name(catalog, row),
            "paper_title": paper.title,
            "paper_url": _paper_url(catalog, row.paper_id),
            "paper_date": paper.date.isoformat(),
            "code_links": code,
            "model_links": [],
            "metrics": {metric: f"{row.value:g}"},
            "uses_additional_data": any(key in e.lower() for e in row.extras for key in ADDITIONAL_DATA),
        })
    description = bench.description + " Protocol: " + "; ".join(f"{k}: {v}" for k, v in bench.protocol.fixed.items())
    return {"dataset": name, "description": description, "sota": {"metrics": [metric], "rows": rows},
            "subdatasets": [], "dataset_links": [], "dataset_citations": []}


def evaluation_tables(catalog: Catalog) -> list[dict[str, Any]]:
    tasks: dict[str, dict[str, Any]] = {}
    for board in build_leaderboards(catalog):
        task = tasks.setdefault(board.benchmark.task, {
            "task": board.benchmark.task, "description": "", "categories": [], "datasets": [],
            "subtasks": [], "synonyms": [], "source_link": None,
        })
        for variant in board.variants():
            dataset = _dataset(catalog, board, variant)
            if dataset["sota"]["rows"]:
                task["datasets"].append(dataset)
    return [task for task in tasks.values() if task["datasets"]]


def write_evaluation_tables(catalog: Catalog, path: Path) -> None:
    write_text_atomic(path, json.dumps(evaluation_tables(catalog), indent=2, ensure_ascii=False, allow_nan=False) + "\n")
