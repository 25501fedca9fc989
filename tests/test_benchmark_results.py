"""Results against the benchmark vocabulary: one test per rule, each on the project's real
catalog/vocab/benchmarks.yaml copied into a throw-away fixture catalog (whose paper 'beta' reports
Omniglot 5-way 1-shot, 98.7 % from alpha's Table 1, lines 20-28)."""

from __future__ import annotations

import shutil

import pytest

from mlatlas.catalog.loader import load_catalog

from conftest import PROJECT_ROOT

BETA = "catalog/papers/beta.yaml"
VOCAB = "catalog/vocab/benchmarks.yaml"


@pytest.fixture
def bench_tree(tree):
    shutil.copy(PROJECT_ROOT / VOCAB, tree.path(VOCAB))
    return tree


def errors(tree):
    _, found = load_catalog(tree.root)
    return [str(p) for p in found if p.severity == "error"]


def test_real_vocabulary_accepts_a_valid_result_and_fills_metric_and_unit(bench_tree):
    bench_tree.edit(BETA, "    metric: accuracy\n", "")
    bench_tree.edit(BETA, '    unit: "%"\n', "")
    catalog, found = load_catalog(bench_tree.root)
    assert [str(p) for p in found if p.severity == "error"] == []
    result = catalog.papers["beta"].results[0]
    assert (result.metric, result.unit) == ("accuracy", "%")
    assert catalog.benchmarks.by_name()["Omniglot"].higher_is_better


def test_unknown_benchmark(bench_tree):
    bench_tree.edit(BETA, "benchmark: Omniglot", "benchmark: Omniglott")
    assert errors(bench_tree) == [
        "catalog/papers/beta.yaml:20: results.0.benchmark: unknown benchmark 'Omniglott' — did you mean 'Omniglot'? "
        "(catalog/vocab/benchmarks.yaml)"
    ]


def test_unknown_setting(bench_tree):
    bench_tree.edit(BETA, "setting: 5-way 1-shot", "setting: 5-way 1 shot")
    assert errors(bench_tree) == [
        "catalog/papers/beta.yaml:21: results.0.setting: Omniglot has no setting '5-way 1 shot' — did you mean "
        "'5-way 1-shot'?; its settings: 5-way 1-shot, 5-way 5-shot, 20-way 1-shot, 20-way 5-shot"
    ]


def test_unknown_variant(bench_tree):
    bench_tree.edit(BETA, "setting: 5-way 1-shot\n", "setting: 5-way 1-shot\n    variant: transductive\n")
    assert errors(bench_tree) == [
        "catalog/papers/beta.yaml:22: results.0.variant: Omniglot has no protocol variant 'transductive'; "
        "its variants: standard, small-background"
    ]


def test_metric_comes_from_the_benchmark(bench_tree):
    bench_tree.edit(BETA, "metric: accuracy", "metric: error")
    assert errors(bench_tree) == [
        "catalog/papers/beta.yaml:22: results.0.metric: Omniglot is measured in 'accuracy', not 'error' "
        "(leave 'metric' out: it comes from the benchmark)"
    ]


def test_unit_comes_from_the_benchmark(bench_tree):
    bench_tree.edit(BETA, 'unit: "%"', "unit: fraction")
    assert errors(bench_tree) == [
        "catalog/papers/beta.yaml:25: results.0.unit: Omniglot reports accuracy in '%', not 'fraction' "
        "(leave 'unit' out: it comes from the benchmark)"
    ]


def test_accuracy_above_100_is_refused(bench_tree):
    bench_tree.edit(BETA, "value: 98.7", "value: 100.5")
    assert errors(bench_tree) == [
        "catalog/papers/beta.yaml:23: results.0.value: 100.5 is impossible for accuracy in %: values lie in [0, 100]"
    ]


def test_negative_error_is_refused(bench_tree):
    bench_tree.edit(BETA, "benchmark: Omniglot\n    setting: 5-way 1-shot\n    metric: accuracy\n    value: 98.7\n",
                    "benchmark: Sinusoid regression\n    setting: 10-shot, 1 step\n    value: -0.2\n")
    bench_tree.edit(BETA, '    unit: "%"\n', "")
    assert errors(bench_tree) == [
        "catalog/papers/beta.yaml:22: results.0.value: -0.2 is impossible for MSE: values lie in [0, ]"
    ]


@pytest.mark.parametrize("written", [".nan", ".inf"])
def test_nan_and_infinity_are_refused(bench_tree, written):
    bench_tree.edit(BETA, "value: 98.7", f"value: {written}")
    assert errors(bench_tree) == [f"catalog/papers/beta.yaml:23: results.0.value: expected a finite number, got {written.strip('.')}"]


def test_duplicate_result_is_refused_and_a_different_row_is_not(bench_tree):
    block = bench_tree.read(BETA).split("results:\n", 1)[1].split("added:", 1)[0]
    bench_tree.edit(BETA, "added:", block + "added:")
    assert errors(bench_tree) == [
        "catalog/papers/beta.yaml:29: results.1: the same result (benchmark, setting, variant, row, backbone, extras "
        "and source) is already listed at line 20"
    ]
    bench_tree.edit(BETA, "    pm: 0.4\n", "    pm: 0.4\n    extras: [fine-tuning at test]\n")
    assert errors(bench_tree) == []


def test_vocabulary_record_rule_must_name_a_setting(bench_tree):
    bench_tree.edit(VOCAB, "setting: 5-way 5-shot, variant: small-background}",
                    "setting: 5-way 50-shot, variant: small-background}")
    found = errors(bench_tree)
    assert len(found) == 1 and found[0].startswith("catalog/vocab/benchmarks.yaml:")
    assert "records: setting '5-way 50-shot' is not one of this benchmark's settings" in found[0]


def test_real_catalog_results_all_resolve():
    catalog, found = load_catalog(PROJECT_ROOT)
    assert [str(p) for p in found if p.severity == "error"] == []
    names = catalog.benchmarks.by_name()
    for paper in catalog.papers.values():
        for r in paper.results:
            bench = names[r.benchmark]
            assert r.setting in {s.id for s in bench.settings} and r.metric == bench.metric
