"""The hand-engineered optimisers the paper compares with, run on a whole problem set at once, and their tuning.

Table 1 of the paper writes each as a fixed update formula with a step size gamma (no line search), and the paper
tunes "the best hyperparameter settings on the training set"; conjugate gradient and L-BFGS "diverge" on the
non-convex families, which only a fixed step can do. So the compared versions take a fixed, tuned step:

* ``gd``:        x <- x - gamma g
* ``momentum``:  v <- alpha v - gamma g,  x <- x + v
* ``cg``:        Fletcher-Reeves: d <- -g + (|g|^2 / |g_prev|^2) d,  x <- x + gamma d, restarted (d <- -g)
                 every n iterations (n parameters; ours: without restarts the fixed-step recursion blows up
                 near the optimum even on convex problems)
* ``lbfgs``:     x <- x - gamma H g, H the L-BFGS inverse-Hessian estimate (two-loop recursion, memory m, initial
                 scaling s'y / y'y; a pair with s'y <= 0 is skipped)

``scipy_cg`` and ``scipy_lbfgs`` are scipy.optimize's versions with their Wolfe line searches (several function
evaluations per iteration), shown as a reference only. Every run returns the objective at x0 and after each
iteration, ``[P, iterations + 1]``; a problem whose iterate becomes non-finite is frozen and scores +inf from then on.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from scipy import optimize

from reproductions.learning_to_optimize.problems import ProblemSet

FIXED_STEP = ("gd", "momentum", "cg", "lbfgs")
SCIPY = ("scipy_cg", "scipy_lbfgs")


def _run(problems: ProblemSet, iterations: int, update) -> torch.Tensor:
    """Drive ``update(x, g, state) -> x_new`` from every problem's x0; returns the objective curve [P, iters + 1]."""
    x = problems.x0[:, None, :].clone()
    f, g = problems.value_and_grad(x)
    curve = [f[:, 0]]
    alive = torch.isfinite(f[:, 0])
    state: dict = {}
    for _ in range(iterations):
        x_new = update(x, g, state)
        f_new, g_new = problems.value_and_grad(x_new)
        ok = alive & torch.isfinite(f_new[:, 0]) & torch.isfinite(x_new).all(-1)[:, 0]
        alive = ok
        x = torch.where(ok[:, None, None], x_new, x)
        g = torch.where(ok[:, None, None], g_new, torch.zeros_like(g))  # a dead problem stops moving
        curve.append(torch.where(ok, f_new[:, 0], torch.full_like(f_new[:, 0], float("inf"))))
    return torch.stack(curve, 1)


def gd(problems: ProblemSet, iterations: int, step: float) -> torch.Tensor:
    return _run(problems, iterations, lambda x, g, s: x - step * g)


def momentum(problems: ProblemSet, iterations: int, step: float, decay: float) -> torch.Tensor:
    def update(x, g, s):
        s["v"] = decay * s.get("v", torch.zeros_like(x)) - step * g
        return x + s["v"]

    return _run(problems, iterations, update)


def cg(problems: ProblemSet, iterations: int, step: float) -> torch.Tensor:
    n = problems.dim

    def update(x, g, s):
        gg = (g * g).sum(-1, keepdim=True)
        s["i"] = s.get("i", -1) + 1
        if s["i"] % n:  # restart with -g every n iterations (standard practice; ours, the paper does not say)
            beta = gg / s["gg"].clamp_min(1e-300)
            s["d"] = -g + beta * s["d"]
        else:
            s["d"] = -g
        s["gg"] = gg
        return x + step * s["d"]

    return _run(problems, iterations, update)


def lbfgs_direction(g: torch.Tensor, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """-H g by the two-loop recursion, batched over leading dimensions; ``pairs`` oldest first (s, y), each
    masked to zero where a problem skipped that pair."""
    q = g.clone()
    alphas = []
    for s, y in reversed(pairs):
        sy = (s * y).sum(-1, keepdim=True)
        rho = torch.where(sy > 0, 1.0 / sy.clamp_min(1e-300), torch.zeros_like(sy))
        a = rho * (s * q).sum(-1, keepdim=True)
        q = q - a * y
        alphas.append((a, rho))
    if pairs:
        s, y = pairs[-1]
        sy, yy = (s * y).sum(-1, keepdim=True), (y * y).sum(-1, keepdim=True)
        q = q * torch.where(sy > 0, sy / yy.clamp_min(1e-300), torch.ones_like(sy))
    for (s, y), (a, rho) in zip(pairs, reversed(alphas)):
        b = rho * (y * q).sum(-1, keepdim=True)
        q = q + s * (a - b)
    return -q


def lbfgs(problems: ProblemSet, iterations: int, step: float, memory: int = 10) -> torch.Tensor:
    def update(x, g, s):
        if "x" in s:
            ds, dy = x - s["x"], g - s["g"]
            ok = ((ds * dy).sum(-1, keepdim=True) > 1e-12).to(x.dtype)  # skip pairs without positive curvature
            s["pairs"] = (s["pairs"] + [(ds * ok, dy * ok)])[-memory:]
        s.setdefault("pairs", [])
        s["x"], s["g"] = x, g
        return x + step * lbfgs_direction(g, s["pairs"])

    return _run(problems, iterations, update)


def scipy_curve(problems: ProblemSet, iterations: int, method: str) -> torch.Tensor:
    """scipy.optimize's CG or L-BFGS-B (with line search) per problem; objective after each iteration, padded with
    the last value when it stops early."""
    curves = []
    for i in range(problems.n_problems):
        one = problems.subset(slice(i, i + 1))

        def fun(v):
            f, g = one.value_and_grad(torch.tensor(v, dtype=problems.x0.dtype, device=problems.x0.device)[None, None])
            return float(f), g[0, 0].cpu().numpy().astype(np.float64)

        start = one.x0[0].cpu().numpy()
        values = [fun(start)[0]]
        optimize.minimize(fun, start, jac=True, method=method,
                          callback=lambda xk: values.append(fun(xk)[0]),
                          options={"maxiter": iterations, "gtol": 1e-12} if method == "CG"
                          else {"maxiter": iterations, "gtol": 1e-12, "ftol": 1e-15})
        values = values[:iterations + 1]
        curves.append(values + [values[-1]] * (iterations + 1 - len(values)))
    return torch.tensor(curves, dtype=problems.x0.dtype, device=problems.x0.device)


def run(name: str, problems: ProblemSet, iterations: int, hyper: dict) -> torch.Tensor:
    if name == "gd":
        return gd(problems, iterations, hyper["step"])
    if name == "momentum":
        return momentum(problems, iterations, hyper["step"], hyper["decay"])
    if name == "cg":
        return cg(problems, iterations, hyper["step"])
    if name == "lbfgs":
        return lbfgs(problems, iterations, hyper["step"], int(hyper.get("memory", 10)))
    if name == "scipy_cg":
        return scipy_curve(problems, iterations, "CG")
    if name == "scipy_lbfgs":
        return scipy_curve(problems, iterations, "L-BFGS-B")
    raise ValueError(f"unknown optimiser {name!r}; choose from {', '.join(FIXED_STEP + SCIPY)}")


def score(curve: torch.Tensor) -> torch.Tensor:
    """Per-problem tuning score: the mean objective over the run (area under the curve / length); +inf if it
    diverged."""
    s = curve.mean(-1)
    return torch.where(torch.isfinite(s), s, torch.full_like(s, float("inf")))


def grid(name: str, steps: list[float], decays: list[float], memory: int) -> list[dict]:
    if name == "momentum":
        return [{"step": s, "decay": a} for s, a in itertools.product(steps, decays)]
    if name == "lbfgs":
        return [{"step": s, "memory": memory} for s in steps]
    return [{"step": s} for s in steps]


def tune(name: str, problems: ProblemSet, iterations: int, steps: list[float], decays: list[float],
         memory: int = 10) -> dict:
    """The setting with the lowest mean score over all of ``problems`` (the training set only)."""
    if name in SCIPY:
        return {}
    best, best_score = None, float("inf")
    for hyper in grid(name, steps, decays, memory):
        s = float(score(run(name, problems, iterations, hyper)).mean())
        if best is None or s < best_score:
            best, best_score = hyper, s
    return best


def tune_momentum_per_problem(problems: ProblemSet, iterations: int, steps: list[float],
                              decays: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's initial target trajectories: for *each* training function, the step size and momentum decay of
    noiseless momentum with the lowest summed objective over ``iterations`` steps. Returns (steps [P], decays [P])."""
    best = torch.full((problems.n_problems,), float("inf"), dtype=problems.x0.dtype, device=problems.x0.device)
    best_step = torch.zeros_like(best)
    best_decay = torch.zeros_like(best)
    for s, a in itertools.product(steps, decays):
        sc = score(momentum(problems, iterations, s, a))
        better = sc < best
        best = torch.where(better, sc, best)
        best_step = torch.where(better, torch.full_like(best, s), best_step)
        best_decay = torch.where(better, torch.full_like(best, a), best_decay)
    return best_step, best_decay
