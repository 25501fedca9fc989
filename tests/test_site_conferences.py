"""Conference pages (outputs/site/conferences.py): one page per conference edition, listing exactly the papers
that edition published, an index of them by year, and a link to that index from the home page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT
from mlatlas.catalog.loader import load_valid_catalog
from mlatlas.outputs.site.conferences import INDEX_URI, conference_uri
from mlatlas.outputs.site.pages import SiteContent, page_url


def _html(page) -> str:
    """A generated page with its HTML blocks put back (what the browser gets, less the theme)."""
    text = page.rendered.fill(page.rendered.markdown, indexed=True)
    return page.rendered.fill(text, indexed=False)


def _links(page, use_directory_urls: bool) -> set[str]:
    """The site URLs (as mkdocs gives them) that a page's relative links point to."""
    here = page_url(page.src_uri, use_directory_urls)
    base = "/" + here.rsplit("/", 1)[0] + "/" if "/" in here else "/"
    found = set()
    for target in re.findall(r'href="([^"#?]+)', _html(page)):
        if target.startswith(("http:", "https:", "mailto:")):
            continue
        parts: list[str] = []
        for part in (base + target).split("/"):
            if part == "..":
                parts.pop()
            elif part not in ("", "."):
                parts.append(part)
        found.add("/".join(parts) + ("/" if target.endswith("/") else ""))
    return found


@pytest.fixture
def catalog(tree):
    # alpha: ICML 2017 and beta: NeurIPS 2019 come with the fixture; add a second ICML 2017 paper, a paper whose
    # first version (2022) predates its conference (NeurIPS 2023), and a preprint, which gets no conference page.
    tree.copy_paper("alpha", "gamma")
    tree.copy_paper("alpha", "delta", ("date: 2017-03-09", "date: 2022-11-20"), ("year: 2017", "year: 2022"),
                    ("venue: ICML 2017", "venue: NeurIPS 2023"))
    tree.copy_paper("alpha", "epsilon", ("venue: ICML 2017", "venue: arXiv 2017"))
    return load_valid_catalog(tree.root)


@pytest.mark.parametrize("use_directory_urls", [True, False])
def test_each_edition_gets_a_page_with_exactly_its_papers(catalog, use_directory_urls):
    site = SiteContent(catalog, use_directory_urls=use_directory_urls)
    pages = {p.src_uri: p for p in site.pages()}
    titles = {pid: paper.title for pid, paper in catalog.papers.items()}
    expected = {("ICML", 2017): {"alpha", "gamma"}, ("NeurIPS", 2019): {"beta"}, ("NeurIPS", 2023): {"delta"}}

    made = {uri for uri in pages if uri.startswith("conferences/") and uri != INDEX_URI}
    assert made == {conference_uri(v, y) for v, y in expected}  # no page for the preprint, none for 2022
    for (venue, year), ids in expected.items():
        page = pages[conference_uri(venue, year)]
        html = _html(page)
        assert f"<h1>{venue} {year}</h1>" in html
        listed = {pid for pid, title in titles.items() if f">{title}<" in html}
        assert listed == ids, f"{venue} {year} lists {listed}, expected {ids}"
        linked = _links(page, use_directory_urls)
        assert {page_url(f"papers/{pid}.md", use_directory_urls) for pid in ids} <= linked


@pytest.mark.parametrize("use_directory_urls", [True, False])
def test_home_links_the_index_and_the_index_links_every_edition_newest_first(catalog, use_directory_urls):
    site = SiteContent(catalog, use_directory_urls=use_directory_urls)
    pages = {p.src_uri: p for p in site.pages()}
    index_url = page_url(INDEX_URI, use_directory_urls)
    assert index_url in _links(pages["index.md"], use_directory_urls)

    index = pages[INDEX_URI]
    editions = re.findall(r'data-edition="([^"]+)"', _html(index))
    assert editions == ["NeurIPS 2023", "NeurIPS 2019", "ICML 2017"]
    targets = _links(index, use_directory_urls)
    for label in editions:
        venue, year = label.split()
        assert page_url(conference_uri(venue, int(year)), use_directory_urls) in targets
    assert "(2)" in _html(index)  # ICML 2017 holds two papers


def test_the_real_catalog_has_a_page_for_each_2023_conference_of_issue_26():
    site = SiteContent(load_valid_catalog(PROJECT_ROOT))
    pages = {p.src_uri for p in site.pages()}
    for venue in ("ICLR", "ICML", "NeurIPS", "CVPR", "ICCV"):
        assert conference_uri(venue, 2023) in pages, venue
    assert Path(PROJECT_ROOT / "mkdocs.yml").read_text(encoding="utf-8").count(INDEX_URI) == 1  # in the nav
