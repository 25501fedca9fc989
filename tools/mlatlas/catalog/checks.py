"""Checks that need the whole catalog: names that must exist in the vocabularies or elsewhere in the
catalog, and facts two entries must never share. Each file has already passed its own model.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from mlatlas.catalog.benchmarks import check_results
from mlatlas.catalog.entries import Catalog
from mlatlas.catalog.models import VENUE_PATTERN, Paper
from mlatlas.paths import catalog_dir, reproductions_dir
from mlatlas.catalog.problems import Problem, relative
from mlatlas.catalog.suggest import closest, hint
from mlatlas.catalog.yamlio import YamlError, read_yaml

_VENUE = re.compile(VENUE_PATTERN)
SURVEY_TOPIC = "survey"  # the topic of reviews and books (catalog/vocab/topics.yaml)
_ARXIV_HOSTS = {h: "arxiv.org" for h in ("export.arxiv.org", "lanl.arxiv.org", "browse.arxiv.org",
                                            "xxx.lanl.gov", "xxx.itp.ac.cn", "de.arxiv.org", "es.arxiv.org")}
_ARXIV_URL = re.compile(r"^arxiv\.org/(?:abs|pdf|html)/(?P<id>[^?#]+?)(?:v\d+)?(?:\.pdf)?/?$")


class _Reporter:
    """Builds problems for one catalog, finding the line of each field."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.problems: list[Problem] = []

    def line(self, path: Path, loc: tuple) -> int:
        doc = self.catalog.docs.get(path)
        if doc is None:  # result records are not kept; read the file again (only when reporting)
            try:
                doc = read_yaml(path, root=self.catalog.root)
            except YamlError:
                return 0
        return doc.line_of(loc)

    def where(self, path: Path) -> str:
        return relative(path, self.catalog.root)

    def add(self, path: Path, loc: tuple, message: str, severity: str = "error") -> None:
        field = ".".join(str(p) for p in loc)
        self.problems.append(Problem(self.where(path), self.line(path, loc), field, message, severity))


def _entries(catalog: Catalog) -> Iterator[tuple[str, Path, Paper]]:
    """(id, file, paper) of every valid paper, then of every partial one (a file that failed its model, with the
    fields that failed set to None or their default: see :mod:`mlatlas.catalog.partial`)."""
    for pid, paper in catalog.papers.items():
        yield pid, catalog.files[pid], paper
    for path, paper in catalog.partial.items():
        yield paper.id, path, paper


_NOT_WORD = re.compile(r"[^\w\s]")


# Letters of other scripts that look like Latin ones (the common Cyrillic and Greek confusables): a title
# retyped with them is still the same title.
_HOMOGLYPHS = str.maketrans(
    "АВЕЅІЈКМНОРСТХУаеіјорсхуѕһԁԛԝмнтвкΑΒΕΖΗΙΚΜΝΟΡΤΥΧαικνορτυχ",
    "ABESIJKMHOPCTXYaeijopcxyshdqwmhtbkABEZHIKMNOPTYXaiknoptux",
)


def normalise_title(title: str) -> str:
    """Case, accents, punctuation, spacing, invisible characters and lookalike letters of other scripts removed:
    'Meta-Learning: A Survey' -> 'meta learning a survey'."""
    if title.isascii():  # most titles: no accents to strip, and lower() is casefold() for ASCII
        text = title.lower()
    else:
        # format characters (zero-width space and joiners, soft hyphen, BOM, bidi marks) are invisible: drop them
        text = "".join(ch for ch in title if unicodedata.category(ch) != "Cf")
        text = unicodedata.normalize("NFKD", text.translate(_HOMOGLYPHS)).casefold()
        text = "".join(ch for ch in text if not unicodedata.combining(ch)).translate(_HOMOGLYPHS)
    return " ".join(_NOT_WORD.sub(" ", text).split())


def link_key(url: str) -> str:
    """What makes two links the same document: host case, 'www.', trailing slashes, fragments and arXiv
    versions do not count, and every arXiv URL form reduces to its id."""
    parts = urlsplit(url)
    host = parts.netloc.lower().removeprefix("www.").split(":")[0]
    path = parts.path.rstrip("/")
    arxiv = _ARXIV_URL.match(f"{_ARXIV_HOSTS.get(host, host)}{unquote(path)}")
    if arxiv:
        return f"arxiv:{arxiv.group('id').lower()}"
    if host in {"doi.org", "dx.doi.org"}:  # the slash may come escaped (%2F), and DOIs ignore case
        return f"doi:{unquote(path).lstrip('/').lower()}"
    if host == "github.com":  # owner and repository ignore case, and 'x.git' is the same repository as 'x'
        segments = unquote(path).lower().split("/")
        if len(segments) >= 3:
            segments[2] = segments[2].removesuffix(".git")
        return urlunsplit(("https", host, "/".join(segments), "", ""))
    return urlunsplit(("https", host, path, parts.query, ""))


def _paper_keys(paper: Paper) -> Iterator[tuple[tuple, str, str]]:
    """(location, key, what) for every identifier and link of a paper that no other paper may share."""
    if paper.ids.arxiv:
        yield ("ids", "arxiv"), f"arxiv:{paper.ids.arxiv.lower()}", f"arXiv id {paper.ids.arxiv}"
    if paper.ids.doi:
        yield ("ids", "doi"), f"doi:{paper.ids.doi.lower()}", f"DOI {paper.ids.doi}"
    if paper.title is not None:
        yield ("title",), f"title:{normalise_title(paper.title)}", "title"
    for field, url in paper.all_links():
        if field in ("ids.arxiv", "ids.doi"):
            continue
        yield tuple(int(p) if p.isdigit() else p for p in field.split(".")), link_key(url), f"link {url}"


def _check_shared(rep: _Reporter) -> None:
    owners: dict[str, tuple[str, Path, tuple]] = {}
    for pid, path, paper in _entries(rep.catalog):
        seen_here: set[str] = set()
        for loc, key, what in _paper_keys(paper):
            if key in seen_here:
                continue
            seen_here.add(key)
            if key in owners:
                other, other_path, other_loc = owners[key]
                rep.add(
                    path,
                    loc,
                    f"{what} is also used by '{other}' ({rep.where(other_path)}:{rep.line(other_path, other_loc)});"
                    " two entries may not share an arXiv id, DOI, title or link",
                )
            else:
                owners[key] = (pid, path, loc)


def _check_file_names(rep: _Reporter) -> None:
    for pid, path, _ in _entries(rep.catalog):
        if path.stem != pid:
            rep.add(path, ("id",), f"id {pid!r} must equal the file name; rename the file to {pid}.yaml")


def _venue_hint(rep: _Reporter, venue: str) -> str:
    name, _, year = venue.rpartition(" ")
    names: dict[str, str] = {}  # spelling (id or alias) -> canonical id
    for v in rep.catalog.venues.venues:
        names[v.id] = v.id
        for alias in v.aliases:
            names.setdefault(alias, v.id)
    best = closest(name, names)
    return f" — did you mean '{names[best]} {year}'?" if best else ""


def _venue_ids(rep: _Reporter) -> set[str]:
    return {v.id for v in rep.catalog.venues.venues}


def _texts(value) -> list[tuple[int, str]]:
    """(index, text) of the strings in a YAML list; anything else was reported by the model already."""
    return [(i, v.strip()) for i, v in enumerate(value) if isinstance(v, str)] if isinstance(value, list) else []


def _check_vocabulary(rep: _Reporter) -> None:
    """Labels, topics and venues must exist. Read from each paper file's raw data, so that a paper with
    another mistake (reported by the model) still gets its vocabulary mistakes reported in the same run."""
    catalog = rep.catalog
    families = {fam.id: {lab.id for lab in fam.labels} for fam in catalog.labels.families}
    topics = [t.id for t in catalog.topics.topics]
    venues = _venue_ids(rep)
    papers_dir = catalog_dir(catalog.root) / "papers"
    for path, doc in catalog.docs.items():
        if doc is None or path.parent != papers_dir or not isinstance(doc.data, dict):
            continue
        data = doc.data
        labels = data.get("labels") if isinstance(data.get("labels"), dict) else {}
        for family in ("framework", "type", "modality"):
            known = families.get(family, set())
            for i, label in _texts(labels.get(family)):
                if label not in known:
                    elsewhere = [f for f, labs in families.items() if label in labs]
                    extra = f" (it is a {elsewhere[0]} label)" if elsewhere else hint(label, known)
                    rep.add(path, ("labels", family, i), f"unknown {family} label {label!r}{extra}")
        for i, topic in _texts(data.get("topics")):
            if topic not in topics:
                rep.add(path, ("topics", i), f"unknown topic {topic!r}{hint(topic, topics)}")
        venue = data.get("venue")
        if isinstance(venue, str) and _VENUE.match(venue.strip()):
            venue = venue.strip()
            if venue.rpartition(" ")[0] not in venues:
                rep.add(path, ("venue",), f"unknown venue {venue!r}{_venue_hint(rep, venue)}")
    workshops_file = catalog_dir(catalog.root) / "resources" / "workshops.yaml"
    for i, workshop in enumerate(catalog.resources.get("workshops", [])):
        if workshop.venue.rpartition(" ")[0] not in venues:
            rep.add(
                workshops_file,
                ("workshops", i, "venue"),
                f"unknown venue {workshop.venue!r}{_venue_hint(rep, workshop.venue)}",
            )


def _reproduction_packages(root: Path) -> set[str]:
    base = reproductions_dir(root)
    return {p.parent.name for p in base.glob("*/__init__.py")} if base.is_dir() else set()


def _check_references(rep: _Reporter) -> None:
    """Ids that must name something: reproductions, reporting papers, papers behind datasets."""
    catalog = rep.catalog
    packages = _reproduction_packages(catalog.root)
    ids = list(catalog.papers)
    known = set(ids) | catalog.unreadable  # a paper whose own file is broken was reported already
    for pid, path, paper in _entries(catalog):
        for i, name in enumerate(paper.reproductions):
            if name not in packages:
                rep.add(path, ("reproductions", i), f"no reproduction package reproductions/{name}/{hint(name, packages)}")
        if paper.needs_code and not paper.reproductions:
            rep.add(path, ("needs_code",), "needs code and has no reproduction yet", severity="info")
        for i, result in enumerate(paper.results):
            source = result.source.paper
            if source and source not in known:
                rep.add(path, ("results", i, "source", "paper"), f"no catalog paper {source!r}{hint(source, ids)}")
    datasets_file = catalog_dir(catalog.root) / "resources" / "datasets.yaml"
    for i, dataset in enumerate(catalog.resources.get("datasets", [])):
        if dataset.paper and dataset.paper not in known:
            rep.add(datasets_file, ("datasets", i, "paper"), f"no catalog paper {dataset.paper!r}{hint(dataset.paper, ids)}")
    for path, record in catalog.records:
        if record.paper not in known:
            rep.add(path, ("paper",), f"no catalog paper {record.paper!r}{hint(record.paper, ids)}")
        elif record.paper in catalog.papers and record.reproduction not in catalog.papers[record.paper].reproductions:
            # the paper's page lists its reproductions from its own entry: the two must agree
            listed = relative(catalog.files[record.paper], catalog.root)
            rep.add(path, ("reproduction",), f"{record.reproduction!r} is not listed under 'reproductions' in {listed}")
        if record.reproduction not in packages:
            rep.add(
                path,
                ("reproduction",),
                f"no reproduction package reproductions/{record.reproduction}/{hint(record.reproduction, packages)}",
            )
        source = record.paper_value.paper if record.paper_value else None
        if source and source not in known:
            rep.add(path, ("paper_value", "paper"), f"no catalog paper {source!r}{hint(source, ids)}")


def _check_dates(rep: _Reporter) -> None:
    """A paper's date and the day it was added cannot lie in the future, and it cannot be added before it
    appeared. Tomorrow is still allowed: 'today' differs around the world."""
    latest = dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=1)
    for _, path, paper in _entries(rep.catalog):
        if paper.date is not None and paper.date > latest:
            rep.add(path, ("date",), f"date {paper.date.isoformat()} is in the future")
        if paper.added is not None and paper.added > latest:
            rep.add(path, ("added",), f"added {paper.added.isoformat()} is in the future")
        if paper.added is not None and paper.date is not None and paper.added < paper.date:
            rep.add(path, ("added",), f"added {paper.added.isoformat()} is before the paper's date "
                                      f"{paper.date.isoformat()}; an entry joins the atlas after the paper appears")


def _check_invisible(rep: _Reporter) -> None:
    """Invisible characters in a title hide it from search and from the duplicate check's eye."""
    for _, path, paper in _entries(rep.catalog):
        hidden = sorted({f"U+{ord(ch):04X}" for ch in paper.title or "" if unicodedata.category(ch) in ("Cf", "Cc")})
        if hidden:
            rep.add(path, ("title",), f"title holds invisible characters ({', '.join(hidden)}); "
                                                        "type it again without them")


def _check_highlights(rep: _Reporter) -> None:
    """'State of the art' ranks a method against others on its benchmarks; a survey reviews methods and has no
    such rank, so the flag is refused on entries in the survey topic."""
    for _, path, paper in _entries(rep.catalog):
        if paper.highlights.sota and SURVEY_TOPIC in (paper.topics or ()):
            rep.add(path, ("highlights", "sota"), "a survey cannot be state of the art (the flag marks a method "
                    "that led its benchmarks when it was listed); remove 'sota: true'")


CHECKS = (_check_file_names, _check_shared, _check_vocabulary, _check_references, _check_dates, _check_invisible,
          check_results, _check_highlights)


def check_catalog(catalog: Catalog) -> list[Problem]:
    """Every cross-file problem of a loaded catalog."""
    rep = _Reporter(catalog)
    for check in CHECKS:
        check(rep)
    return rep.problems
