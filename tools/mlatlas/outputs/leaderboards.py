"""Leaderboards: every reported result of the catalog, and every reproduction record, per benchmark and setting.

Plain data in, plain data out; the site (:mod:`mlatlas.outputs.site.leaderboards`), ``catalog.json`` and the
Papers-with-Code style export (:mod:`mlatlas.outputs.evaluation_tables`) all read :func:`build_leaderboards`.

A board holds the rows of one benchmark and setting, across its protocol variants: numbers are ranked only
against numbers of the same variant (:meth:`Board.ranked`). A paper row is *first-hand* when the entry's own
paper reports it and *second-hand* when a later paper does (its ``source`` names that paper). Rows of our own
reproductions ("re-run here") come from the records under ``reproductions/*/results/`` that the benchmark's
``records`` rules place on the board; they carry their budget and verdict and are never ranked with the papers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mlatlas.catalog.benchmarks import Benchmark
from mlatlas.catalog.entries import Catalog
from mlatlas.catalog.problems import relative
from mlatlas.records import verdict

FIRST_HAND, SECOND_HAND, RERUN = "first-hand", "second-hand", "re-run here"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@dataclass
class Row:
    kind: str  # FIRST_HAND, SECOND_HAND or RERUN
    paper_id: str
    method: str
    year: int
    date: str  # the paper's date as far as it is known
    value: float
    pm: float | None
    variant: str
    code: str  # the paper's code status: official, community, none
    row: str | None = None  # the row label as printed in the source table
    backbone: str | None = None
    extras: list[str] = field(default_factory=list)
    source_paper: str | None = None  # catalog id of the reporting paper
    source_citation: str | None = None
    source_url: str | None = None
    table: str | None = None
    note: str | None = None
    # re-runs only
    reproduction: str | None = None
    budget: str | None = None
    verdict: str | None = None
    record_file: str | None = None
    rank: int | None = None

    @property
    def second_hand(self) -> bool:
        return self.kind == SECOND_HAND

    @property
    def source_label(self) -> str:
        return self.source_citation or self.source_paper or ""


@dataclass
class Board:
    benchmark: Benchmark
    setting: str
    rows: list[Row]

    @property
    def slug(self) -> str:
        return f"{self.benchmark.id}-{slug(self.setting)}"

    @property
    def title(self) -> str:
        return f"{self.benchmark.name}, {self.setting}"

    def paper_rows(self, variant: str | None = None) -> list[Row]:
        return [r for r in self.rows if r.kind != RERUN and (variant is None or r.variant == variant)]

    def reruns(self) -> list[Row]:
        return [r for r in self.rows if r.kind == RERUN]

    def methods(self) -> list[str]:
        """Distinct papers with a reported number on this board."""
        return sorted({r.paper_id for r in self.paper_rows()})

    def variants(self) -> list[str]:
        """The benchmark's variants that have rows here, in the vocabulary's order."""
        present = {r.variant for r in self.rows}
        return [v.id for v in self.benchmark.variants if v.id in present]

    def ranked(self) -> list[Row]:
        """Paper rows, best first within each variant (variants in vocabulary order), each with its rank;
        equal values share a rank. Re-runs follow, unranked."""
        out: list[Row] = []
        better_first = -1 if self.benchmark.higher_is_better else 1
        for variant in self.variants():
            rows = sorted(self.paper_rows(variant), key=lambda r: (better_first * r.value, r.year, r.method, r.row or ""))
            previous, rank = None, 0
            for i, r in enumerate(rows, start=1):
                if r.value != previous:
                    rank, previous = i, r.value
                r.rank = rank
            out += rows
        return out + sorted(self.reruns(), key=lambda r: (r.variant, r.method, r.record_file or ""))


def _paper_rows(catalog: Catalog, names: dict[str, Benchmark]) -> dict[tuple[str, str], list[Row]]:
    boards: dict[tuple[str, str], list[Row]] = {}
    for pid, paper in catalog.papers.items():
        for r in paper.results:
            bench = names.get(r.benchmark)
            if bench is None:
                continue
            boards.setdefault((bench.id, r.setting), []).append(Row(
                kind=FIRST_HAND if r.source.paper == pid else SECOND_HAND,
                paper_id=pid, method=paper.method or paper.title, year=paper.year, date=paper.date_display,
                value=r.value, pm=r.pm, variant=r.variant or bench.default_variant, code=paper.code.status,
                row=r.row, backbone=r.backbone, extras=list(r.extras), source_paper=r.source.paper,
                source_citation=r.source.citation, source_url=r.source.url, table=r.source.table, note=r.source.note,
            ))
    return boards


def _record_rows(catalog: Catalog, benchmarks: list[Benchmark], boards: dict[tuple[str, str], list[Row]]) -> None:
    for path, record in catalog.records:
        paper = catalog.papers.get(record.paper)
        if paper is None:
            continue
        for bench in benchmarks:
            where = bench.board_for_record(record.benchmark, record.setting)
            if where is None or record.metric != bench.metric or (record.unit or None) != bench.unit:
                continue
            setting, variant = where
            boards.setdefault((bench.id, setting), []).append(Row(
                kind=RERUN, paper_id=paper.id, method=paper.method or paper.title, year=record.environment.date.year,
                date=record.environment.date.isoformat(), value=record.value, pm=record.ci95, variant=variant,
                code=paper.code.status, reproduction=record.reproduction, budget=record.budget,
                verdict=verdict(record).kind, record_file=relative(path, catalog.root), note=record.setting,
            ))
            break


def build_leaderboards(catalog: Catalog) -> list[Board]:
    """One board per benchmark and setting that has at least one row, in vocabulary order."""
    vocab = getattr(catalog, "benchmarks", None)
    if vocab is None:
        return []
    names = vocab.by_name()
    boards = _paper_rows(catalog, names)
    _record_rows(catalog, vocab.benchmarks, boards)
    out = []
    for bench in vocab.benchmarks:
        for setting in bench.settings:
            rows = boards.get((bench.id, setting.id))
            if rows:
                board = Board(bench, setting.id, rows)
                board.rows = board.ranked()
                out.append(board)
    return out


def row_json(row: Row) -> dict[str, Any]:
    data = {k: v for k, v in vars(row).items() if v not in (None, [], "")}
    return data


def leaderboards_json(boards: list[Board]) -> list[dict[str, Any]]:
    """The boards as JSON-ready data (for ``catalog.json``), rows in rank order."""
    out = []
    for b in boards:
        bench = b.benchmark
        out.append({
            "id": b.slug,
            "benchmark": bench.id,
            "benchmark_name": bench.name,
            "setting": b.setting,
            "task": bench.task,
            "metric": bench.metric,
            **({"unit": bench.unit} if bench.unit else {}),
            "higher_is_better": bench.higher_is_better,
            "variants": b.variants(),
            "rows": [row_json(r) for r in b.rows],
        })
    return out


def benchmarks_json(catalog: Catalog) -> list[dict[str, Any]]:
    vocab = getattr(catalog, "benchmarks", None)
    return [] if vocab is None else [b.model_dump(mode="json", exclude_none=True) for b in vocab.benchmarks]
