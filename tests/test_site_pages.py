"""The site's page model: URLs agree with mkdocs, gaps and verdicts are honest, the front matter escapes."""

from __future__ import annotations

import html

import pytest
import yaml
from mkdocs.structure.files import File

from mlatlas.records import ResultRecord, compare
from mlatlas.outputs.site.pages import page_url
from mlatlas.outputs.site.render import front_matter, number


@pytest.mark.parametrize("uri", ["index.md", "papers/index.md", "papers/maml.md", "venues/neurips.md", "downloads/catalog.json"])
@pytest.mark.parametrize("directory_urls", [True, False])
def test_page_urls_are_the_ones_mkdocs_gives(uri, directory_urls):
    assert page_url(uri, directory_urls) == File(uri, "/docs", "/site", directory_urls).url


def _record(value, ci95, paper_value, pm, higher_is_better=True) -> ResultRecord:
    return ResultRecord.model_validate({
        "paper": "p", "reproduction": "r", "benchmark": "b", "setting": "s", "metric": "m",
        "higher_is_better": higher_is_better, "value": value, "ci95": ci95, "protocol": {"test": "5-way 1-shot"},
        "paper_value": {"value": paper_value, "pm": pm, "citation": "c", "table": "Table 1",
                        "protocol": {"test": "5-way 1-shot"}},
        "environment": {"command": "x", "commit": "abcdef1", "hardware": "h", "device": "cpu",
                        "versions": {}, "wall_time_s": 1, "date": "2026-11-22"},
    })


def test_gap_is_ours_minus_the_paper_and_the_verdict_follows_the_metric_direction():
    assert compare(_record(97.0, 0.5, 98.7, 0.4)) == (pytest.approx(-1.7), "worse")
    assert compare(_record(98.5, 0.5, 98.7, 0.4)) == (pytest.approx(-0.2), "agrees")  # intervals overlap
    assert compare(_record(0.30, 0.01, 0.50, 0.02, higher_is_better=False)) == (pytest.approx(-0.2), "better")
    assert compare(_record(0.60, 0.01, 0.50, 0.02, higher_is_better=False)) == (pytest.approx(0.1), "worse")


def test_numbers_keep_the_digits_that_show_a_gap():
    assert [number(v) for v in (98.7, 95.25, 0.6851, 0.00001234, 12345.6)] == ["98.7", "95.25", "0.6851", "0.00001234", "12,346"]


@pytest.mark.parametrize("title", ['<script>alert("x")</script>', "a: b # c", "line\u2028break \x85 é 😀", "---"])
def test_front_matter_reads_back_as_the_escaped_title(title):
    text = front_matter(title, tags=["Type: Metric"])
    assert text.startswith("---\n") and text.endswith("\n---\n\n")
    meta = yaml.safe_load(text.removeprefix("---\n").removesuffix("---\n\n"))
    assert html.unescape(meta["title"]) == title and "<" not in meta["title"]
    assert meta["tags"] == ["Type: Metric"]


def _view_record(value, benchmark, protocol, paper_protocol=None, paper_value=98.7) -> ResultRecord:
    data = {
        "paper": "beta", "reproduction": "toy_repro", "benchmark": benchmark, "setting": f"setting {value}",
        "metric": "accuracy", "higher_is_better": True, "value": value, "ci95": 0.5, "protocol": protocol,
        "environment": {"command": "mlatlas repro run toy_repro", "commit": "abcdef1", "hardware": "h",
                        "device": "cpu", "versions": {}, "wall_time_s": 1, "date": "2026-12-05"},
    }
    if paper_protocol is not None:
        data["paper_value"] = {"value": paper_value, "pm": 0.4, "table": "Table 1", "protocol": paper_protocol}
    return ResultRecord.model_validate(data)


def test_reproductions_page_groups_rows_by_verdict_and_shows_no_gap_across_protocols(tmp_path):
    from conftest import FIXTURE_CATALOG
    from mlatlas.catalog.loader import load_valid_catalog
    from mlatlas.outputs.site.pages import SiteContent

    catalog = load_valid_catalog(FIXTURE_CATALOG)
    same = {"data": "Omniglot, 1,200 characters", "test": "5-way 1-shot"}
    minimal = {"data": "Omniglot minimal setting", "test": "5-way 1-shot"}
    catalog.records = [(tmp_path / f"{i}.yaml", r) for i, r in enumerate([
        _view_record(60.25, "Omniglot 5-way 1-shot", minimal, same),        # different protocol
        _view_record(98.5, "Omniglot 5-way 1-shot", same, same),            # agrees
        _view_record(50.0, "Omniglot runs", same),                          # no paper number
        _view_record(90.0, "Omniglot 20-way 1-shot", same, same, 95.0),      # worse
    ])]
    site = SiteContent(catalog)
    groups = site.records_by_verdict()
    assert [(kind, count) for kind, count, _ in groups] == [
        ("agrees", 1), ("worse", 1), ("different protocol", 1), ("no paper number", 1)]
    assert [benchmark for benchmark, _ in groups[2][2]] == ["Omniglot 5-way 1-shot"]

    page = site._render("reproductions/index.md", "reproductions.md.j2").rendered
    html_text = "".join(text for text, _ in page.blocks)
    tables = {kind: html_text.split(f'data-verdict="{kind}"')[1].split("</table>")[0]
              for kind in ("agrees", "worse", "different protocol", "no paper number")}
    assert "−0.2" in tables["agrees"] and "−5" in tables["worse"]
    other = tables["different protocol"]
    assert "Gap" not in other and "−" not in other and "38.45" not in other  # no gap against another protocol
    assert "data: ours Omniglot minimal setting, paper Omniglot, 1,200 characters" in other
    assert "Paper reports" not in tables["no paper number"] and "Gap" not in tables["no paper number"]
    assert html_text.index('id="verdict-agrees"') < html_text.index('id="verdict-different-protocol"')

    paper = site._render("papers/beta.md", "paper.md.j2", meta="", v=site.by_id["beta"], bibtex="").rendered
    paper_html = "".join(text for text, _ in paper.blocks)
    assert site.by_id["beta"].summary in paper_html
    assert site.by_id["beta"].summary.startswith(
        "Omniglot: 2 compared with Table 1: 1 agrees, 1 worse; 1 under another protocol than Table 1")
