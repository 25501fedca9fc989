"""Leaderboards: boards built from papers' results and reproduction records, their pages, and the two exports
(catalog.json's `leaderboards`, the Papers-with-Code layout of evaluation-tables.json), on a throw-away copy of
the fixture catalog with the project's real benchmark vocabulary, and on the real catalog."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from conftest import PROJECT_ROOT
from mlatlas.catalog.loader import load_valid_catalog
from mlatlas.cli import main
from mlatlas.outputs.evaluation_tables import evaluation_tables
from mlatlas.outputs.export_json import catalog_to_json
from mlatlas.outputs.leaderboards import FIRST_HAND, RERUN, SECOND_HAND, build_leaderboards
from mlatlas.outputs.site.leaderboards import value_year_svg
from mlatlas.outputs.site.pages import SiteContent

VOCAB = "catalog/vocab/benchmarks.yaml"
BETA = "catalog/papers/beta.yaml"


def result(benchmark, setting, value, source, table, extra=""):
    return (f"  - benchmark: {benchmark}\n    setting: {setting}\n    value: {value}\n{extra}"
            f"    source:\n      paper: {source}\n      table: {table}\n")


@pytest.fixture
def boards_tree(tree):
    """beta reports Omniglot 5-way 1-shot 98.7 (from alpha's Table 1, second-hand); we add alpha's own 97.5 and
    99.0 (transductive variant does not exist on Omniglot, so a second Omniglot row), beta's own 99.2, and two
    sinusoid MSEs where lower is better. The fixture's record (toy_repro, Omniglot 5-way 1-shot, 97.1) becomes a
    re-run row through a record rule."""
    shutil.copy(PROJECT_ROOT / VOCAB, tree.path(VOCAB))
    tree.edit(VOCAB, '      - {benchmark: "Omniglot 5-way 1-shot (standard protocol',
              '      - {benchmark: "Omniglot", setting: 5-way 1-shot, variant: small-background}\n'
              '      - {benchmark: "Omniglot 5-way 1-shot (standard protocol')
    alpha_results = "results:\n" + result("Omniglot", "5-way 1-shot", 97.5, "alpha", "Table 1", "    row: Alpha\n") \
        + result("Sinusoid regression", "10-shot, 1 step", 0.5, "alpha", "Table 2") \
        + result("Sinusoid regression", "10-shot, 1 step", 0.25, "alpha", "Table 2", "    row: Alpha, 10 steps\n")
    tree.edit("catalog/papers/alpha.yaml", "added:", alpha_results + "added:")
    tree.edit(BETA, "added:", result("Omniglot", "5-way 1-shot", 99.2, "beta", "Table 3") + "added:")
    return tree


def board(boards, slug):
    return next(b for b in boards if b.slug == slug)


def test_boards_rank_within_direction_and_mark_provenance(boards_tree):
    catalog = load_valid_catalog(boards_tree.root)
    boards = build_leaderboards(catalog)
    assert [b.slug for b in boards] == ["omniglot-5-way-1-shot", "sinusoid-10-shot-1-step"]
    omni = board(boards, "omniglot-5-way-1-shot")
    papers = omni.paper_rows("standard")
    assert [(r.paper_id, r.value, r.rank, r.kind) for r in papers] == [
        ("beta", 99.2, 1, FIRST_HAND), ("beta", 98.7, 2, SECOND_HAND), ("alpha", 97.5, 3, FIRST_HAND)]
    assert papers[1].source_paper == "alpha" and papers[1].table == "Table 1"
    # the record is a row of its own, not ranked, with its verdict
    (rerun,) = omni.reruns()
    assert (rerun.kind, rerun.value, rerun.variant, rerun.rank, rerun.verdict) == (RERUN, 97.1, "small-background",
                                                                                   None, "different protocol")
    assert omni.rows[-1] is rerun and omni.methods() == ["alpha", "beta"]
    # lower is better: the smaller MSE ranks first
    sinus = board(boards, "sinusoid-10-shot-1-step")
    assert [(r.value, r.rank) for r in sinus.rows] == [(0.25, 1), (0.5, 2)]


def test_equal_values_share_a_rank(boards_tree):
    boards_tree.edit("catalog/papers/alpha.yaml", "value: 97.5", "value: 99.2")
    omni = board(build_leaderboards(load_valid_catalog(boards_tree.root)), "omniglot-5-way-1-shot")
    assert [r.rank for r in omni.paper_rows()] == [1, 1, 3]


def test_board_page_lists_rows_sources_reruns_and_plot(boards_tree):
    site = SiteContent(load_valid_catalog(boards_tree.root))
    pages = {p.src_uri: p for p in site.pages()}
    assert "leaderboards/index.md" in pages and "leaderboards/sinusoid-10-shot-1-step.md" in pages
    page = pages["leaderboards/omniglot-5-way-1-shot.md"].rendered
    html = page.fill(page.fill(page.markdown, True), False)
    rows = re.findall(r'<tr data-variant="([^"]+)" data-backbone="[^"]*" data-code="([^"]+)" data-kind="([^"]+)"', html)
    assert rows == [("standard", "none", "first-hand"), ("standard", "none", "second-hand"),  # beta has no code
                    ("standard", "official", "first-hand"), ("small-background", "none", "re-run here")]
    assert 'href="../../papers/alpha/"' in html and "Table 1" in html and "re-run here" in html
    assert "budget: not stated" in html and "different protocol" in html
    assert html.count("<circle") == 3 and html.count("<path d=\"M") == 1  # three papers' points, one re-run
    assert "Vinyals et al. (2016)" in html  # the protocol card


def test_plot_places_better_values_higher_on_the_page(boards_tree):
    omni = board(build_leaderboards(load_valid_catalog(boards_tree.root)), "omniglot-5-way-1-shot")
    svg = value_year_svg(omni)
    ys = {float(v): float(y) for y, v in re.findall(r'cy="([\d.]+)"[^>]*><title>[^<]* — ([\d.]+)', svg)}
    assert ys[99.2] < ys[98.7] < ys[97.5]  # SVG y grows downwards


def test_catalog_json_holds_benchmarks_and_leaderboards(boards_tree):
    data = json.loads(json.dumps(catalog_to_json(load_valid_catalog(boards_tree.root)), allow_nan=False))
    assert data["version"] == 2
    assert [b["id"] for b in data["benchmarks"]][:2] == ["omniglot", "mini-imagenet"]
    omni = next(b for b in data["leaderboards"] if b["id"] == "omniglot-5-way-1-shot")
    assert omni["higher_is_better"] and omni["metric"] == "accuracy" and omni["unit"] == "%"
    assert [(r["kind"], r["value"]) for r in omni["rows"]] == [
        ("first-hand", 99.2), ("second-hand", 98.7), ("first-hand", 97.5), ("re-run here", 97.1)]
    assert omni["rows"][1]["source_paper"] == "alpha" and omni["rows"][3]["record_file"].endswith("omniglot.yaml")
    beta = next(p for p in data["papers"] if p["id"] == "beta")
    assert beta["results"][0]["metric"] == "accuracy"  # filled from the benchmark


SOTA_ROW_KEYS = {"model_name", "paper_title", "paper_url", "paper_date", "code_links", "model_links", "metrics",
                 "uses_additional_data"}


def test_evaluation_tables_follow_the_papers_with_code_layout(boards_tree, tmp_path):
    out = tmp_path / "out"
    assert main(["--root", str(boards_tree.root), "export", "--out", str(out)]) == 0
    tasks = json.loads((out / "evaluation-tables.json").read_text(encoding="utf-8"))
    assert [t["task"] for t in tasks] == ["Few-shot image classification", "Few-shot regression"]
    for task in tasks:
        assert set(task) == {"task", "description", "categories", "datasets", "subtasks", "synonyms", "source_link"}
        for ds in task["datasets"]:
            assert set(ds) == {"dataset", "description", "sota", "subdatasets", "dataset_links", "dataset_citations"}
            assert all(set(row) == SOTA_ROW_KEYS for row in ds["sota"]["rows"])
    (omni,) = tasks[0]["datasets"]  # the re-run (small-background) is not a reported number: no dataset of its own
    assert omni["dataset"] == "Omniglot 5-way 1-shot" and omni["sota"]["metrics"] == ["Accuracy"]
    assert [(r["model_name"], r["metrics"]) for r in omni["sota"]["rows"]] == [
        ("Beta: A Survey of Learning to Learn", {"Accuracy": "99.2"}),  # beta has no method name: its title
        ("Beta: A Survey of Learning to Learn [as reported in Alpha, Table 1]", {"Accuracy": "98.7"}),
        ("Alpha", {"Accuracy": "97.5"})]
    assert omni["sota"]["rows"][2]["paper_url"] == "https://arxiv.org/abs/1703.00001"
    assert omni["sota"]["rows"][2]["paper_date"] == "2017-03-09"


def test_real_catalog_counts():
    """Issue #25 asks for at least 25 papers with results, 150 rows, and Omniglot and mini-ImageNet 5-way 1- and
    5-shot boards with at least 15 methods each. Met: rows and both mini-ImageNet boards. Not yet met (numbers that
    could not be read in a paper's own text were left out): papers with results (18) and the Omniglot boards (7 and
    6 methods). The floors below are what the catalog holds today, so that a lost row fails here."""
    catalog = load_valid_catalog(PROJECT_ROOT)
    boards = {b.slug: b for b in build_leaderboards(catalog)}
    rows = sum(len(p.results) for p in catalog.papers.values())
    with_results = sum(1 for p in catalog.papers.values() if p.results)
    assert rows >= 150 and with_results >= 18
    assert len(boards["mini-imagenet-5-way-1-shot"].methods()) >= 15
    assert len(boards["mini-imagenet-5-way-5-shot"].methods()) >= 15
    assert len(boards["omniglot-5-way-1-shot"].methods()) >= 7
    assert len(boards["omniglot-5-way-5-shot"].methods()) >= 6
    assert boards["omniglot-5-way-1-shot"].reruns()  # our reproductions sit on the board
    tables = evaluation_tables(catalog)
    assert sum(len(d["sota"]["rows"]) for t in tables for d in t["datasets"]) == sum(
        len(b.paper_rows()) for b in boards.values())
