"""The site's page model: URLs agree with mkdocs, gaps and verdicts are honest, the front matter escapes."""

from __future__ import annotations

import html

import pytest
import yaml
from mkdocs.structure.files import File

from mlatlas.records import ResultRecord, compare
from mlatlas.site.pages import page_url
from mlatlas.site.render import front_matter, number


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
