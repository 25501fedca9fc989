"""Task environments of the paper's experiments: synthetic regression tasks that share a low-dimensional linear
representation, and the Schools data (139 schools, one regression task each).

Every experiment splits its tasks three ways:

* training tasks: observed one at a time by the meta-learners; all their points feed the meta-objective;
* validation tasks: pick the hyper-parameters (ridge trained on their training points, scored on held-out points);
* test tasks: new tasks on which the reported error is measured the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .ltl import TaskStats, batched_weights


class DataError(ValueError):
    """The data file is missing or not in the expected format; the message names the file and the field."""


@dataclass
class EvalTasks:
    """Tasks on which an inner learner is trained (``train`` statistics) and scored on held-out points.

    Held-out points are padded to a common length: ``X`` (K, m, d), ``y`` (K, m), ``mask`` (K, m)."""

    train: TaskStats
    X: Tensor
    y: Tensor
    mask: Tensor

    def __len__(self) -> int:
        return len(self.train)

    def scores(self, D: Tensor, metric: str) -> Tensor:
        """Per-task score of ridge regression with representation ``D``: ``mse`` (mean squared error) or
        ``explained_variance`` (in percent, ``100 * (1 - Var(y - prediction) / Var(y))``)."""
        W = batched_weights(D, self.train)
        residual = (torch.einsum("kmd,kd->km", self.X, W) - self.y) * self.mask
        m = self.mask.sum(1)
        if metric == "mse":
            return (residual**2).sum(1) / m
        if metric == "explained_variance":
            return 100 * (1 - _masked_var(residual, self.mask, m) / _masked_var(self.y, self.mask, m))
        raise ValueError(f"unknown metric {metric!r}; use 'mse' or 'explained_variance'")


def _masked_var(values: Tensor, mask: Tensor, m: Tensor) -> Tensor:
    mean = (values * mask).sum(1) / m
    return (((values - mean[:, None]) * mask) ** 2).sum(1) / m


@dataclass
class Split:
    """One random draw of an experiment: training tasks in arrival order, validation and test tasks."""

    train: TaskStats
    val: EvalTasks
    test: EvalTasks

    @property
    def dim(self) -> int:
        return self.train.C.shape[-1]


def _as_tensor(a: np.ndarray, dtype, device) -> Tensor:
    return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)


def make_eval_tasks(train_parts, heldout_parts, dtype, device) -> EvalTasks:
    """Build :class:`EvalTasks` from lists of ``(X, y)`` NumPy arrays (training part, held-out part)."""
    stats = TaskStats.from_tasks([(_as_tensor(X, dtype, device), _as_tensor(y, dtype, device))
                                  for X, y in train_parts])
    m_max = max(len(y) for _, y in heldout_parts)
    dim = heldout_parts[0][0].shape[1]
    X = np.zeros((len(heldout_parts), m_max, dim))
    y = np.zeros((len(heldout_parts), m_max))
    mask = np.zeros((len(heldout_parts), m_max))
    for k, (Xk, yk) in enumerate(heldout_parts):
        X[k, : len(yk)], y[k, : len(yk)], mask[k, : len(yk)] = Xk, yk, 1.0
    return EvalTasks(stats, _as_tensor(X, dtype, device), _as_tensor(y, dtype, device),
                     _as_tensor(mask, dtype, device))


# --------------------------------------------------------------------------------------------------------------
# Synthetic environment
# --------------------------------------------------------------------------------------------------------------


@dataclass
class SyntheticEnvironment:
    """Linear regression tasks whose weight vectors lie in a fixed ``rank``-dimensional subspace of R^dim.

    A task: direction ``P u / ||P u||`` (``P`` a fixed dim x rank matrix with orthonormal columns, ``u`` standard
    normal), scaled by an integer drawn uniformly from ``norm_range``; inputs uniform on the unit sphere; targets
    ``<w, x> + noise_std * N(0, 1)``."""

    dim: int = 30
    rank: int = 5
    noise_std: float = 0.25
    norm_range: tuple[int, int] = (1, 9)

    def basis(self, rng: np.random.Generator) -> np.ndarray:
        if not 1 <= self.rank <= self.dim:
            raise ValueError(f"rank must be between 1 and dim={self.dim}, got {self.rank}")
        q, _ = np.linalg.qr(rng.standard_normal((self.dim, self.rank)))
        return q

    def sample_task(self, rng: np.random.Generator, P: np.ndarray, n_points: int) -> tuple[np.ndarray, np.ndarray]:
        u = P @ rng.standard_normal(self.rank)
        w = u / np.linalg.norm(u) * rng.integers(self.norm_range[0], self.norm_range[1] + 1)
        X = rng.standard_normal((n_points, self.dim))
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        y = X @ w + self.noise_std * rng.standard_normal(n_points)
        return X, y


def synthetic_split(
    rng: np.random.Generator,
    env: SyntheticEnvironment,
    n_train_tasks: int,
    n_val_tasks: int,
    n_test_tasks: int,
    n_points: int,
    n_heldout: int,
    dtype=torch.float64,
    device=None,
) -> Split:
    """Draw a fresh environment basis and the three groups of tasks. Every task has ``n_points`` training
    points; validation and test tasks also get ``n_heldout`` points to score on."""
    P = env.basis(rng)
    train = [env.sample_task(rng, P, n_points) for _ in range(n_train_tasks)]

    def eval_group(k: int) -> EvalTasks:
        parts = [env.sample_task(rng, P, n_points + n_heldout) for _ in range(k)]
        return make_eval_tasks([(X[:n_points], y[:n_points]) for X, y in parts],
                               [(X[n_points:], y[n_points:]) for X, y in parts], dtype, device)

    stats = TaskStats.from_tasks([(_as_tensor(X, dtype, device), _as_tensor(y, dtype, device)) for X, y in train])
    return Split(stats, eval_group(n_val_tasks), eval_group(n_test_tasks))


# --------------------------------------------------------------------------------------------------------------
# Schools
# --------------------------------------------------------------------------------------------------------------


DATA_DIR_ENV = "MLATLAS_DATA_DIR"  # the project's convention: $MLATLAS_DATA_DIR/<dataset>/...
SCHOOLS_FILE = "schoolData.mat"


def resolve_schools_path(data_path: str | Path | None) -> Path:
    """The Schools file: ``data_path`` when given, else ``$MLATLAS_DATA_DIR/schools/schoolData.mat``."""
    if data_path:
        return Path(data_path).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser() / "schools" / SCHOOLS_FILE
    raise DataError(
        f"where is the Schools data? Pass --set data_path=/path/to/{SCHOOLS_FILE} or set {DATA_DIR_ENV} "
        f"to a folder holding schools/{SCHOOLS_FILE}"
    )


def load_schools(path: str | Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Read ``schoolData.mat`` (cell arrays ``X``: features x students, ``Y``: exam scores, one per school) and
    return one ``(X, y)`` pair per school, students as rows, with a constant bias feature appended."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (pass the Schools data with --set data_path=.../schoolData.mat)")
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
    except (ValueError, OSError, NotImplementedError, IndexError, TypeError) as exc:
        raise DataError(f"{path}: not a readable MATLAB v5 file ({exc})") from None
    for field in ("X", "Y"):
        if field not in mat:
            raise DataError(f"{path}: field {field!r} is missing (expected cell arrays 'X' and 'Y')")
    xs, ys = mat["X"].ravel(), mat["Y"].ravel()
    if len(xs) != len(ys) or len(xs) == 0:
        raise DataError(f"{path}: fields 'X' and 'Y' must hold the same number of tasks, got {len(xs)} and {len(ys)}")
    tasks = []
    for i, (x, y) in enumerate(zip(xs, ys)):
        x = np.asarray(x, dtype=np.float64).T
        y = np.asarray(y, dtype=np.float64).ravel()
        if x.ndim != 2 or x.shape[0] != y.shape[0]:
            raise DataError(f"{path}: task {i + 1}: field 'X' has shape {x.T.shape}, but 'Y' has {y.shape[0]} values")
        tasks.append((np.hstack([x, np.ones((x.shape[0], 1))]), y))
    return tasks


def scale_by_max_abs(tasks: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Divide every feature by its largest absolute value over all students (labels are not looked at), so that
    the two Schools features that count up to 91 sit on the same scale as the +-1 ones."""
    scale = np.abs(np.vstack([X for X, _ in tasks])).max(0)
    scale[scale == 0] = 1.0
    return [(X / scale, y) for X, y in tasks]


def schools_split(
    rng: np.random.Generator,
    tasks: list[tuple[np.ndarray, np.ndarray]],
    n_train_tasks: int,
    n_val_tasks: int,
    train_fraction: float,
    dtype=torch.float64,
    device=None,
) -> Split:
    """Shuffle the schools into training / validation / test tasks (the rest are test tasks). Validation and
    test schools are split at random into ``train_fraction`` of their students for training, the rest held out."""
    if n_train_tasks + n_val_tasks >= len(tasks):
        raise ValueError(f"{n_train_tasks} training + {n_val_tasks} validation tasks leave no test task "
                         f"out of {len(tasks)}")
    order = rng.permutation(len(tasks))
    train_ids = order[:n_train_tasks]
    val_ids = order[n_train_tasks : n_train_tasks + n_val_tasks]
    test_ids = order[n_train_tasks + n_val_tasks :]

    def eval_group(ids) -> EvalTasks:
        train_parts, heldout_parts = [], []
        for i in ids:
            X, y = tasks[i]
            perm = rng.permutation(len(y))
            cut = int(round(train_fraction * len(y)))
            train_parts.append((X[perm[:cut]], y[perm[:cut]]))
            heldout_parts.append((X[perm[cut:]], y[perm[cut:]]))
        return make_eval_tasks(train_parts, heldout_parts, dtype, device)

    stats = TaskStats.from_tasks([(_as_tensor(tasks[i][0], dtype, device), _as_tensor(tasks[i][1], dtype, device))
                                  for i in train_ids])
    return Split(stats, eval_group(val_ids), eval_group(test_ids))
