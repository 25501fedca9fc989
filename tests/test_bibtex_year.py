"""A published paper's BibTeX year is its venue's year (the proceedings or volume one cites), not the year of its
first arXiv version; a preprint keeps its own year. Checked on the real catalog."""

from __future__ import annotations

import re

import pytest

from conftest import PROJECT_ROOT
from mlatlas.catalog.loader import load_valid_catalog
from mlatlas.outputs.bibtex import bibtex_keys, catalog_bibtex, citation_year, paper_bibtex
from mlatlas.outputs.site.pages import SiteContent


@pytest.fixture(scope="module")
def catalog():
    return load_valid_catalog(PROJECT_ROOT)


def _field(entry: str, name: str) -> str:
    return re.search(rf"^  {name} = \{{(.*)\}},?$", entry, re.M).group(1)


@pytest.mark.parametrize("paper_id, first_public, cited, key", [
    ("memory-networks", 2014, 2015, "weston2015memory"),  # arXiv 2014, ICLR 2015
    ("anil", 2019, 2020, "raghu2020rapid"),  # arXiv 2019, ICLR 2020
    ("survey-hospedales-2020", 2020, 2022, "hospedales2022meta"),  # arXiv 2020, TPAMI 2022
    ("relation-network", 2017, 2018, "sung2018learning"),  # arXiv 2017, CVPR 2018
    ("maml", 2017, 2017, "finn2017model"),  # arXiv and ICML in the same year
])
def test_a_published_paper_is_cited_with_its_venue_year(catalog, paper_id, first_public, cited, key):
    paper = catalog.papers[paper_id]
    assert paper.year == first_public  # the catalog keeps the first public version's year ...
    entry = paper_bibtex(paper, catalog)
    assert _field(entry, "year") == str(cited)  # ... and BibTeX the venue's
    assert entry.split("\n")[0].endswith(f"{{{key},") and bibtex_keys(catalog)[paper_id] == key


def test_every_entry_of_the_catalog_bib_carries_its_venue_year(catalog):
    bib = catalog_bibtex(catalog)
    years = dict(re.findall(r"^@\w+\{(\S+),\n(?:  .*\n)*?  year = \{(\d{4})\}", bib, re.M))
    keys = bibtex_keys(catalog)
    assert len(years) == len(catalog.papers) == len(set(keys.values()))  # one entry per paper, keys unique
    preprints = {v.id for v in catalog.venues.venues if v.kind == "preprint"}
    moved = []
    for pid, paper in catalog.papers.items():
        year = int(years[keys[pid]])
        assert year == (paper.year if paper.venue_name in preprints else paper.venue_year), pid
        assert str(year) in keys[pid], (pid, keys[pid])  # the key carries the same year
        if year != paper.year:
            moved.append(pid)
    # the papers whose arXiv year and venue year differ (33 when this was fixed) all moved; none is a preprint
    assert {"memory-networks", "anil", "survey-hospedales-2020", "lstm-meta-learner", "snail"} <= set(moved)
    assert all(catalog.papers[pid].venue_name not in preprints for pid in moved)


def test_a_preprint_keeps_the_year_of_its_first_version(catalog):
    preprint = next(p for p in catalog.papers.values() if p.venue_name == "arXiv")
    later = preprint.model_copy(update={"venue": f"arXiv {preprint.year + 1}"})  # e.g. a later arXiv version
    assert citation_year(later, catalog) == preprint.year
    assert _field(paper_bibtex(later, catalog), "year") == str(preprint.year)
    published = preprint.model_copy(update={"venue": f"ICLR {preprint.year + 1}"})
    assert citation_year(published, catalog) == preprint.year + 1
    assert citation_year(published) == preprint.year + 1  # without the catalog too


def test_the_downloads_page_bib_uses_the_venue_year(catalog):
    bib = next(a.content for a in SiteContent(catalog).downloads() if a.content.startswith("% Generated"))
    entry = bib[bib.index("{weston2015memory,"):].split("\n}\n")[0]
    assert "  year = {2015}," in entry and "weston2014" not in bib
