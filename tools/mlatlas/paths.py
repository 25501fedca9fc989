"""Where things live in a checkout of the project."""

from __future__ import annotations

import os
from pathlib import Path


def project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) holding ``catalog/vocab``.

    ``MLATLAS_ROOT`` overrides the search.
    """
    env = os.environ.get("MLATLAS_ROOT")
    if env:
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "catalog" / "vocab").is_dir():
            return folder
    # Fall back to the checkout this package was installed from (editable installs).
    return Path(__file__).resolve().parents[2]  # tools/mlatlas/paths.py -> checkout


def catalog_dir(root: Path) -> Path:
    return root / "catalog"


def reproductions_dir(root: Path) -> Path:
    return root / "reproductions"
