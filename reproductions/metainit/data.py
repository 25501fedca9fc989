"""Omniglot character classification for the MetaInit experiments.

Every drawing of every character in one Omniglot images archive (e.g. ``images_background_small1.zip``: 136
characters x 20 drawings) becomes one labelled image; the first ``train_drawings`` drawings of each character
(in file-name order) are the training set, the rest the test set. The images are read straight from the zip
(no extraction), downsampled, and standardised with the training set's pixel mean and standard deviation, so
that they match the standard-normal inputs MetaInit draws.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch import Tensor

from reproductions.datasets import omniglot


class DataError(ValueError):
    """The data path or archive cannot be used; the message says what to do."""


@dataclass
class Split:
    x_train: Tensor  # [n, 1, size, size], standardised
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    n_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def resolve_archive(path: str | None, archive: str) -> Path:
    """The zip to read: ``path`` itself when it is a zip, ``path/archive`` when it is a folder, and when
    ``path`` is empty the verified copy in the Omniglot data folder (downloaded on first use)."""
    if not path:
        try:
            return omniglot.fetch_archive(archive)
        except omniglot.OmniglotDataError as exc:
            raise DataError(f"{exc} Or set $MLATLAS_DATA_DIR to a folder holding omniglot/{archive}, or give the zip "
                            "with --set data.path=ZIP (a run with --set writes no record).") from exc
    candidate = Path(path).expanduser()
    if candidate.is_dir():
        candidate = candidate / archive
    if not candidate.is_file():
        raise DataError(f"data.path: {candidate} does not exist; give the Omniglot zip or the folder holding {archive}")
    return candidate


def read_characters(archive: Path, size: int) -> tuple[np.ndarray, list[str]]:
    """``(images[character, drawing, size, size], character names)`` from an Omniglot images zip."""
    by_char: dict[str, list[str]] = {}
    try:
        with zipfile.ZipFile(archive) as zf:
            for name in sorted(zf.namelist()):
                parts = PurePosixPath(name).parts
                if name.endswith(".png") and len(parts) >= 3:
                    by_char.setdefault("/".join(parts[-3:-1]), []).append(name)
            if not by_char:
                raise DataError(f"{archive}: no Alphabet/character/*.png files; is this an Omniglot images zip?")
            counts = {len(v) for v in by_char.values()}
            if len(counts) != 1:
                raise DataError(f"{archive}: characters have differing numbers of drawings {sorted(counts)}")
            images = np.stack([
                np.stack([omniglot.load_image(zf.open(member), size) for member in members])
                for members in by_char.values()
            ])
    except zipfile.BadZipFile as exc:
        raise DataError(f"{archive}: not a readable zip file ({exc})") from exc
    return images, list(by_char)


def make_split(images: np.ndarray, train_drawings: int) -> Split:
    """Per-character split by drawing index, standardised with training statistics."""
    n_chars, n_draw = images.shape[:2]
    if not 0 < train_drawings < n_draw:
        raise DataError(f"data.train_drawings must be between 1 and {n_draw - 1}, not {train_drawings}")
    labels = np.repeat(np.arange(n_chars), n_draw).reshape(n_chars, n_draw)
    train, test = images[:, :train_drawings], images[:, train_drawings:]
    mean, std = float(train.mean()), float(train.std())

    def tensor(a: np.ndarray) -> Tensor:
        return torch.from_numpy(((a - mean) / std).reshape(-1, 1, *a.shape[2:]).astype(np.float32))

    return Split(
        tensor(train), torch.from_numpy(labels[:, :train_drawings].reshape(-1)),
        tensor(test), torch.from_numpy(labels[:, train_drawings:].reshape(-1)), n_chars,
    )


def load(config: dict) -> Split:
    """The split described by a config's ``data`` section (``path``, ``archive``, ``size``, ``train_drawings``)."""
    d = config["data"]
    images, _ = read_characters(resolve_archive(d["path"], d["archive"]), d["size"])
    return make_split(images, d["train_drawings"])
