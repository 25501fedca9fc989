"""The loaded catalog: every validated entry, vocabulary and resource, ready for checks and renderers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlatlas.catalog.models import LabelVocabulary, Paper, TopicVocabulary, VenueVocabulary


@dataclass
class Catalog:
    root: Path
    labels: LabelVocabulary
    topics: TopicVocabulary
    venues: VenueVocabulary
    benchmarks: Any = None  # BenchmarkVocabulary (catalog/vocab/benchmarks.yaml), None when the file is absent
    papers: dict[str, Paper] = field(default_factory=dict)  # by id, sorted by (date, id)
    resources: dict[str, list[Any]] = field(default_factory=dict)  # "books" -> [Book, ...]
    records: list[Any] = field(default_factory=list)  # (record file, ResultRecord), valid ones only
    files: dict[str, Path] = field(default_factory=dict)  # paper id -> its YAML file
    unreadable: set[str] = field(default_factory=set)  # stems of paper files that failed validation
    partial: dict[Path, Paper] = field(default_factory=dict)  # what passed of those files: checked, never rendered
    docs: dict[Path, Any] = field(default_factory=dict, repr=False)  # file -> parsed YamlDoc (for line numbers)

    def label(self, family: str, label_id: str):
        for fam in self.labels.families:
            if fam.id == family:
                for lab in fam.labels:
                    if lab.id == label_id:
                        return lab
        raise KeyError(f"{family}:{label_id}")

    def papers_in_topic(self, topic_id: str) -> list[Paper]:
        return [p for p in self.papers.values() if topic_id in p.topics]

    def records_for(self, paper_id: str) -> list[Any]:
        """Result records (``(path, ResultRecord)``) of the reproductions of one paper."""
        return [(path, rec) for path, rec in self.records if rec.paper == paper_id]

    def line_of(self, path: Path, loc: tuple) -> int:
        """Line of ``loc`` (e.g. ``("ids", "arxiv")``) in a loaded file, 0 when the file is unknown."""
        doc = self.docs.get(path)
        return doc.line_of(loc) if doc is not None else 0
