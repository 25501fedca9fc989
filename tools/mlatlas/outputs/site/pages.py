"""Turn a loaded catalog (and the reproductions' result records) into the site's generated pages.

Everything here is plain data in, Markdown/HTML text out; ``mlatlas.outputs.site.hooks`` hands the result
to mkdocs as virtual files. Links between generated pages are computed here (mkdocs does not
rewrite links in raw HTML), from the URLs mkdocs itself gives each file.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from mkdocs.structure.files import File
from mkdocs.utils import get_relative_url

from mlatlas.outputs.bench_page import render_bench_page
from mlatlas.outputs.bibtex import bibtex_keys, catalog_bibtex, paper_bibtex
from mlatlas.catalog.entries import Catalog
from mlatlas.outputs.export_json import catalog_to_json
from mlatlas.catalog.models import Label, LabelFamily, Paper, Topic, Venue
from mlatlas.records import DIFFERENT_PROTOCOL, VERDICTS, ResultRecord, Verdict, summary, verdict
from mlatlas.outputs.site.conferences import conference_pages
from mlatlas.outputs.site.leaderboards import leaderboard_pages
from mlatlas.outputs.site.render import Rendered, front_matter, render

NEWEST_ON_HOME = 8
RESOURCE_KINDS = ["datasets", "books", "blogs", "videos", "workshops", "researchers"]
REPRODUCTION_STATES = {
    "reproduced": "Reproduced",
    "in-progress": "In progress",
    "needed": "Needs reproduction",
    "not-needed": "Has code",
}
CODE_STATES = {"official": "Official code", "community": "Community code", "none": "No code"}
BENCH_RESULTS = "benchmarks/results/meta_bench.json"  # written by `mlatlas bench`


@dataclass
class GeneratedPage:
    src_uri: str  # where the page pretends to live in the docs folder
    rendered: Rendered  # its Markdown, and the HTML blocks that go back in after Markdown


@dataclass
class GeneratedAsset:
    src_uri: str
    content: str | bytes | None = None
    source: Path | None = None  # a real file copied as-is (plots)


@dataclass
class RecordView:
    record: ResultRecord
    path: Path
    plot_uri: str | None  # where the plot is published, if the record has one
    curve_uri: str | None  # where the learning-curve CSV is published, if any
    verdict: Verdict  # how it reads against the paper's number (records.verdict, the one rule)

    @property
    def gap(self) -> float | None:
        """Ours minus the paper's number, only when the two protocols match."""
        return self.verdict.gap

    @property
    def kind(self) -> str:
        return self.verdict.kind

    @property
    def kind_class(self) -> str:
        return slug(self.verdict.kind)

    @property
    def differences(self) -> list[str]:
        """Each protocol fact that differs, ``key: ours X, paper Y`` (for 'different protocol')."""
        return self.verdict.reason.split("; ") if self.kind == DIFFERENT_PROTOCOL else []

    @property
    def anchor(self) -> str:
        return "record-" + slug(f"{self.record.reproduction}-{self.path.stem}")


@dataclass
class PaperView:
    paper: Paper
    labels: list[tuple[LabelFamily, Label]]
    topics: list[Topic]
    venue: Venue | None
    records: list[RecordView] = field(default_factory=list)

    @property
    def summary(self) -> str:
        """One line on how this paper's records read against its numbers (records.summary)."""
        return summary(rv.record for rv in self.records)

    @property
    def reproduction_state(self) -> str:
        if self.records:
            return "reproduced"
        if self.paper.reproductions:
            return "in-progress"
        return "needed" if self.paper.needs_code else "not-needed"

    @property
    def uri(self) -> str:
        return paper_uri(self.paper.id)

    @property
    def code_url(self) -> str | None:
        repos = self.paper.code.repositories
        official = [r for r in repos if r.official]
        return (official or repos)[0].url if repos else None

    def label_ids(self, family: str) -> list[str]:
        return [lab.id for fam, lab in self.labels if fam.id == family]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def paper_uri(paper_id: str) -> str:
    return f"papers/{paper_id}.md"


def venue_uri(venue_name: str) -> str:
    return f"venues/{slug(venue_name)}.md"


@lru_cache(maxsize=None)
def page_url(src_uri: str, use_directory_urls: bool) -> str:
    """The URL mkdocs gives a file at ``src_uri`` (asked of mkdocs itself, so the rules cannot drift)."""
    return File(src_uri, src_dir=None, dest_dir="", use_directory_urls=use_directory_urls).url


def tag_name(family: LabelFamily, label: Label) -> str:
    """The mkdocs-material tag for a label, e.g. 'Type: Metric'."""
    return f"{family.name}: {label.name}"


def allowed_tags(catalog: Catalog) -> set[str]:
    return {tag_name(fam, lab) for fam in catalog.labels.families for lab in fam.labels}


class SiteContent:
    """All generated pages and files of one build."""

    venue_uri = staticmethod(venue_uri)

    def __init__(self, catalog: Catalog, use_directory_urls: bool = True):
        self.catalog = catalog
        self.use_directory_urls = use_directory_urls
        self.families = {fam.id: fam for fam in catalog.labels.families}
        self.topics = {t.id: t for t in catalog.topics.topics}
        self.venues = {v.id: v for v in catalog.venues.venues}
        self.assets: list[GeneratedAsset] = []
        self.papers = [self._paper_view(p) for p in catalog.papers.values()]
        self.by_id = {v.paper.id: v for v in self.papers}
        for path, record in catalog.records:
            self._attach(path, record)
        for view in self.papers:  # one reproduction's results together, in a stable order
            view.records.sort(key=lambda rv: (rv.record.reproduction, rv.record.benchmark, rv.path.name))

    # ---------------------------------------------------------------- view models
    def _paper_view(self, paper: Paper) -> PaperView:
        labels = []
        for fam in self.catalog.labels.families:
            known = {lab.id: lab for lab in fam.labels}
            labels += [(fam, known[i]) for i in getattr(paper.labels, fam.id) if i in known]
        return PaperView(
            paper=paper,
            labels=labels,
            topics=[self.topics[t] for t in paper.topics if t in self.topics],
            venue=self.venues.get(paper.venue_name),
        )

    def _attach(self, path: Path, record: ResultRecord) -> None:
        view = self.by_id.get(record.paper)
        if view is None:  # a record for a paper not in the catalog: the checks report it
            return
        plot_uri, curve_uri = self._publish(path, record, record.plot), self._publish(path, record, record.curve)
        view.records.append(RecordView(record, path, plot_uri, curve_uri, verdict(record)))

    def _publish(self, path: Path, record: ResultRecord, relative: str | None) -> str | None:
        """Copy a file a record names (plot, curve) into the site; its URI there, or None if it is missing."""
        if not relative or not (path.parent / relative).is_file():
            return None
        source = (path.parent / relative).resolve()
        try:  # keep the layout of the results folder; files from elsewhere go flat
            name = source.relative_to(path.parent.resolve()).as_posix()
        except ValueError:
            name = source.name
        uri = f"reproductions/{record.reproduction}/{name}"
        self.assets.append(GeneratedAsset(uri, source=source))
        return uri

    # ---------------------------------------------------------------- links
    def linker(self, current_uri: str):
        """``href(target_uri, **query)`` relative to the page at ``current_uri``, for templates."""
        here = page_url(current_uri, self.use_directory_urls)

        def href(target: str, fragment: str = "", **query: str) -> str:
            url = get_relative_url(page_url(target, self.use_directory_urls), here) if target else ""
            if url in ("", ".") and (query or fragment):
                url = "./"
            if query:
                url += "?" + urlencode({k: v for k, v in query.items() if v})
            return url + (f"#{fragment}" if fragment else "")

        return href

    def _render(self, uri: str, template: str, **context: Any) -> GeneratedPage:
        context.setdefault("site", self)
        return GeneratedPage(uri, render(template, href=self.linker(uri), **context))

    def _group(self, uri: str, heading: str, intro: str, views: list[PaperView], **query: str) -> GeneratedPage:
        meta = front_matter(heading, search={"exclude": True}, hide=["navigation", "toc"])  # the paper pages carry the searchable text
        return self._render(uri, "group.md.j2", meta=meta, heading=heading, intro=intro, views=views, query=query)

    # ---------------------------------------------------------------- facets
    @property
    def corrections(self) -> list[tuple[PaperView, Any]]:
        return [(v, c) for v in self.papers for c in v.paper.corrections]

    @property
    def reproduced(self) -> list[PaperView]:
        return [v for v in self.papers if v.records or v.paper.reproductions]

    def records_by_benchmark(self) -> list[tuple[str, list[tuple[PaperView, RecordView]]]]:
        """Every record, grouped by benchmark (alphabetically) so that methods measured on the same benchmark sit
        in one table, ordered by setting and then by reproduction."""
        groups: dict[str, list[tuple[PaperView, RecordView]]] = defaultdict(list)
        for v in self.papers:
            for rv in v.records:
                groups[rv.record.benchmark].append((v, rv))
        return [
            (name, sorted(rows, key=lambda row: (row[1].record.setting, row[1].record.reproduction, row[1].anchor)))
            for name, rows in sorted(groups.items())
        ]

    def records_by_verdict(self) -> list[tuple[str, int, list[tuple[str, list[tuple[PaperView, RecordView]]]]]]:
        """Every record grouped by verdict (in :data:`records.VERDICTS` order, kinds without records left out),
        then by benchmark as :meth:`records_by_benchmark`: ``[(kind, count, [(benchmark, rows)])]``."""
        by_kind: dict[str, list[tuple[str, list[tuple[PaperView, RecordView]]]]] = defaultdict(list)
        for benchmark, rows in self.records_by_benchmark():
            for kind in VERDICTS:
                picked = [row for row in rows if row[1].kind == kind]
                if picked:
                    by_kind[kind].append((benchmark, picked))
        return [(kind, sum(len(rows) for _, rows in by_kind[kind]), by_kind[kind]) for kind in VERDICTS
                if by_kind[kind]]

    def newest(self, n: int = NEWEST_ON_HOME) -> list[PaperView]:
        return sorted(self.papers, key=lambda v: (v.paper.added, v.paper.date, v.paper.id), reverse=True)[:n]

    def by_venue(self) -> dict[str, list[PaperView]]:
        groups: dict[str, list[PaperView]] = defaultdict(list)
        for v in self.papers:
            groups[v.paper.venue_name].append(v)
        order = {vid: i for i, vid in enumerate(self.venues)}
        return dict(sorted(groups.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0].lower())))

    def by_year(self) -> dict[int, list[PaperView]]:
        groups: dict[int, list[PaperView]] = defaultdict(list)
        for v in self.papers:
            groups[v.paper.year].append(v)
        return dict(sorted(groups.items(), reverse=True))

    def by_topic(self) -> dict[str, list[PaperView]]:
        groups: dict[str, list[PaperView]] = {t: [] for t in self.topics}
        for v in self.papers:
            for t in v.topics:
                groups[t.id].append(v)
        return groups

    def venue_name(self, venue_id: str) -> str:
        venue = self.venues.get(venue_id)
        return venue.name if venue else venue_id

    # ---------------------------------------------------------------- pages
    def pages(self) -> list[GeneratedPage]:
        pages = [
            self._render("index.md", "home.md.j2"),
            self._render("papers/index.md", "explorer.md.j2", states=REPRODUCTION_STATES, code_states=CODE_STATES),
            self._render("topics/index.md", "topics.md.j2", groups=self.by_topic()),
            self._render("venues/index.md", "venues.md.j2", groups=self.by_venue(), venue_uri=venue_uri),
            self._render("years/index.md", "years.md.j2", groups=self.by_year()),
            self._render("reproductions/index.md", "reproductions.md.j2"),
            self._render("corrections.md", "corrections.md.j2"),
            self._render("resources.md", "resources.md.j2", kinds=RESOURCE_KINDS),
            self._render("downloads.md", "downloads.md.j2", files=self.download_names()),
            self.benchmarks(),
        ]
        keys = bibtex_keys(self.catalog)
        for view in self.papers:
            bibtex = paper_bibtex(view.paper, self.catalog, keys[view.paper.id])
            tags = [tag_name(fam, lab) for fam, lab in view.labels]
            meta = front_matter(view.paper.title, tags=tags, hide=["navigation"])
            pages.append(self._render(view.uri, "paper.md.j2", meta=meta, v=view, bibtex=bibtex))
        for topic_id, views in self.by_topic().items():
            topic = self.topics[topic_id]
            pages.append(self._group(f"topics/{topic_id}.md", topic.name, topic.intro, views, topic=topic_id))
        for venue_id, views in self.by_venue().items():
            pages.append(self._group(venue_uri(venue_id), venue_id, self.venue_name(venue_id), views, venue=venue_id))
        for year, views in self.by_year().items():
            pages.append(self._group(f"years/{year}.md", str(year), "", views, year=str(year)))
        pages += conference_pages(self)  # conferences/: one page per edition (outputs/site/conferences.py)
        pages += leaderboard_pages(self)  # mlatlas.outputs.site.leaderboards
        return pages

    def benchmarks(self) -> GeneratedPage:
        """The core-versus-peers benchmark page, from the recorded ``mlatlas bench`` run when there is one."""
        recorded = self.catalog.root / BENCH_RESULTS
        if recorded.is_file():
            body = render_bench_page(json.loads(recorded.read_text(encoding="utf-8")))
        else:
            body = "# Meta-learning core benchmark\n\nNo benchmark is recorded yet: run `mlatlas bench --json " + BENCH_RESULTS + "`.\n"
        return GeneratedPage("benchmarks.md", Rendered(front_matter("Benchmarks") + body))

    def download_names(self) -> dict[str, str]:
        return {"json": "downloads/catalog.json", "bibtex": "downloads/meta-learning-atlas.bib"}

    def downloads(self) -> list[GeneratedAsset]:
        names = self.download_names()
        return [
            GeneratedAsset(names["json"], content=json.dumps(catalog_to_json(self.catalog), indent=2, ensure_ascii=False) + "\n"),
            GeneratedAsset(names["bibtex"], content=catalog_bibtex(self.catalog)),
        ]
