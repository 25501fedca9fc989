"""Conference pages: one page per conference and edition (e.g. ICLR 2023), and an index of them.

A paper belongs to the edition named by its ``venue`` field (``ICLR 2023``), not to the year of its first
public version (``year``), which is often the year before. Only venues whose kind is ``conference`` in
``catalog/vocab/venues.yaml`` get pages; workshops, journals and preprints are left to the venue pages.
``SiteContent.pages`` adds what :func:`conference_pages` returns, and the home page links the index.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlatlas.outputs.site.render import front_matter

if TYPE_CHECKING:  # only for annotations: pages.py imports this module
    from mlatlas.outputs.site.pages import GeneratedPage, PaperView, SiteContent

INDEX_URI = "conferences/index.md"


@dataclass(frozen=True)
class Edition:
    """One conference in one year, e.g. ``Edition('ICLR', 2023)``."""

    venue: str
    year: int

    @property
    def label(self) -> str:
        return f"{self.venue} {self.year}"

    @property
    def uri(self) -> str:
        return conference_uri(self.venue, self.year)


def conference_uri(venue: str, year: int) -> str:
    from mlatlas.outputs.site.pages import slug

    return f"conferences/{slug(venue)}-{year}.md"


def editions(site: SiteContent) -> dict[Edition, list[PaperView]]:
    """Papers of each conference edition, newest edition first (venues in vocabulary order within a year);
    within an edition, papers by title."""
    groups: dict[Edition, list[PaperView]] = defaultdict(list)
    for view in site.papers:
        venue = site.venues.get(view.paper.venue_name)
        if venue is not None and venue.kind == "conference":
            groups[Edition(venue.id, view.paper.venue_year)].append(view)
    order = {vid: i for i, vid in enumerate(site.venues)}
    return {
        edition: sorted(views, key=lambda v: v.paper.title.lower())
        for edition, views in sorted(groups.items(), key=lambda kv: (-kv[0].year, order[kv[0].venue]))
    }


def by_year(groups: dict[Edition, list[PaperView]]) -> dict[int, list[tuple[Edition, list[PaperView]]]]:
    """The editions grouped by year (newest first), for the index page."""
    years: dict[int, list[tuple[Edition, list[PaperView]]]] = defaultdict(list)
    for edition, views in groups.items():
        years[edition.year].append((edition, views))
    return dict(years)


def conference_pages(site: SiteContent) -> list[GeneratedPage]:
    """The index of conferences and one page per edition."""
    groups = editions(site)
    pages = [site._render(INDEX_URI, "conferences.md.j2", years=by_year(groups))]
    for edition, views in groups.items():
        meta = front_matter(edition.label, search={"exclude": True}, hide=["navigation", "toc"])
        pages.append(site._render(edition.uri, "conference.md.j2", meta=meta, edition=edition, views=views,
                                  venue=site.venues[edition.venue]))
    return pages
