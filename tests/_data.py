"""Where the tests find the data files they read: ``$MLATLAS_DATA_DIR`` when it holds them (a device machine, a CI
runner with the data elsewhere), else the project's ``shared/`` folder beside the checkout (``../shared/data``) or
inside it (``shared/data``). Tests that need a file skip with its expected path when none of these has it."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """The folder holding ``omniglot/``, ``mnist/``, ``schools/``: the first candidate that exists."""
    candidates = []
    if os.environ.get("MLATLAS_DATA_DIR"):
        candidates.append(Path(os.environ["MLATLAS_DATA_DIR"]).expanduser())
    candidates += [ROOT.parent / "shared" / "data", ROOT / "shared" / "data"]
    for folder in candidates:
        if folder.is_dir() and any((folder / name).is_dir() for name in ("omniglot", "mnist", "schools")):
            return folder
    return candidates[0]


OMNIGLOT = data_root() / "omniglot"
