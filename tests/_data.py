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
FULL_ARCHIVES = ["images_background.zip", "images_evaluation.zip"]
VINYALS_SPLITS = OMNIGLOT / "splits" / "vinyals"


def has_standard_omniglot() -> bool:
    """Whether the full archives and the Vinyals split lists are there (the papers' own protocol)."""
    return all((OMNIGLOT / n).exists() for n in FULL_ARCHIVES) and VINYALS_SPLITS.is_dir()


def standard_omniglot_folder(tmp_path: Path, name: str = "data") -> Path:
    """A data folder as a user would have it, under ``tmp_path``: the two full archives and the split lists."""
    import shutil

    from reproductions.datasets.omniglot_standard import SPLIT_SHA256

    folder = tmp_path / name
    (folder / "splits" / "vinyals").mkdir(parents=True)
    for archive in FULL_ARCHIVES:
        shutil.copy(OMNIGLOT / archive, folder / archive)
    for part in SPLIT_SHA256:
        shutil.copy(VINYALS_SPLITS / f"{part}.txt", folder / "splits" / "vinyals" / f"{part}.txt")
    return folder
