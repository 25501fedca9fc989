"""The loaded catalog: every validated entry, vocabulary and resource, ready for checks and renderers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlatlas.models import LabelVocabulary, Paper, TopicVocabulary, VenueVocabulary


@dataclass
class Catalog:
    root: Path
    labels: LabelVocabulary
    topics: TopicVocabulary
    venues: VenueVocabulary
    papers: dict[str, Paper] = field(default_factory=dict)  # by id, sorted by (date, id)
    resources: dict[str, list[Any]] = field(default_factory=dict)  # "books" -> [Book, ...]
    records: list[Any] = field(default_factory=list)  # reproduction result records
    files: dict[str, Path] = field(default_factory=dict)  # paper id -> its YAML file

    def label(self, family: str, label_id: str):
        for fam in self.labels.families:
            if fam.id == family:
                for lab in fam.labels:
                    if lab.id == label_id:
                        return lab
        raise KeyError(f"{family}:{label_id}")

    def papers_in_topic(self, topic_id: str) -> list[Paper]:
        return [p for p in self.papers.values() if topic_id in p.topics]
