"""Rainbow MNIST: a sequence of 10-way digit classification tasks, each MNIST under one background colour, one scale
and one rotation. 7 colours x 2 scales x 4 rotations = 56 tasks (the paper's counts).

What the paper's text fixes and what we chose (see README.md): the counts, background colour, full and half scale
and the four right-angle rotations are the paper's; the seven colours (the rainbow's red to violet), white digit
strokes, half scale by 2x2 averaging centred on the canvas, counter-clockwise rotation, and disjoint MNIST images for
every task are our reconstruction.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

COLOURS = {  # RGB in [0, 255]: the seven colours of the rainbow (our choice of the paper's 7 colours)
    "red": (255, 0, 0), "orange": (255, 127, 0), "yellow": (255, 255, 0), "green": (0, 255, 0),
    "blue": (0, 0, 255), "indigo": (75, 0, 130), "violet": (148, 0, 211),
}
SCALES = ("full", "half")
ROTATIONS = (0, 90, 180, 270)  # degrees, counter-clockwise


@dataclass(frozen=True)
class Transform:
    colour: str
    scale: str
    rotation: int

    @property
    def name(self) -> str:
        return f"{self.colour}/{self.scale}/{self.rotation}"


def all_transforms() -> list[Transform]:
    """The 56 tasks, in a fixed (unshuffled) order."""
    return [Transform(c, s, r) for c, s, r in itertools.product(COLOURS, SCALES, ROTATIONS)]


def apply(images: np.ndarray, t: Transform) -> np.ndarray:
    """Rainbow versions of uint8 MNIST digits ``[n, 28, 28]``: float32 ``[n, 3, 28, 28]`` in [0, 1].

    Scale first (half: each 2x2 block averaged into a 14x14 digit placed in the middle of an empty 28x28 canvas),
    then rotate (exactly, by quarter turns), then colour: ink intensity ``a`` blends the background colour into
    white, ``pixel = (1 - a) * colour + a * white``.
    """
    x = images.astype(np.float32) / 255.0
    if t.scale == "half":
        small = x.reshape(len(x), 14, 2, 14, 2).mean(axis=(2, 4))
        x = np.zeros_like(x)
        x[:, 7:21, 7:21] = small
    elif t.scale != "full":
        raise ValueError(f"unknown scale {t.scale!r}; choose from {SCALES}")
    if t.rotation not in ROTATIONS:
        raise ValueError(f"unknown rotation {t.rotation!r}; choose from {ROTATIONS}")
    x = np.rot90(x, k=t.rotation // 90, axes=(1, 2))
    colour = np.asarray(COLOURS[t.colour], dtype=np.float32)[None, :, None, None] / 255.0
    a = x[:, None]
    return np.ascontiguousarray((1.0 - a) * colour + a).astype(np.float32)


@dataclass
class Task:
    transform: Transform
    x_train: torch.Tensor  # [n_train, 3, 28, 28], in the order the points arrive
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def make_tasks(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], n_tasks: int,
               n_train: int, n_test: int, seed: int) -> list[Task]:
    """``n_tasks`` of the 56 in a random order (``seed``), each with its own ``n_train`` MNIST training images and
    ``n_test`` MNIST test images: no image appears in two tasks."""
    transforms = all_transforms()
    if not 1 <= n_tasks <= len(transforms):
        raise ValueError(f"tasks: {n_tasks} asked for, Rainbow MNIST has {len(transforms)}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(transforms))[:n_tasks]
    (xtr, ytr), (xte, yte) = train, test
    if n_tasks * n_train > len(xtr) or n_tasks * n_test > len(xte):
        raise ValueError(f"{n_tasks} tasks of {n_train} training and {n_test} test images need more than MNIST has")
    tr_idx, te_idx = rng.permutation(len(xtr)), rng.permutation(len(xte))
    tasks = []
    for i, k in enumerate(order):
        a, b = tr_idx[i * n_train:(i + 1) * n_train], te_idx[i * n_test:(i + 1) * n_test]
        t = transforms[k]
        tasks.append(Task(t, torch.from_numpy(apply(xtr[a], t)), torch.from_numpy(ytr[a]),
                          torch.from_numpy(apply(xte[b], t)), torch.from_numpy(yte[b])))
    return tasks
