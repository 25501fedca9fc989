"""The downloads the site offers, from the toolkit's exporters.

The JSON and BibTeX exporters belong to the toolkit (``mlatlas.export_json``, ``mlatlas.bibtex``);
until they land, the small interim versions below keep the site buildable.
"""

from __future__ import annotations

import json

from mlatlas.catalog import Catalog
from mlatlas.models import Paper

try:
    from mlatlas.export_json import catalog_to_json  # noqa: F401
except ImportError:  # interim, until the toolkit exporter lands

    def catalog_to_json(catalog: Catalog) -> str:
        papers = [p.model_dump(mode="json", by_alias=False, exclude_none=True) for p in catalog.papers.values()]
        return json.dumps({"papers": papers}, indent=2, ensure_ascii=False) + "\n"


try:
    from mlatlas.bibtex import catalog_bibtex, paper_bibtex  # noqa: F401
except ImportError:  # interim, until the toolkit exporter lands

    def paper_bibtex(paper: Paper) -> str:
        kind = "article" if paper.venue_name in ("arXiv",) else "inproceedings"
        fields = {
            "title": "{" + paper.title + "}",
            "author": " and ".join(paper.authors),
            "booktitle" if kind == "inproceedings" else "journal": paper.venue_name,
            "year": str(paper.year),
        }
        if paper.ids.arxiv:
            fields["eprint"] = paper.ids.arxiv
        body = ",\n".join(f"  {k} = {{{v}}}" for k, v in fields.items())
        return f"@{kind}{{{paper.id},\n{body}\n}}\n"

    def catalog_bibtex(catalog: Catalog) -> str:
        return "\n".join(paper_bibtex(p) for p in catalog.papers.values())
