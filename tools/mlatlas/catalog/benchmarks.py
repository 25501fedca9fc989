"""The benchmark vocabulary (``catalog/vocab/benchmarks.yaml``) and the checks of reported results against it.

A benchmark names its settings (``5-way 1-shot``), its metric, unit, direction and the range a value can take, and a
protocol card: what every number on it shares (``fixed``) and what differs between papers (``varies``). Its protocol
``variants`` (the first is the default) split numbers that must not be ranked together (e.g. transductive
inference, another split). A paper's ``results`` must name a benchmark, setting and variant that exist; metric and
unit are taken from the benchmark (a result that states other ones is refused); a value outside the benchmark's
range (accuracy above 100, a negative error) is refused, and so is the same row reported twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from mlatlas.catalog.models import ShortText, Slug, Strict, Text


class Setting(Strict):
    id: ShortText = Field(description="As results write it, e.g. '5-way 1-shot'.")
    description: Text | None = None


class Variant(Strict):
    id: Slug
    name: ShortText
    description: Text


class RecordRule(Strict):
    """Which reproduction records (``reproductions/*/results/*.yaml``) belong on this benchmark's boards."""

    benchmark: ShortText = Field(description="A record's `benchmark`, exactly.")
    setting_prefix: ShortText | None = Field(default=None, description="Only records whose `setting` starts so.")
    setting: ShortText = Field(description="The board (one of this benchmark's settings).")
    variant: Slug | None = Field(default=None, description="The protocol variant; default: the benchmark's first.")


class ProtocolCard(Strict):
    fixed: dict[Slug, Text] = Field(min_length=1, description="What every number on the benchmark shares.")
    varies: list[Text] = Field(min_length=1, description="What differs between papers and changes the comparison.")


class Benchmark(Strict):
    id: Slug
    name: ShortText = Field(description="As results write it, e.g. 'mini-ImageNet'.")
    task: ShortText = Field(description="The task it measures, e.g. 'Few-shot image classification'.")
    dataset: Slug | None = Field(default=None, description="Id in catalog/resources/datasets.yaml.")
    description: Text
    metric: ShortText
    unit: ShortText | None = None
    direction: Literal["higher", "lower"] = Field(description="Whether a higher or a lower value is better.")
    minimum: float | None = Field(default=None, description="Smallest possible value (0 for accuracy and errors).")
    maximum: float | None = Field(default=None, description="Largest possible value (100 for accuracy in %).")
    settings: list[Setting] = Field(min_length=1)
    protocol: ProtocolCard
    variants: list[Variant] = Field(min_length=1, description="Protocol variants; the first is the default.")
    records: list[RecordRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Benchmark:
        settings = [s.id for s in self.settings]
        variants = [v.id for v in self.variants]
        for kind, names in (("setting", settings), ("variant", variants)):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"{kind} {repeated[0]!r} is listed twice")
        for rule in self.records:
            if rule.setting not in settings:
                raise ValueError(f"records: setting {rule.setting!r} is not one of this benchmark's settings")
            if rule.variant and rule.variant not in variants:
                raise ValueError(f"records: variant {rule.variant!r} is not one of this benchmark's variants")
        if self.minimum is not None and self.maximum is not None and self.minimum >= self.maximum:
            raise ValueError("minimum must be below maximum")
        return self

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "higher"

    @property
    def default_variant(self) -> str:
        return self.variants[0].id

    def variant(self, variant_id: str | None) -> Variant:
        wanted = variant_id or self.default_variant
        return next(v for v in self.variants if v.id == wanted)

    def board_for_record(self, record_benchmark: str, record_setting: str) -> tuple[str, str] | None:
        """(setting, variant) of the board a reproduction record belongs on, or None."""
        for rule in self.records:
            if rule.benchmark == record_benchmark and (
                rule.setting_prefix is None or record_setting.startswith(rule.setting_prefix)
            ):
                return rule.setting, rule.variant or self.default_variant
        return None


class BenchmarkVocabulary(Strict):
    """catalog/vocab/benchmarks.yaml"""

    benchmarks: list[Benchmark] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> BenchmarkVocabulary:
        for attr in ("id", "name"):
            seen: set[str] = set()
            for b in self.benchmarks:
                value = getattr(b, attr)
                if value in seen:
                    raise ValueError(f"benchmark {attr} {value!r} is listed twice")
                seen.add(value)
        return self

    def by_name(self) -> dict[str, Benchmark]:
        return {b.name: b for b in self.benchmarks}


def benchmarks_file(root: Path) -> Path:
    return root / "catalog" / "vocab" / "benchmarks.yaml"


def check_results(rep) -> None:
    """Every paper's ``results`` against the benchmark vocabulary (a check of :mod:`mlatlas.catalog.checks`).

    Fills each result's metric and unit from its benchmark, so that every reader sees them. Without a
    vocabulary file (a catalog that has no leaderboards) results are not checked against one."""
    from mlatlas.catalog.suggest import hint

    catalog = rep.catalog
    vocab = getattr(catalog, "benchmarks", None)
    if vocab is None:
        return
    known = vocab.by_name()
    for pid, paper in catalog.papers.items():
        path = catalog.files[pid]
        seen: dict[tuple, int] = {}
        for i, result in enumerate(paper.results):
            at = ("results", i)
            bench = known.get(result.benchmark)
            if bench is None:
                rep.add(path, (*at, "benchmark"), f"unknown benchmark {result.benchmark!r}{hint(result.benchmark, known)}"
                        " (catalog/vocab/benchmarks.yaml)")
                continue
            settings = [s.id for s in bench.settings]
            if result.setting not in settings:
                rep.add(path, (*at, "setting"), f"{bench.name} has no setting {result.setting!r}"
                        f"{hint(result.setting, settings)}; its settings: {', '.join(settings)}")
                continue
            variants = [v.id for v in bench.variants]
            if result.variant is not None and result.variant not in variants:
                rep.add(path, (*at, "variant"), f"{bench.name} has no protocol variant {result.variant!r}"
                        f"{hint(result.variant, variants)}; its variants: {', '.join(variants)}")
                continue
            if result.metric is not None and result.metric != bench.metric:
                rep.add(path, (*at, "metric"), f"{bench.name} is measured in {bench.metric!r}, not {result.metric!r}"
                        " (leave 'metric' out: it comes from the benchmark)")
                continue
            if result.unit is not None and result.unit != bench.unit:
                rep.add(path, (*at, "unit"), f"{bench.name} reports {bench.metric} in {bench.unit!r}, not "
                        f"{result.unit!r} (leave 'unit' out: it comes from the benchmark)")
                continue
            low, high = bench.minimum, bench.maximum
            if (low is not None and result.value < low) or (high is not None and result.value > high):
                rng = f"[{'' if low is None else f'{low:g}'}, {'' if high is None else f'{high:g}'}]"
                rep.add(path, (*at, "value"), f"{result.value:g} is impossible for {bench.metric}"
                        f"{' in ' + bench.unit if bench.unit else ''}: values lie in {rng}")
                continue
            key = (bench.name, result.setting, result.variant or bench.default_variant, result.row, result.backbone,
                   tuple(result.extras), result.source.paper, result.source.citation, result.source.table)
            if key in seen:
                first = rep.line(path, ("results", seen[key]))
                rep.add(path, at, f"the same result (benchmark, setting, variant, row, backbone, extras and source) is already "
                        "listed "
                        f"at line {first}")
                continue
            seen[key] = i
            result.metric, result.unit = bench.metric, bench.unit
