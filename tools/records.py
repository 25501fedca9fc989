"""Result records of reproductions: one YAML file per result under ``reproductions/<name>/results/``.

A record says what was measured, how (the exact command, commit, hardware, library versions) and how it
compares with the number the paper reports. The site shows records on the page of the paper they reproduce.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

from pydantic import Field, StringConstraints

from mlatlas.models import PackageName, ShortText, Slug, Strict, Text
from mlatlas.problems import Problem
from mlatlas.readers import read_model


class PaperValue(Strict):
    """The number a paper reports for the same benchmark and setting, and where."""

    value: float
    pm: float | None = Field(default=None, ge=0)
    paper: Slug | None = Field(default=None, description="Catalog id of the reporting paper.")
    citation: ShortText | None = None
    table: ShortText


class Environment(Strict):
    command: Text = Field(description="The exact command that produced this record.")
    commit: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{7,40}(-dirty)?$")]
    hardware: ShortText = Field(description="e.g. '2-core x86_64 CPU (AMD EPYC ...), no GPU'.")
    device: ShortText = Field(description="torch device the run used, e.g. 'cpu'.")
    versions: dict[str, str] = Field(description="Library versions: python, torch, numpy, ...")
    wall_time_s: float = Field(ge=0)
    date: dt.date


class ResultRecord(Strict):
    paper: Slug = Field(description="Catalog id of the paper this reproduces.")
    reproduction: PackageName = Field(description="The reproductions/ subpackage that produced it.")
    benchmark: ShortText
    setting: ShortText
    metric: ShortText
    unit: ShortText | None = None
    higher_is_better: bool
    value: float
    ci95: float | None = Field(default=None, ge=0, description="Half-width of the 95% confidence interval.")
    n_eval_tasks: int | None = Field(default=None, ge=1)
    n_seeds: int = Field(default=1, ge=1)
    paper_value: PaperValue | None = None
    budget: ShortText | None = Field(default=None, description="Training budget, e.g. '20,000 meta-iterations'.")
    notes: Text | None = Field(default=None, description="Deviations from the paper and why; gap explained.")
    curve: str | None = Field(default=None, description="Learning curve CSV, relative to the record file.")
    plot: str | None = Field(default=None, description="Plot PNG, relative to the record file.")
    environment: Environment


def compare(record: ResultRecord) -> tuple[float | None, str]:
    """Gap to the paper (ours minus theirs) and whether the two agree within their stated intervals:
    "agrees", "better", "worse", or "" when the record has no paper value."""
    if record.paper_value is None:
        return None, ""
    gap = record.value - record.paper_value.value
    margin = (record.ci95 or 0.0) + (record.paper_value.pm or 0.0)
    if abs(gap) <= margin:
        return gap, "agrees"
    return gap, "better" if (gap > 0) == record.higher_is_better else "worse"


def load_records(root: Path) -> tuple[list[tuple[Path, ResultRecord]], list[Problem]]:
    """Every record under ``reproductions/*/results/``, with problems for the ones that do not validate."""
    records: list[tuple[Path, ResultRecord]] = []
    problems: list[Problem] = []
    for path in sorted((root / "reproductions").glob("*/results/*.yaml")):
        record, _ = read_model(path, ResultRecord, root, problems)  # size limit, no aliases, lines in problems
        if record is not None:
            records.append((path, record))
    return records, problems
