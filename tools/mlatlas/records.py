"""Result records of reproductions: one YAML file per result under ``reproductions/<name>/results/``.

A record says what was measured, how (the exact command, commit, hardware, library versions) and how it
compares with the number the paper reports. The site shows records on the page of the paper they reproduce.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field, StringConstraints, field_validator

from mlatlas.catalog.models import PackageName, ShortText, Slug, Strict, Text
from mlatlas.catalog.problems import Problem
from mlatlas.catalog.readers import read_model


ProtocolKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]*$", max_length=64)]
ProtocolValue = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)] | int | float | bool
Protocol = dict[ProtocolKey, ProtocolValue]
"""How a number was measured, as named facts: e.g. ``{train_characters: 1200, train_way: 60, train_shot: 1,
test_way: 5, test_shot: 1, test_episodes: 1000, train_updates: 60000}``. A verdict compares each fact the paper states with
ours (see :func:`verdict`); facts the paper does not state are not compared."""


class PaperValue(Strict):
    """The number a paper reports, where, and under which protocol."""

    value: float
    pm: float | None = Field(default=None, ge=0)
    paper: Slug | None = Field(default=None, description="Catalog id of the reporting paper.")
    citation: ShortText | None = None
    table: ShortText
    protocol: Protocol = Field(
        default_factory=dict,
        description="The facts of the paper's protocol for this number (same keys as the record's `protocol`).",
    )


def machine_paths(command: str) -> list[str]:
    """The words of ``command`` that are absolute or home-relative paths (``/work/...``, ``~/...``, ``C:\\...``):
    a record's command must name none, so that it reruns on any machine."""
    found = []
    for word in command.split():
        value = (word.split("=", 1)[1] if word.startswith("-") and "=" in word else word).strip("'\"")
        if value.startswith(("/", "~")) or (len(value) > 2 and value[1] == ":" and value[2] in "\\/"):
            found.append(word)
    return found


class Environment(Strict):
    command: Text = Field(description="The exact command that produced this record, naming no path of the "
                                      "machine that ran it (no --work-dir /..., no absolute config path).")

    @field_validator("command")
    @classmethod
    def _no_machine_paths(cls, command: str) -> str:
        paths = machine_paths(command)
        if paths:
            raise ValueError(f"names a path of the machine that ran it ({', '.join(paths)}); record the command "
                             "with the default work and data folders and the config by name")
        return command

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
    protocol: Protocol = Field(default_factory=dict, description="The facts of our own protocol.")
    paper_value: PaperValue | None = None
    tolerance: float | None = Field(
        default=None, ge=0,
        description="Agreement margin declared in the config before the run (metric units); replaces the combined "
                    "95% interval in the verdict.",
    )
    budget: ShortText | None = Field(default=None, description="Training budget, e.g. '20,000 meta-iterations'.")
    notes: Text | None = Field(default=None, description="Deviations from the paper and why; gap explained.")
    curve: str | None = Field(default=None, description="Learning curve CSV, relative to the record file.")
    plot: str | None = Field(default=None, description="Plot PNG, relative to the record file.")
    environment: Environment


AGREES, BETTER, WORSE = "agrees", "better", "worse"
DIFFERENT_PROTOCOL, NO_PAPER_NUMBER = "different protocol", "no paper number"
VERDICTS = (AGREES, BETTER, WORSE, DIFFERENT_PROTOCOL, NO_PAPER_NUMBER)


@dataclass(frozen=True)
class Verdict:
    """How a record reads against its paper number: :data:`VERDICTS` ``kind``, the gap (ours minus the paper's,
    only when the protocols match), the margin it was judged with, and a few words on why."""

    kind: str
    gap: float | None = None
    margin: float | None = None
    reason: str = ""
    differs: tuple[str, ...] = ()  # the protocol facts that differ, for "different protocol"

    @property
    def compared(self) -> bool:
        return self.gap is not None


def differing_facts(record: ResultRecord) -> list[str]:
    """The keys of the paper's protocol facts that ours lacks or states otherwise."""
    theirs = record.paper_value.protocol if record.paper_value else {}
    return [key for key, value in theirs.items() if record.protocol.get(key) != value]


def protocol_differences(record: ResultRecord) -> list[str]:
    """Each fact of the paper's protocol that ours lacks or states otherwise, as ``key: ours X, paper Y``."""
    theirs = record.paper_value.protocol if record.paper_value else {}
    return [f"{key}: ours {record.protocol.get(key, 'not stated')!s}, paper {theirs[key]!s}"
            for key in differing_facts(record)]


def verdict(record: ResultRecord) -> Verdict:
    """The project's one rule. No paper value: ``no paper number``. A paper value whose protocol is not stated, or
    differs from ours in any fact it states: ``different protocol``, with no gap. Otherwise ``agrees`` when the gap is
    within the declared tolerance or else within the combined 95% interval (ours and the paper's half-widths added in
    quadrature, as for a difference of independent estimates), else ``better`` or ``worse``."""
    pv = record.paper_value
    if pv is None:
        return Verdict(NO_PAPER_NUMBER)
    if not pv.protocol:
        return Verdict(DIFFERENT_PROTOCOL, reason="the paper value states no protocol to match")
    differences = protocol_differences(record)
    if differences:
        return Verdict(DIFFERENT_PROTOCOL, reason="; ".join(differences), differs=tuple(differing_facts(record)))
    gap = record.value - pv.value
    if record.tolerance is not None:
        margin, how = record.tolerance, f"declared tolerance ±{record.tolerance:g}"
    else:
        margin = math.hypot(record.ci95 or 0.0, pv.pm or 0.0)
        how = f"combined 95% interval ±{margin:.3g}"
    if abs(gap) <= margin:
        return Verdict(AGREES, gap, margin, f"within the {how}")
    better = (gap > 0) == record.higher_is_better
    return Verdict(BETTER if better else WORSE, gap, margin, f"outside the {how}")


def dataset_name(benchmark: str) -> str:
    """The data set a benchmark is on, for summaries: its name before a comma, a parenthesis or a way count
    ('Omniglot 5-way 1-shot, held-out characters' -> 'Omniglot')."""
    return re.split(r"[,(]| \d+-way", benchmark)[0].strip() or benchmark


def summary(records: Iterable[ResultRecord]) -> str:
    """One line on how a paper's records read against its numbers, per data set, from :func:`verdict`: e.g.
    ``Sinusoid regression: 3 compared with Table 2: 2 agrees, 1 worse; 22 with no paper number``. Empty for none."""
    by_dataset: dict[str, list[tuple[ResultRecord, Verdict]]] = {}
    for record in records:
        by_dataset.setdefault(dataset_name(record.benchmark), []).append((record, verdict(record)))
    parts = []
    for dataset, rows in sorted(by_dataset.items()):
        counts = Counter(v.kind for _, v in rows)
        phrases = []
        compared = [r.paper_value.table for r, v in rows if v.compared and r.paper_value]
        if compared:
            kinds = ", ".join(f"{counts[k]} {k}" for k in (AGREES, BETTER, WORSE) if counts[k])
            phrases.append(f"{len(compared)} compared with {_tables(compared)}: {kinds}")
        other = [r.paper_value.table for r, v in rows if v.kind == DIFFERENT_PROTOCOL and r.paper_value]
        if other:
            phrases.append(f"{len(other)} under another protocol than {_tables(other)} (no gap drawn)")
        if counts[NO_PAPER_NUMBER]:
            phrases.append(f"{counts[NO_PAPER_NUMBER]} with no paper number")
        parts.append(f"{dataset}: {'; '.join(phrases)}")
    return ". ".join(parts)


def summaries(records: Iterable[ResultRecord]) -> dict[str, str]:
    """:func:`summary` of each reproduced paper's records, by paper id (sorted)."""
    by_paper: dict[str, list[ResultRecord]] = {}
    for record in records:
        by_paper.setdefault(record.paper, []).append(record)
    return {paper: summary(rows) for paper, rows in sorted(by_paper.items())}


def _tables(tables: list[str]) -> str:
    """The distinct tables named, shortened to what precedes a parenthesis ('Table 1 (Omniglot ...)' -> 'Table 1')."""
    names = list(dict.fromkeys(t.split(" (")[0].strip() for t in tables))
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def compare(record: ResultRecord) -> tuple[float | None, str]:
    """(gap, verdict kind): the gap is None unless the protocols match. Shorthand for :func:`verdict`."""
    v = verdict(record)
    return v.gap, v.kind


def load_records(root: Path) -> tuple[list[tuple[Path, ResultRecord]], list[Problem]]:
    """Every record under ``reproductions/*/results/``, with problems for the ones that do not validate."""
    records: list[tuple[Path, ResultRecord]] = []
    problems: list[Problem] = []
    for path in sorted((root / "reproductions").glob("*/results/*.yaml")):
        record, _ = read_model(path, ResultRecord, root, problems)  # size limit, no aliases, lines in problems
        if record is not None:
            records.append((path, record))
    return records, problems
