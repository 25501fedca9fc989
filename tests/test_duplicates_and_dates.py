"""Duplicates that hide (invisible characters, lookalike letters, other arXiv hosts, GitHub case and .git, escaped
DOI slashes) are caught, and dates cannot lie in the future or before the paper appeared."""

from __future__ import annotations

import datetime as dt

import pytest

from mlatlas.catalog.checks import link_key, normalise_title
from mlatlas.catalog.loader import load_catalog

ALPHA = "catalog/papers/alpha.yaml"
GAMMA = "catalog/papers/gamma.yaml"
SHARED = "two entries may not share an arXiv id, DOI, title or link"


def errors(tree) -> list[str]:
    _, found = load_catalog(tree.root)
    return [str(p) for p in found if p.severity == "error"]


@pytest.mark.parametrize("title", [
    "Alpha Learning of Few\u200b-Shot Tasks",  # zero-width space
    "Alpha Lear\u00adning of Few-Shot Tasks",  # soft hyphen
    "\ufeffAlpha Learning of Few-Shot Tasks",  # byte-order mark
    "Аlpha Lеarning of Few-Shot Tаsks",  # Cyrillic А, е, а
    "Alpha Learning of Few-Shοt Τasks",  # Greek ο, Τ
    "Ａｌｐｈａ Learning of Few-Shot Tasks",  # full-width letters
])
def test_a_disguised_title_is_a_duplicate(tree, title):
    tree.copy_paper("alpha", "gamma", ("title: Gamma and Alpha Learning of Few-Shot Tasks", f'title: "{title}"'))
    found = errors(tree)
    assert f"{GAMMA}:3: title: title is also used by 'alpha' ({ALPHA}:3); {SHARED}" in found, found


def test_invisible_characters_in_a_title_are_named(tree):
    tree.copy_paper("alpha", "gamma", ("title: Gamma and", "title: Gamma\u200b and"))
    found = errors(tree)
    assert f"{GAMMA}:3: title: title holds invisible characters (U+200B); type it again without them" in found


@pytest.mark.parametrize("url", [
    "https://export.arxiv.org/abs/1703.00001",
    "https://xxx.lanl.gov/abs/1703.00001v2",
    "https://arxiv.org/pdf/1703.00001v1",
    "https://lanl.arxiv.org/pdf/1703.00001.pdf",
])
def test_the_same_arxiv_abstract_under_another_host_is_a_duplicate(tree, url):
    tree.copy_paper("alpha", "gamma", ("ids:\n", f"links:\n  - label: Paper\n    url: {url}\nids:\n"))
    found = errors(tree)
    assert any(p.startswith(f"{GAMMA}:") and "links.0.url" in p and "'alpha'" in p for p in found), found


@pytest.mark.parametrize("url", [
    "https://github.com/Example/Alpha",
    "https://github.com/example/alpha.git",
    "https://www.github.com/EXAMPLE/alpha.git/",
])
def test_a_repository_differing_in_case_or_git_suffix_is_a_duplicate(tree, url):
    tree.copy_paper("alpha", "gamma", ("https://github.com/example/gamma", url))
    found = errors(tree)
    assert len(found) == 1 and found[0].startswith(f"{GAMMA}:19: code.repositories.0.url: link"), found


def test_a_doi_link_with_an_escaped_slash_is_the_doi(tree):
    tree.edit(ALPHA, 'arxiv: "1703.00001"', 'arxiv: "1703.00001"\n  doi: 10.1000/abc.1')
    tree.copy_paper("alpha", "gamma", ("  doi: 10.1000/abc.1\n", ""),
                    ("ids:\n", "links:\n  - label: Paper\n    url: https://doi.org/10.1000%2FABC.1\nids:\n"))
    found = errors(tree)
    assert any(p.startswith(f"{GAMMA}:") and "links.0.url" in p and "'alpha'" in p for p in found), found


def test_link_keys():
    assert link_key("https://export.arxiv.org/abs/1703.03400v2") == "arxiv:1703.03400"
    assert link_key("https://doi.org/10.1/X%2Fy") == link_key("https://doi.org/10.1/x/Y") == "doi:10.1/x/y"
    assert link_key("https://github.com/A/B.git") == link_key("https://github.com/a/b")
    assert link_key("https://github.com/a/b/tree/main") != link_key("https://github.com/a/c")
    assert link_key("https://example.org/A") != link_key("https://example.org/a")  # other hosts keep case
    assert normalise_title("β-VAE") != normalise_title("a-VAE")


def test_dates_in_the_future_are_refused(tree):
    future = dt.date.today() + dt.timedelta(days=40)
    tree.edit(ALPHA, "date: 2017-03-09", f"date: {future.isoformat()}")
    tree.edit(ALPHA, "year: 2017", f"year: {future.year}")
    tree.edit(ALPHA, "venue: ICML 2017", f"venue: ICML {future.year}")
    tree.edit(ALPHA, "added: 2026-11-22", f"added: {future.isoformat()}")
    found = errors(tree)
    assert f"{ALPHA}:6: date: date {future.isoformat()} is in the future" in found, found
    assert f"{ALPHA}:23: added: added {future.isoformat()} is in the future" in found, found


def test_added_before_the_paper_appeared_is_refused(tree):
    tree.edit(ALPHA, "added: 2026-11-22", "added: 2016-01-01")
    found = errors(tree)
    assert found == [f"{ALPHA}:23: added: added 2016-01-01 is before the paper's date 2017-03-09; an entry joins "
                     "the atlas after the paper appears"], found


def test_today_and_tomorrow_are_fine(tree):
    tomorrow = dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=1)
    tree.edit(ALPHA, "added: 2026-11-22", f"added: {tomorrow.isoformat()}")
    assert errors(tree) == []
