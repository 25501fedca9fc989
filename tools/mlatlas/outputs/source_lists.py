"""The source lists the catalog started from, as corrections name them (``source: seed 000``).

Each is named by its own title; ``url`` is the public list it came from where the copy we worked from says so
(and None where it does not: we link nothing we cannot vouch for).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceList:
    key: str  # as corrections write it, e.g. "seed 000"
    title: str
    what: str  # one line on what the list is
    url: str | None = None


SOURCE_LISTS: dict[str, SourceList] = {
    lst.key: lst
    for lst in (
        SourceList(
            "seed 000", "Meta-Learning-Papers-with-Code",
            "a reading list of meta-learning papers with code, by type of model, on GitHub",
            "https://github.com/WangJingyao07/Meta-Learning-Papers-with-Code",
        ),
        SourceList(
            "seed 001", "元学习资料 (Meta-learning resources)",
            "a Chinese copy of the Awesome-Meta-Learning list (papers, books, blogs, videos, datasets); the link "
            "is the original list it names",
            "https://github.com/sudharsan13296/Awesome-Meta-Learning",
        ),
        SourceList(
            "seed 002", "An Interactive Introduction to Model-Agnostic Meta-Learning",
            "the further-reading list of an interactive introduction to MAML, FOMAML, Reptile and iMAML",
        ),
        SourceList(
            "seed 003", "Meta Learning: An Introduction",
            "an introduction in Chinese to metric-, optimisation- and model-based meta-learning, originally "
            "published in the repository linked",
            "https://github.com/Skylark0924/Reinforcement-Learning-in-Robotics",
        ),
        SourceList(
            "seed 004", "Papers With Code: Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
            "the MAML paper's page on the Papers With Code results aggregator",
        ),
    )
}


def source_list(key: str) -> SourceList:
    """The list a correction names; an unknown name stands for itself (the page then shows it as written)."""
    return SOURCE_LISTS.get(key) or SourceList(key, key, "")
