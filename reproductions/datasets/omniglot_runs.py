"""Lake et al.'s 20 one-shot classification runs (``all_runs.zip``) and their Modified Hausdorff baseline.

Each run holds 20 training images (one drawing each of 20 characters from one evaluation alphabet) and 20
test images (another drawing of each). ``class_labels.txt`` pairs every test image with its training image.
A classifier picks, for each test image, one of the run's 20 training images; the score is the percentage
of wrong picks per run, averaged over the 20 runs.

The repository's baseline compares the sets of inked pixels of two images with the Modified Hausdorff
distance (Dubuisson & Jain 1994) after centring each set on its mean; its authors report 38.8% error.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from reproductions.datasets.omniglot import OmniglotDataError, load_image

N_RUNS = 20
MHD_PUBLISHED_ERROR = 38.8  # percent, stated in the repository's demo_classification.py


@dataclass
class OneShotRun:
    name: str  # "run01"
    train: list[np.ndarray]  # 20 images, one per class
    test: list[np.ndarray]  # 20 images
    answer: list[int]  # answer[i] = index into ``train`` of the class of test[i]

    def __len__(self) -> int:
        return len(self.test)


def read_runs(archive: Path, size: int | None = None) -> list[OneShotRun]:
    """Read every run of ``all_runs.zip``. ``size=None`` keeps the 105x105 originals; images have ink = 1."""
    try:
        zf = zipfile.ZipFile(archive)
    except (OSError, zipfile.BadZipFile) as exc:
        raise OmniglotDataError(f"{archive}: cannot open the one-shot runs archive ({exc})") from exc
    with zf:
        names = set(zf.namelist())
        runs = []
        for r in range(1, N_RUNS + 1):
            run = f"run{r:02d}"
            label_file = f"{run}/class_labels.txt"
            if label_file not in names:
                raise OmniglotDataError(f"{archive}: {label_file} is missing")
            pairs = []
            for lineno, line in enumerate(zf.read(label_file).decode("utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                fields = line.split()
                if len(fields) != 2 or any(f not in names for f in fields):
                    raise OmniglotDataError(f"{archive}:{label_file}:{lineno}: expected two image paths, got {line!r}")
                pairs.append(fields)
            train_files = sorted({train for _, train in pairs})
            test_files = [test for test, _ in pairs]
            runs.append(OneShotRun(
                name=run,
                train=[load_image(io.BytesIO(zf.read(f)), size) for f in train_files],
                test=[load_image(io.BytesIO(zf.read(f)), size) for f in test_files],
                answer=[train_files.index(train) for _, train in pairs],
            ))
    return runs


def run_errors(runs: Sequence[OneShotRun], predict: Callable[[OneShotRun], Sequence[int]]) -> list[float]:
    """Percent error of ``predict`` on each run; ``predict(run)`` returns a training index per test image."""
    errors = []
    for run in runs:
        guess = np.asarray(predict(run))
        if guess.shape != (len(run),):
            raise ValueError(f"{run.name}: expected {len(run)} predictions, got shape {guess.shape}")
        errors.append(100.0 * float(np.mean(guess != np.asarray(run.answer))))
    return errors


# --------------------------------------------------------------------------------------------------
# Modified Hausdorff distance baseline
# --------------------------------------------------------------------------------------------------


def ink_points(image: np.ndarray) -> np.ndarray:
    """Coordinates of inked pixels (ink > 0.5), centred on their mean."""
    points = np.argwhere(image > 0.5).astype(float)
    return points - points.mean(axis=0)


def modified_hausdorff(a: np.ndarray, b: np.ndarray, tree_a: cKDTree | None = None,
                       tree_b: cKDTree | None = None) -> float:
    """max(mean over a of the distance to the nearest point of b, and the same from b to a).

    Exact nearest-neighbour distances through k-d trees (pass prebuilt trees to reuse them).
    """
    a_to_b = (tree_b or cKDTree(b)).query(a)[0].mean()
    b_to_a = (tree_a or cKDTree(a)).query(b)[0].mean()
    return float(max(a_to_b, b_to_a))


def mhd_predict(run: OneShotRun) -> list[int]:
    """For each test image, the training image at the smallest Modified Hausdorff distance."""
    train = [ink_points(x) for x in run.train]
    train_trees = [cKDTree(x) for x in train]
    guesses = []
    for image in run.test:
        t = ink_points(image)
        tree = cKDTree(t)
        costs = [modified_hausdorff(t, x, tree, tx) for x, tx in zip(train, train_trees)]
        guesses.append(int(np.argmin(costs)))
    return guesses
