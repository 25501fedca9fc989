"""Task families: the sinusoid regression of Finn et al. (2017) and a generic N-way K-shot episode sampler."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class TaskBatch:
    """A batch of tasks, task index first: ``support_x`` is ``[tasks, shots, ...]`` and so on."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor

    def __len__(self) -> int:
        return self.support_x.shape[0]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> TaskBatch:
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype if t.is_floating_point() and dtype else t.dtype)

        return TaskBatch(move(self.support_x), move(self.support_y), move(self.query_x), move(self.query_y))

    def task(self, i: int) -> TaskBatch:
        """Task ``i`` alone, keeping a task axis of length one."""
        return TaskBatch(*(t[i : i + 1] for t in (self.support_x, self.support_y, self.query_x, self.query_y)))


@dataclass(frozen=True)
class SinusoidFamily:
    """y = A sin(x - phase) with A ~ U[0.1, 5], phase ~ U[0, pi], x ~ U[-5, 5] (MAML paper, Section 5.1).

    A task gives ``k_shot`` support points and ``n_query`` query points drawn independently from the same sinusoid.
    """

    amplitude: tuple[float, float] = (0.1, 5.0)
    phase: tuple[float, float] = (0.0, math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)

    def sample(self, rng: np.random.Generator, n_tasks: int, k_shot: int, n_query: int) -> TaskBatch:
        amp = rng.uniform(*self.amplitude, size=(n_tasks, 1, 1))
        phase = rng.uniform(*self.phase, size=(n_tasks, 1, 1))
        x = rng.uniform(*self.x_range, size=(n_tasks, k_shot + n_query, 1))
        y = amp * np.sin(x - phase)
        x_t, y_t = torch.from_numpy(x).float(), torch.from_numpy(y).float()
        return TaskBatch(x_t[:, :k_shot], y_t[:, :k_shot], x_t[:, k_shot:], y_t[:, k_shot:])


class EpisodeSampler:
    """N-way K-shot episodes over any labelled dataset.

    ``labels[i]`` is the class of example ``i``. Each episode picks ``n_way`` distinct classes, then ``k_shot``
    support and ``n_query`` query examples of each, without overlap. Classes are relabelled 0..n_way-1 in the
    order drawn. :meth:`sample` returns index arrays, so the caller decides how examples are loaded.
    """

    def __init__(self, labels, n_way: int, k_shot: int, n_query: int, rng: np.random.Generator):
        labels = np.asarray(labels)
        self.classes, inverse = np.unique(labels, return_inverse=True)
        self.by_class = [np.flatnonzero(inverse == c) for c in range(len(self.classes))]
        if n_way > len(self.classes):
            raise ValueError(f"{n_way}-way episodes need {n_way} classes, the dataset has {len(self.classes)}")
        need = k_shot + n_query
        small = [str(self.classes[c]) for c, idx in enumerate(self.by_class) if len(idx) < need]
        if small:
            raise ValueError(f"classes with fewer than k_shot + n_query = {need} examples: {', '.join(small[:5])}")
        self.n_way, self.k_shot, self.n_query, self.rng = n_way, k_shot, n_query, rng

    def sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(support_idx, support_y, query_idx, query_y)``; support arrays have ``n_way * k_shot`` entries."""
        chosen = self.rng.choice(len(self.by_class), size=self.n_way, replace=False)
        s_idx, q_idx = [], []
        for c in chosen:
            picked = self.rng.choice(self.by_class[c], size=self.k_shot + self.n_query, replace=False)
            s_idx.append(picked[: self.k_shot])
            q_idx.append(picked[self.k_shot :])
        s_y = np.repeat(np.arange(self.n_way), self.k_shot)
        q_y = np.repeat(np.arange(self.n_way), self.n_query)
        return np.concatenate(s_idx), s_y, np.concatenate(q_idx), q_y
