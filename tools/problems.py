"""A problem found in the catalog, reported as ``path:line: field: message``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, order=True)
class Problem:
    path: str
    line: int
    field: str
    message: str
    severity: str = "error"  # "error" fails validation; "info" is only reported

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class CatalogError(Exception):
    """Raised when a catalog cannot be used; carries every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root``; a link is named where it sits, not where it leads."""
    path = Path(path)
    try:
        return str((path.parent.resolve() / path.name).relative_to(root.resolve()))
    except ValueError:
        return str(path)
