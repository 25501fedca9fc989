"""The learning-to-learn methods of Denevi, Ciliberto, Stamos & Pontil (UAI 2018), in plain torch functions.

Inner algorithm (one task, data ``X`` of shape (n, d), targets ``y`` of shape (n,)): ridge regression whose
regulariser is shaped by a positive semi-definite matrix ``D`` (the learned linear representation),

    w(D) = argmin_{w in Ran(D)}  (1/n) ||X w - y||^2 + <w, D^+ w>  =  D X^T (X D X^T + n I)^{-1} y.

The regularisation strength lives in ``D`` itself: ``D`` is constrained to the set
``{D symmetric PSD, tr(D) <= 1/lambda}``, so ``lambda`` bounds how little the representation may regularise.

Meta-objective: the error that ridge regression makes on the data of the task it was trained on,

    L(D, Z) = (1/n) ||X w(D) - y||^2 = n ||M^{-1} y||^2,   M = X D X^T + n I,

which is convex in ``D``. Its gradient is

    grad L(D, Z) = -n X^T (M^{-1} y y^T M^{-2} + M^{-2} y y^T M^{-1}) X.

Online LTL: tasks arrive one at a time; after each one, ``D`` takes one projected stochastic gradient step on
``L(., Z_t)`` with step ``c / sqrt(t)``; the output is the average of the iterates. Batch LTL minimises the average
of ``L`` over all observed tasks (projected gradient descent). Independent task learning (ITL) is plain ridge
regression per task, ``D = I / lambda``, with no transfer.

Two formulations are provided: the n-space formulas above, written exactly as in the paper (used in tests and for
single tasks), and a d-space form on per-task sufficient statistics ``(X^T X, X^T y, y^T y, n)`` that batches over
tasks of different sizes and is what the experiments run. The tests check that both agree, and with autograd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

# --------------------------------------------------------------------------------------------------------------
# Paper formulas on one task (n-space)
# --------------------------------------------------------------------------------------------------------------


def _system(D: Tensor, X: Tensor) -> Tensor:
    n = X.shape[0]
    return X @ D @ X.T + n * torch.eye(n, dtype=X.dtype, device=X.device)


def ridge_weights(D: Tensor, X: Tensor, y: Tensor) -> Tensor:
    """Ridge regression with representation ``D``: ``D X^T (X D X^T + n I)^{-1} y``."""
    return D @ X.T @ torch.linalg.solve(_system(D, X), y)


def meta_loss(D: Tensor, X: Tensor, y: Tensor) -> Tensor:
    """Training error of ridge regression with representation ``D`` on the task: ``n ||M^{-1} y||^2``."""
    a = torch.linalg.solve(_system(D, X), y)
    return X.shape[0] * (a @ a)


def meta_gradient(D: Tensor, X: Tensor, y: Tensor) -> Tensor:
    """The paper's gradient ``-n X^T (M^{-1} y y^T M^{-2} + M^{-2} y y^T M^{-1}) X`` (symmetric, d x d)."""
    M = _system(D, X)
    a = torch.linalg.solve(M, y)  # M^{-1} y
    b = torch.linalg.solve(M, a)  # M^{-2} y
    u, v = X.T @ a, X.T @ b
    return -X.shape[0] * (torch.outer(u, v) + torch.outer(v, u))


# --------------------------------------------------------------------------------------------------------------
# Projection onto {D PSD, tr(D) <= bound}
# --------------------------------------------------------------------------------------------------------------


def project_capped_simplex(s: Tensor, bound: float) -> Tensor:
    """Euclidean projection of a vector onto ``{s >= 0, sum(s) <= bound}``."""
    if not bool(torch.isfinite(s).all()):
        raise FloatingPointError("cannot project: the matrix has non-finite entries (the step size is too large)")
    s = s.clamp(min=0)
    if float(s.sum()) <= bound:
        return s
    # Otherwise the sum constraint is active: shift by the theta with sum(max(s - theta, 0)) = bound.
    u = torch.sort(s, descending=True).values
    cumsum = torch.cumsum(u, 0)
    ranks = torch.arange(1, s.numel() + 1, dtype=s.dtype, device=s.device)
    active = u - (cumsum - bound) / ranks > 0
    # The active entries form a prefix that always contains the largest one (rounding can hide it when the
    # entries dwarf the bound, hence the max with 1).
    rho = max(int(active.sum()), 1)
    theta = (cumsum[rho - 1] - bound) / rho
    return (s - theta).clamp(min=0)


def project_psd_trace(D: Tensor, bound: float) -> Tensor:
    """Frobenius projection of a square matrix onto ``{D symmetric PSD, tr(D) <= bound}``: symmetrise,
    eigendecompose, project the eigenvalues onto the capped simplex."""
    if bound <= 0:
        raise ValueError(f"the trace bound must be positive, got {bound}")
    if not bool(torch.isfinite(D).all()):
        raise FloatingPointError("cannot project: the matrix has non-finite entries (the step size is too large)")
    sym = (D + D.T) / 2
    evals, evecs = torch.linalg.eigh(sym)
    s = project_capped_simplex(evals, bound)
    return (evecs * s) @ evecs.T


# --------------------------------------------------------------------------------------------------------------
# Sufficient statistics: batched d-space form used by the experiments
# --------------------------------------------------------------------------------------------------------------


@dataclass
class TaskStats:
    """Per-task sufficient statistics of a batch of K tasks: ``C = X^T X`` (K, d, d), ``b = X^T y`` (K, d),
    ``yy = y^T y`` (K,), ``n`` (K,). Everything ridge regression and the meta-objective need."""

    C: Tensor
    b: Tensor
    yy: Tensor
    n: Tensor

    @classmethod
    def from_tasks(cls, tasks: list[tuple[Tensor, Tensor]]) -> TaskStats:
        return cls(
            C=torch.stack([X.T @ X for X, _ in tasks]),
            b=torch.stack([X.T @ y for X, y in tasks]),
            yy=torch.stack([y @ y for _, y in tasks]),
            n=torch.tensor([float(X.shape[0]) for X, _ in tasks], dtype=tasks[0][0].dtype,
                           device=tasks[0][0].device),
        )

    def __len__(self) -> int:
        return self.n.shape[0]

    def __getitem__(self, index) -> TaskStats:
        if isinstance(index, int):
            index = slice(index, index + 1)
        return TaskStats(self.C[index], self.b[index], self.yy[index], self.n[index])


def _solve_stats(D: Tensor, stats: TaskStats) -> tuple[Tensor, Tensor]:
    """``A = C D + n I`` and ``p = A^{-1} b = X^T M^{-1} y`` (push-through identity), batched over tasks."""
    eye = torch.eye(D.shape[0], dtype=D.dtype, device=D.device)
    A = stats.C @ D + stats.n[:, None, None] * eye
    p = torch.linalg.solve(A, stats.b.unsqueeze(-1)).squeeze(-1)
    return A, p


def batched_weights(D: Tensor, stats: TaskStats) -> Tensor:
    """Ridge weights ``w_k = D X_k^T M_k^{-1} y_k = D p_k`` for every task, shape (K, d)."""
    _, p = _solve_stats(D, stats)
    return p @ D.T


def batched_loss_and_grad(D: Tensor, stats: TaskStats, grad: bool = True) -> tuple[Tensor, Tensor | None]:
    """Per-task meta-losses (K,) and gradients (K, d, d), without forming any n x n matrix.

    With ``a = M^{-1} y = (y - X D p) / n`` the loss ``n ||a||^2`` expands into statistics only, and
    ``X^T M^{-2} y = A^{-1} p``, so the paper's gradient is ``-n (p q^T + q p^T)`` with ``q = A^{-1} p``.
    """
    A, p = _solve_stats(D, stats)
    Dp = p @ D.T
    quad = torch.einsum("ki,kij,kj->k", Dp, stats.C, Dp)
    loss = (stats.yy - 2 * (stats.b * Dp).sum(-1) + quad) / stats.n
    if not grad:
        return loss, None
    q = torch.linalg.solve(A, p.unsqueeze(-1)).squeeze(-1)
    outer = p.unsqueeze(-1) * q.unsqueeze(-2)
    return loss, -stats.n[:, None, None] * (outer + outer.transpose(-1, -2))


# --------------------------------------------------------------------------------------------------------------
# The three methods
# --------------------------------------------------------------------------------------------------------------


def initial_representation(dim: int, bound: float, dtype=torch.float64, device=None) -> Tensor:
    """Starting point of both LTL methods: the identity, projected onto the constraint set."""
    return project_psd_trace(torch.eye(dim, dtype=dtype, device=device), bound)


class OnlineLTL:
    """Online learning-to-learn: one projected stochastic gradient step per task, then forget the task.

    Keeps only the current iterate and the running sum of iterates (memory O(d^2), independent of the number of
    tasks). ``average`` is the paper's output: the mean of the iterates ``D_1..D_t`` at which the gradients of the
    ``t`` observed tasks were taken.
    """

    def __init__(self, dim: int, lam: float, c: float, dtype=torch.float64, device=None):
        if lam <= 0 or c <= 0:
            raise ValueError(f"lambda and c must be positive, got lambda={lam}, c={c}")
        self.bound = 1.0 / lam
        self.c = c
        self.D = initial_representation(dim, self.bound, dtype, device)
        self.D_sum = torch.zeros_like(self.D)
        self.t = 0

    def step_size(self) -> float:
        return self.c / math.sqrt(self.t)

    def observe(self, task: TaskStats) -> None:
        """Take the step for one task (``task`` holds a single task's statistics)."""
        self.t += 1
        self.D_sum += self.D
        _, g = batched_loss_and_grad(self.D, task)
        self.D = project_psd_trace(self.D - self.step_size() * g[0], self.bound)

    @property
    def average(self) -> Tensor:
        if self.t == 0:
            return self.D
        return self.D_sum / self.t


def batch_ltl(
    stats: TaskStats,
    lam: float,
    D0: Tensor | None = None,
    max_iter: int = 500,
    tol: float = 1e-7,
) -> tuple[Tensor, int]:
    """Batch learning-to-learn: minimise the mean meta-loss over all given tasks on ``{PSD, tr <= 1/lam}``
    by projected gradient descent with backtracking (the step halves until the quadratic upper bound holds,
    and is tried twice as large at the next iteration). ``D0`` warm-starts it. Returns ``(D, iterations)``."""
    bound = 1.0 / lam
    dim = stats.C.shape[-1]
    D = initial_representation(dim, bound, stats.C.dtype, stats.C.device) if D0 is None else D0
    step = 1.0

    def objective_and_grad(M: Tensor, grad: bool = True):
        loss, g = batched_loss_and_grad(M, stats, grad)
        return loss.mean(), (g.mean(0) if grad else None)

    obj, g = objective_and_grad(D)
    for it in range(1, max_iter + 1):
        while True:
            candidate = project_psd_trace(D - step * g, bound)
            diff = candidate - D
            cand_obj, _ = objective_and_grad(candidate, grad=False)
            if cand_obj <= obj + (g * diff).sum() + (diff * diff).sum() / (2 * step) or step < 1e-20:
                break
            step /= 2
        D = candidate
        previous = obj
        obj, g = objective_and_grad(D)
        if abs(float(previous - obj)) <= tol * max(abs(float(previous)), 1e-30):
            return D, it
        step *= 2
    return D, max_iter


def itl_representation(dim: int, lam: float, dtype=torch.float64, device=None) -> Tensor:
    """Independent task learning: ridge regression ``(1/n)||Xw - y||^2 + lam ||w||^2`` is ``D = I / lam``."""
    return torch.eye(dim, dtype=dtype, device=device) / lam
