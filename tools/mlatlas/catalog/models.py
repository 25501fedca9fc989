"""Pydantic models of everything in ``catalog/``: papers, vocabularies and non-paper resources.

These models are the contract between the YAML files, the checks, the renderers and the exports.
They validate one file at a time; checks that need the whole catalog (unique ids, labels that exist
in the vocabularies, shared links ...) live in ``mlatlas.catalog.checks``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
ARXIV_PATTERN = r"^(?:\d{4}\.\d{4,5}|[a-z\-]+(?:\.[A-Z]{2})?/\d{7})$"
DOI_PATTERN = r"^10\.\d{4,9}/\S+$"
VENUE_PATTERN = r"^(?P<venue>\S(?:.*\S)?) (?P<year>\d{4})$"

Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN, max_length=64)]
PackageName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]


def _https_only(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise ValueError(f"only https links are allowed, got {url!r}")
    if not parts.netloc or any(ch.isspace() for ch in url):
        raise ValueError(f"not a valid URL: {url!r}")
    return url


HttpsUrl = Annotated[str, StringConstraints(max_length=500), AfterValidator(_https_only)]


class Strict(BaseModel):
    """Base for all catalog models (and result records): unknown fields are errors, so typos never pass silently;
    NaN and infinity are no numbers anyone reported, and strict JSON (catalog.json) cannot hold them."""

    model_config = ConfigDict(extra="forbid", frozen=False, str_strip_whitespace=True, allow_inf_nan=False)


# --------------------------------------------------------------------------------------------
# Vocabularies (catalog/vocab/*.yaml)
# --------------------------------------------------------------------------------------------


class Label(Strict):
    id: Slug
    name: ShortText
    color: Annotated[str, StringConstraints(pattern=r"^#[0-9a-fA-F]{6}$")] = Field(
        description="Badge colour as #rrggbb."
    )
    description: Text


class LabelFamily(Strict):
    id: Literal["framework", "type", "modality"]
    name: ShortText
    description: Text
    labels: list[Label] = Field(min_length=1)


class LabelVocabulary(Strict):
    """catalog/vocab/labels.yaml"""

    families: list[LabelFamily]


class Topic(Strict):
    id: Slug
    name: ShortText
    intro: Text = Field(description="One paragraph shown above the topic's table.")


class TopicVocabulary(Strict):
    """catalog/vocab/topics.yaml: topics in the order README.md shows them."""

    topics: list[Topic]


class Venue(Strict):
    id: Annotated[str, StringConstraints(pattern=r"^\S(?:.*\S)?$", max_length=80)] = Field(
        description="Canonical short name used in entries, e.g. 'NeurIPS'."
    )
    name: ShortText = Field(description="Full name, e.g. 'Conference on Neural Information Processing Systems'.")
    kind: Literal["conference", "journal", "workshop", "preprint", "book", "other"]
    aliases: list[ShortText] = Field(default_factory=list, description="Other spellings, used for suggestions.")
    url: HttpsUrl | None = None


class VenueVocabulary(Strict):
    """catalog/vocab/venues.yaml"""

    venues: list[Venue]


# --------------------------------------------------------------------------------------------
# Papers (catalog/papers/<id>.yaml)
# --------------------------------------------------------------------------------------------


class Labels(Strict):
    framework: list[Slug] = Field(min_length=1)
    type: list[Slug] = Field(default_factory=list)
    modality: list[Slug] = Field(default_factory=list)


class Identifiers(Strict):
    arxiv: Annotated[str, StringConstraints(pattern=ARXIV_PATTERN)] | None = None
    doi: Annotated[str, StringConstraints(pattern=DOI_PATTERN)] | None = None
    openreview: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]+$")] | None = None
    proceedings: HttpsUrl | None = Field(default=None, description="Proceedings or publisher landing page.")
    pdf: HttpsUrl | None = Field(default=None, description="Open-access PDF when no arXiv version exists.")


class Repository(Strict):
    url: HttpsUrl
    official: bool = Field(description="True for the authors' own repository.")
    framework: ShortText | None = Field(default=None, description="e.g. PyTorch, TensorFlow, JAX.")
    note: ShortText | None = None


class Code(Strict):
    status: Literal["official", "community", "none"]
    repositories: list[Repository] = Field(default_factory=list)

    @model_validator(mode="after")
    def _status_matches_repositories(self) -> Code:
        officials = [r for r in self.repositories if r.official]
        if self.status == "official" and not officials:
            raise ValueError("status 'official' needs at least one repository with official: true")
        if self.status == "community" and (officials or not self.repositories):
            raise ValueError("status 'community' needs repositories, none of them official")
        if self.status == "none" and self.repositories:
            raise ValueError("status 'none' cannot list repositories")
        return self


class Highlights(Strict):
    sota: bool = Field(default=False, description="State of the art when it was listed (seed 000's 🌟); a method's mark, refused on surveys.")
    pick: bool = Field(default=False, description="Editor's pick (seed 000's 🎈).")


class ResultSource(Strict):
    """Who reported a number: a catalog paper (by id) or, for papers outside the catalog, a citation."""

    paper: Slug | None = None
    citation: ShortText | None = None
    url: HttpsUrl | None = None
    table: ShortText = Field(description="Where in that paper, e.g. 'Table 1'.")
    note: ShortText | None = Field(
        default=None, description="Where the number was read when not in the paper's own text, e.g. an official README.")

    @model_validator(mode="after")
    def _one_reference(self) -> ResultSource:
        if not self.paper and not self.citation:
            raise ValueError("give the reporting paper as 'paper' (a catalog id) or 'citation'")
        return self


class ReportedResult(Strict):
    """A number reported for this entry's method; ``benchmark``, ``setting`` and ``variant`` name
    ``catalog/vocab/benchmarks.yaml``, which also gives the metric, unit and direction (checked in
    :mod:`mlatlas.catalog.benchmarks`). A source other than the entry itself makes it second-hand."""

    benchmark: ShortText
    setting: ShortText
    variant: Slug | None = Field(default=None, description="Protocol variant of the benchmark; default: its first.")
    metric: ShortText | None = Field(default=None, description="Filled from the benchmark; if given, must match it.")
    value: float
    pm: float | None = Field(default=None, ge=0, description="The ± the source reports (usually a 95% CI).")
    unit: ShortText | None = Field(default=None, description="Filled from the benchmark; if given, must match it.")
    row: ShortText | None = Field(default=None, description="The row label as printed in the source table.")
    backbone: ShortText | None = Field(default=None, description="Feature extractor, e.g. 'Conv-4 (64 filters)'.")
    extras: list[ShortText] = Field(default_factory=list, description="Training extras that change the comparison: "
                                    "'fine-tuning at test', 'train+val classes', 'data augmentation', 'pre-training' ...")
    source: ResultSource


class Correction(Strict):
    """A fact a source list got wrong, and the evidence for the right one."""

    source: ShortText = Field(description="Which source list, e.g. 'seed 000'.")
    field: ShortText
    was: Text
    now: Text
    evidence: HttpsUrl


class Link(Strict):
    label: ShortText
    url: HttpsUrl


class Paper(Strict):
    schema_: str | None = Field(default=None, alias="$schema", exclude=True)
    id: Slug
    title: Text
    method: ShortText | None = Field(default=None, description="Short name of the method, e.g. 'MAML'.")
    aliases: list[ShortText] = Field(
        default_factory=list,
        description="Other names the method goes by, e.g. 'ProtoNet' for Prototypical Networks: the site's search "
        "finds the paper by them.",
    )
    authors: list[ShortText] = Field(min_length=1)
    date: dt.date = Field(description="Date of the first public version.")
    date_precision: Literal["day", "month", "year"] = Field(
        default="day",
        description="How much of `date` the paper's record confirms: 'month' means only year and month are "
        "known (write the 1st as the day), 'year' only the year (write January 1st).",
    )
    year: int = Field(ge=1950, le=2100, description="Year of the first public version.")
    venue: Annotated[str, StringConstraints(pattern=VENUE_PATTERN)] = Field(
        description="Canonical venue and year, e.g. 'ICML 2017'; 'arXiv 2019' for preprints."
    )
    labels: Labels
    topics: list[Slug] = Field(min_length=1)
    ids: Identifiers = Field(default_factory=Identifiers)
    code: Code
    needs_code: bool = Field(default=False, description="No public code: the atlas reproduces it.")
    reproductions: list[PackageName] = Field(default_factory=list, description="Packages under reproductions/.")
    highlights: Highlights = Field(default_factory=Highlights)
    summary: Annotated[str, StringConstraints(strip_whitespace=True, min_length=40, max_length=900)]
    results: list[ReportedResult] = Field(default_factory=list)
    links: list[Link] = Field(default_factory=list)
    corrections: list[Correction] = Field(default_factory=list)
    added: dt.date = Field(description="When the entry joined the atlas.")

    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_strip_whitespace=True)

    @property
    def venue_name(self) -> str:
        return re.match(VENUE_PATTERN, self.venue).group("venue")

    @property
    def venue_year(self) -> int:
        return int(re.match(VENUE_PATTERN, self.venue).group("year"))

    # Field validators (not one model validator) so that errors point at the field and its line.
    @field_validator("year")
    @classmethod
    def _year_matches_date(cls, year: int, info: ValidationInfo) -> int:
        date = info.data.get("date")
        if date is not None and date.year != year:
            raise ValueError(f"year {year} does not agree with date {date.isoformat()}")
        return year

    @field_validator("date_precision")
    @classmethod
    def _precision_matches_date(cls, precision: str, info: ValidationInfo) -> str:
        date = info.data.get("date")
        if date is not None and precision == "month" and date.day != 1:
            raise ValueError(f"precision 'month' needs the day written as 01, got {date.isoformat()}")
        if date is not None and precision == "year" and (date.month, date.day) != (1, 1):
            raise ValueError(f"precision 'year' needs the date written as {date.year}-01-01, got {date.isoformat()}")
        return precision

    @property
    def date_display(self) -> str:
        """The date as far as it is known: '2017-03-09', '2017-03' or '2017'."""
        return self.date.strftime({"day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}[self.date_precision])

    @field_validator("needs_code")
    @classmethod
    def _needs_code_without_official(cls, needs_code: bool, info: ValidationInfo) -> bool:
        code = info.data.get("code")
        if needs_code and code is not None and code.status == "official":
            raise ValueError("needs_code is for papers without official code, but code.status is 'official'")
        return needs_code

    def all_links(self) -> list[tuple[str, str]]:
        """Every URL this entry holds, with the field it sits in (for the shared-link check and link checking)."""
        found: list[tuple[str, str]] = []
        if self.ids.arxiv:
            found.append(("ids.arxiv", f"https://arxiv.org/abs/{self.ids.arxiv}"))
        if self.ids.doi:
            found.append(("ids.doi", f"https://doi.org/{self.ids.doi}"))
        if self.ids.openreview:
            found.append(("ids.openreview", f"https://openreview.net/forum?id={self.ids.openreview}"))
        for name in ("proceedings", "pdf"):
            if getattr(self.ids, name):
                found.append((f"ids.{name}", getattr(self.ids, name)))
        for i, repo in enumerate(self.code.repositories if self.code is not None else ()):  # None: see catalog.partial
            found.append((f"code.repositories.{i}.url", repo.url))
        for i, link in enumerate(self.links):
            found.append((f"links.{i}.url", link.url))
        return found


# --------------------------------------------------------------------------------------------
# Non-paper resources (catalog/resources/<kind>.yaml, each a list under the key of its kind)
# --------------------------------------------------------------------------------------------


class Book(Strict):
    id: Slug
    title: Text
    authors: list[ShortText] = Field(min_length=1)
    year: int = Field(ge=1950, le=2100)
    publisher: ShortText | None = None
    url: HttpsUrl
    open_access: bool = False
    summary: Text


class Blog(Strict):
    id: Slug
    title: Text
    authors: list[ShortText] = Field(min_length=1)
    year: int | None = Field(default=None, ge=1990, le=2100)
    url: HttpsUrl
    summary: Text


class Video(Strict):
    id: Slug
    title: Text
    speakers: list[ShortText] = Field(min_length=1)
    year: int | None = Field(default=None, ge=1990, le=2100)
    event: ShortText | None = None
    url: HttpsUrl
    summary: Text


class Dataset(Strict):
    id: Slug
    name: ShortText
    url: HttpsUrl = Field(description="Canonical home of the data.")
    license: ShortText = Field(description="Licence or terms of use, as the data's home states them.")
    paper: Slug | None = Field(default=None, description="Catalog id of the paper that introduced it.")
    citation: ShortText | None = None
    summary: Text


class Workshop(Strict):
    id: Slug
    name: ShortText
    venue: Annotated[str, StringConstraints(pattern=VENUE_PATTERN)]
    url: HttpsUrl
    summary: Text | None = None


class Researcher(Strict):
    id: Slug
    name: ShortText
    affiliation: ShortText | None = None
    homepage: HttpsUrl
    topics: list[ShortText] = Field(default_factory=list)


class BookList(Strict):
    books: list[Book]


class BlogList(Strict):
    blogs: list[Blog]


class VideoList(Strict):
    videos: list[Video]


class DatasetList(Strict):
    datasets: list[Dataset]


class WorkshopList(Strict):
    workshops: list[Workshop]


class ResearcherList(Strict):
    researchers: list[Researcher]


# File name under catalog/resources/ -> (model of the file, key of its list)
RESOURCE_FILES: dict[str, type[Strict]] = {
    "books.yaml": BookList,
    "blogs.yaml": BlogList,
    "videos.yaml": VideoList,
    "datasets.yaml": DatasetList,
    "workshops.yaml": WorkshopList,
    "researchers.yaml": ResearcherList,
}
