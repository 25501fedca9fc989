"""A problem found in the catalog, printed as ``path:line: error: field: message`` (an error, which fails validation)
or ``path:line: field: message [info]`` (a note that never fails it)."""

from __future__ import annotations

import os
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

    def report(self) -> str:
        """The line a person reads: errors are marked ``error:`` after the place (as compilers mark them, so
        editors and CI annotate them), other problems end in their severity, e.g. ``[info]``."""
        if self.severity != "error":
            return f"{self} [{self.severity}]"
        where = f"{self.path}:{self.line}" if self.line else self.path
        field = f" {self.field}:" if self.field else ""
        return f"{where}: error:{field} {self.message}"


class CatalogError(Exception):
    """Raised when a catalog cannot be used; carries every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems)
        super().__init__("\n".join(p.report() for p in self.problems))


def relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root``; a link is named where it sits, not where it leads."""
    path = Path(path)
    for mine, base in ((Path(os.path.abspath(path)), Path(os.path.abspath(root))),
                       (path.parent.resolve() / path.name, Path(root).resolve())):
        try:
            return str(mine.relative_to(base))
        except ValueError:
            continue
    return str(path)
