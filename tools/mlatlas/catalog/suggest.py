""""Did you mean ...?" hints for misspelt names."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The choice most like ``word`` (case-insensitive), or None when nothing is close."""
    by_folded: dict[str, str] = {}
    for choice in choices:
        by_folded.setdefault(choice.casefold(), choice)
    folded = word.casefold()
    if folded in by_folded:
        return by_folded[folded]
    match = difflib.get_close_matches(folded, list(by_folded), n=1, cutoff=cutoff)
    return by_folded[match[0]] if match else None


def hint(word: str, choices: Iterable[str]) -> str:
    """`` — did you mean 'x'?`` or an empty string."""
    best = closest(word, choices)
    return f" — did you mean {best!r}?" if best is not None and best != word else ""
