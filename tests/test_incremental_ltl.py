"""Incremental learning-to-learn (Denevi et al. 2018): the projection, the meta-gradient and the online update
against hand computations and float64 references, the data loaders, and smoke runs on every available device."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reproductions.incremental_ltl.ltl import (
    OnlineLTL,
    TaskStats,
    batch_ltl,
    batched_loss_and_grad,
    batched_weights,
    meta_gradient,
    meta_loss,
    project_capped_simplex,
    project_psd_trace,
    ridge_weights,
)

F64 = torch.float64


def random_task(rng: np.random.Generator, n: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.tensor(rng.standard_normal((n, d)), dtype=F64), torch.tensor(rng.standard_normal(n), dtype=F64))


def random_psd(rng: np.random.Generator, d: int, rank: int | None = None) -> torch.Tensor:
    A = torch.tensor(rng.standard_normal((d, rank or d)), dtype=F64)
    return A @ A.T / d


# ---------------------------------------------------------------------------------------------------- projection


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), d=st.integers(1, 7), bound=st.floats(0.01, 20.0), scale=st.floats(0.01, 30.0))
def test_projection_lands_on_the_constraint_set_and_is_the_nearest_point(seed, d, bound, scale):
    rng = np.random.default_rng(seed)
    D = torch.tensor(rng.standard_normal((d, d)) * scale, dtype=F64)  # not even symmetric
    P = project_psd_trace(D, bound)
    assert torch.allclose(P, P.T, atol=1e-12)
    assert torch.linalg.eigvalsh(P).min() >= -1e-10 * max(1.0, scale)
    assert torch.trace(P) <= bound * (1 + 1e-10)
    # Projection onto a convex set: <D - P, F - P> <= 0 for every feasible F (checked on random feasible F).
    for _ in range(5):
        F = random_psd(rng, d, rank=int(rng.integers(1, d + 1)))
        F = F * (float(rng.uniform(0, bound)) / max(float(torch.trace(F)), 1e-12))
        assert float(((D - P) * (F - P)).sum()) <= 1e-8 * max(1.0, scale**2)
    assert torch.allclose(project_psd_trace(P, bound), P, atol=1e-10)  # idempotent


def test_projection_by_hand():
    # Already feasible: unchanged.
    D = torch.diag(torch.tensor([0.5, 0.25], dtype=F64))
    assert torch.allclose(project_psd_trace(D, 1.0), D)
    # Negative eigenvalue clipped, trace within the bound.
    assert torch.allclose(project_psd_trace(torch.diag(torch.tensor([0.6, -2.0], dtype=F64)), 1.0),
                          torch.diag(torch.tensor([0.6, 0.0], dtype=F64)))
    # Eigenvalues (3, 1) with bound 2: shift by theta = 1 -> (2, 0); in a rotated basis too.
    c, s = np.cos(0.3), np.sin(0.3)
    R = torch.tensor([[c, -s], [s, c]], dtype=F64)
    P = project_psd_trace(R @ torch.diag(torch.tensor([3.0, 1.0], dtype=F64)) @ R.T, 2.0)
    assert torch.allclose(P, R @ torch.diag(torch.tensor([2.0, 0.0], dtype=F64)) @ R.T, atol=1e-12)
    # Capped simplex: (5, 3, -1) with bound 4 -> theta = 2 -> (3, 1, 0).
    assert torch.allclose(project_capped_simplex(torch.tensor([5.0, 3.0, -1.0], dtype=F64), 4.0),
                          torch.tensor([3.0, 1.0, 0.0], dtype=F64))
    with pytest.raises(ValueError):
        project_psd_trace(D, 0.0)
    with pytest.raises(FloatingPointError):
        project_psd_trace(torch.full((2, 2), float("nan"), dtype=F64), 1.0)


# ------------------------------------------------------------------------------------------- meta-loss, gradient


def test_ridge_weights_minimise_the_regularised_problem():
    rng = np.random.default_rng(0)
    X, y = random_task(rng, 6, 4)
    D = random_psd(rng, 4)
    w = ridge_weights(D, X, y)
    # Stationarity of (1/n)||Xw - y||^2 + <w, D^{-1} w> (D invertible here).
    grad = 2 / 6 * X.T @ (X @ w - y) + 2 * torch.linalg.solve(D, w)
    assert grad.abs().max() < 1e-12
    # The meta-loss is the training error of those weights.
    assert torch.isclose(meta_loss(D, X, y), ((X @ w - y) ** 2).mean())


def test_gradient_and_online_step_by_hand():
    # d = n = 1: x = 2, y = 3, D = 0.5 -> M = x^2 D + n = 3, loss = n (y/M)^2 = 1,
    # gradient = -n x^2 (2 y^2 / M^3) = -2 * 4 * 9 / 27 = -8/3.
    X, y, D = torch.tensor([[2.0]], dtype=F64), torch.tensor([3.0], dtype=F64), torch.tensor([[0.5]], dtype=F64)
    assert torch.isclose(meta_loss(D, X, y), torch.tensor(1.0, dtype=F64))
    assert torch.isclose(meta_gradient(D, X, y)[0, 0], torch.tensor(-8 / 3, dtype=F64))
    # One online step with c = 0.3 from D_1 = 0.5 (bound 10): D_2 = 0.5 + 0.3 / sqrt(1) * 8/3 = 1.3 ...
    learner = OnlineLTL(1, lam=0.1, c=0.3)
    learner.D = D.clone()
    learner.observe(TaskStats.from_tasks([(X, y)]))
    assert torch.isclose(learner.D[0, 0], torch.tensor(1.3, dtype=F64))
    # ... which the bound 1 (lambda = 1) cuts back to the trace bound.
    learner = OnlineLTL(1, lam=1.0, c=0.3)
    learner.D = D.clone()
    learner.observe(TaskStats.from_tasks([(X, y)]))
    assert torch.isclose(learner.D[0, 0], torch.tensor(1.0, dtype=F64))
    assert torch.isclose(learner.average[0, 0], torch.tensor(0.5, dtype=F64))  # mean of the iterates D_1 only


def test_gradient_matches_explicit_inverse_formula_autograd_and_finite_differences():
    rng = np.random.default_rng(1)
    X, y = random_task(rng, 7, 5)
    D = random_psd(rng, 5, rank=3)  # singular, as learned representations are
    G = meta_gradient(D, X, y)
    # The paper's formula with explicit inverses, in NumPy float64.
    Xn, yn, Dn = X.numpy(), y.numpy()[:, None], D.numpy()
    Minv = np.linalg.inv(Xn @ Dn @ Xn.T + 7 * np.eye(7))
    expected = -7 * Xn.T @ Minv @ (yn @ yn.T @ Minv + Minv @ yn @ yn.T) @ Minv @ Xn
    assert np.allclose(G.numpy(), expected, atol=1e-13)
    # Autograd (its gradient is over all matrices; on symmetric ones the symmetric part is what counts).
    Dg = D.clone().requires_grad_(True)
    meta_loss(Dg, X, y).backward()
    assert torch.allclose((Dg.grad + Dg.grad.T) / 2, G, atol=1e-13)
    # Central finite differences along a random symmetric direction.
    E = torch.tensor(rng.standard_normal((5, 5)), dtype=F64)
    E = (E + E.T) / 2
    h = 1e-6
    fd = (meta_loss(D + h * E, X, y) - meta_loss(D - h * E, X, y)) / (2 * h)
    assert torch.isclose(fd, (G * E).sum(), rtol=1e-6)


def test_sufficient_statistics_form_matches_the_paper_formulas_on_tasks_of_different_sizes():
    rng = np.random.default_rng(2)
    tasks = [random_task(rng, n, 4) for n in (2, 5, 9)]  # fewer and more points than dimensions
    D = random_psd(rng, 4, rank=2)
    stats = TaskStats.from_tasks(tasks)
    losses, grads = batched_loss_and_grad(D, stats)
    weights = batched_weights(D, stats)
    for k, (X, y) in enumerate(tasks):
        assert torch.isclose(losses[k], meta_loss(D, X, y), rtol=1e-10)
        assert torch.allclose(grads[k], meta_gradient(D, X, y), atol=1e-12)
        assert torch.allclose(weights[k], ridge_weights(D, X, y), atol=1e-12)
    assert len(stats[1:]) == 2 and torch.equal(stats[1].C[0], stats.C[1])


def test_batch_ltl_decreases_the_objective_and_stays_feasible():
    rng = np.random.default_rng(3)
    stats = TaskStats.from_tasks([random_task(rng, 6, 4) for _ in range(10)])
    start = torch.eye(4, dtype=F64) / 4
    D, iterations = batch_ltl(stats, lam=0.5, D0=start, max_iter=200, tol=1e-10)
    before = batched_loss_and_grad(start, stats, grad=False)[0].mean()
    after = batched_loss_and_grad(D, stats, grad=False)[0].mean()
    assert after < before and iterations >= 1
    assert torch.trace(D) <= 2.0 + 1e-9 and torch.linalg.eigvalsh(D).min() > -1e-10
    # Optimality on the convex problem: projected gradient step is a fixed point (up to tolerance).
    _, g = batched_loss_and_grad(D, stats)
    assert torch.allclose(project_psd_trace(D - 0.1 * g.mean(0), 2.0), D, atol=1e-4)


def test_online_ltl_keeps_only_the_current_iterate_and_the_running_sum():
    rng = np.random.default_rng(4)
    tasks = TaskStats.from_tasks([random_task(rng, 5, 3) for _ in range(6)])
    learner = OnlineLTL(3, lam=0.5, c=1.0)
    iterates = []
    for t in range(len(tasks)):
        iterates.append(learner.D.clone())
        learner.observe(tasks[t])
        assert torch.trace(learner.D) <= 2.0 + 1e-9
    assert torch.allclose(learner.average, torch.stack(iterates).mean(0), atol=1e-14)
    assert {k for k, v in vars(learner).items() if isinstance(v, torch.Tensor)} == {"D", "D_sum"}
