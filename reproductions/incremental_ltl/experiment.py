"""The paper's experiment: error on new (test) tasks as the number of observed training tasks grows, for online
LTL, batch LTL and independent task learning (ITL), hyper-parameters chosen on validation tasks.

For every checkpoint ``T`` (number of training tasks seen so far) each method keeps the hyper-parameters that
score best on the validation tasks, and reports the mean score over the test tasks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from .data import (
    Split,
    SyntheticEnvironment,
    load_schools,
    resolve_schools_path,
    scale_by_max_abs,
    schools_split,
    synthetic_split,
)
from .ltl import OnlineLTL, batch_ltl, itl_representation

METHODS = ("online_ltl", "batch_ltl", "itl")
HIGHER_IS_BETTER = {"mse": False, "explained_variance": True}


@dataclass
class MethodRun:
    """One method on one split, for one metric: test and validation scores per checkpoint, the hyper-parameters
    chosen on the validation tasks, the ones among them that sit on an edge of their grid (per checkpoint), and
    the time the method took over its whole hyper-parameter grid."""

    test: list[float] = field(default_factory=list)
    val: list[float] = field(default_factory=list)
    chosen: list[dict] = field(default_factory=list)
    edges: list[list[str]] = field(default_factory=list)
    seconds: float = 0.0


class GridEdgeError(ValueError):
    """A hyper-parameter chosen on the validation tasks lies on an edge of its grid (config ``grid_edge: error``)."""


# A candidate: ({metric: (validation score, test score)}, hyper-parameters).
Candidate = tuple[dict[str, tuple[float, float]], dict]
TIE = 1e-6  # relative: validation scores this close to the best count as equally good


def _scores(D: torch.Tensor, split: Split, metrics) -> dict[str, tuple[float, float]]:
    return {m: (float(split.val.scores(D, m).mean()), float(split.test.scores(D, m).mean())) for m in metrics}


def _best(candidates: list[Candidate], metric: str) -> Candidate:
    """The candidate with the best validation score (the first in grid order among equals)."""
    sign = -1.0 if HIGHER_IS_BETTER[metric] else 1.0
    return min(candidates, key=lambda c: sign * c[0][metric][0])


def grid_edges(candidates: list[Candidate], metric: str, grids: dict[str, list[float]]) -> list[str]:
    """The hyper-parameters of the best candidate that lie on an edge of their grid, as readable phrases.

    A value counts as on an edge only when every candidate that scores as well on validation (within a relative
    ``TIE``) has it on that edge too: where a plateau of equal scores reaches inside the grid, a larger or smaller
    value was tried and was no better. A value whose neighbour beyond it diverged was tried too, so it is inside.
    Grids of one value are fixed settings, not tuned, and are not checked."""
    chosen = _best(candidates, metric)
    best = chosen[0][metric][0]
    tied = [h for s, h in candidates if abs(s[metric][0] - best) <= TIE * max(1.0, abs(best))]
    out = []
    for key, grid in grids.items():
        lo, hi = min(grid), max(grid)
        if lo == hi or any(lo < h[key] < hi for h in tied):
            continue
        side = "lower" if chosen[1][key] == lo else "upper"
        out.append(f"{key}={chosen[1][key]:g} at the {side} end of its grid [{lo:g}, {hi:g}]")
    return out


def _runs(per_checkpoint: list[list[Candidate]], metrics, grids: dict, seconds: float) -> dict[str, MethodRun]:
    """For every metric, the validation-best candidate at every checkpoint (each metric picks on its own)."""
    out = {}
    for metric in metrics:
        run = MethodRun(seconds=seconds)
        for candidates in per_checkpoint:
            scores, hyper = _best(candidates, metric)
            run.val.append(scores[metric][0])
            run.test.append(scores[metric][1])
            run.chosen.append(hyper)
            run.edges.append(grid_edges(candidates, metric, grids))
        out[metric] = run
    return out


def run_itl(split: Split, lambdas, checkpoints, metrics) -> dict[str, MethodRun]:
    """Ridge regression on each test task alone; the same for every T (no transfer)."""
    start = time.perf_counter()
    candidates = [(_scores(itl_representation(split.dim, lam, split.train.C.dtype, split.train.C.device),
                           split, metrics), {"lambda": lam}) for lam in lambdas]
    return _runs([candidates] * len(checkpoints), metrics, {"lambda": lambdas}, time.perf_counter() - start)


def run_online(split: Split, lambdas, step_constants, checkpoints, metrics) -> dict[str, MethodRun]:
    """One pass over the training tasks per (lambda, c); the averaged iterate is scored at every checkpoint."""
    start = time.perf_counter()
    per_checkpoint: list[list[Candidate]] = [[] for _ in checkpoints]
    for lam in lambdas:
        for c in step_constants:
            learner = OnlineLTL(split.dim, lam, c, split.train.C.dtype, split.train.C.device)
            for t in range(checkpoints[-1]):
                try:
                    learner.observe(split.train[t])
                except (FloatingPointError, torch.linalg.LinAlgError):
                    break  # this step constant diverges: it cannot be chosen at this or any later checkpoint
                if t + 1 in checkpoints:
                    i = checkpoints.index(t + 1)
                    per_checkpoint[i].append((_scores(learner.average, split, metrics), {"lambda": lam, "c": c}))
    grids = {"lambda": lambdas, "c": step_constants}
    return _runs(per_checkpoint, metrics, grids, time.perf_counter() - start)


def run_batch(split: Split, lambdas, checkpoints, metrics, max_iter: int, tol: float) -> dict[str, MethodRun]:
    """Re-solve the batch problem on the first T tasks at each checkpoint (warm-started from the previous T)."""
    start = time.perf_counter()
    per_checkpoint: list[list[Candidate]] = [[] for _ in checkpoints]
    for lam in lambdas:
        D = None
        for i, T in enumerate(checkpoints):
            D, _ = batch_ltl(split.train[:T], lam, D0=D, max_iter=max_iter, tol=tol)
            per_checkpoint[i].append((_scores(D, split, metrics), {"lambda": lam}))
    return _runs(per_checkpoint, metrics, {"lambda": lambdas}, time.perf_counter() - start)


COMMON_KEYS = {
    "benchmark": str, "metric": str, "seeds": int, "first_seed": int, "dtype": str, "n_train_tasks": int,
    "n_val_tasks": int, "checkpoints": list, "itl_lambdas": list, "online_lambdas": list, "step_constants": list,
    "batch_lambdas": list, "batch_max_iter": int, "batch_tol": float, "grid_edge": str,
}
BENCHMARK_KEYS = {
    "synthetic": {"dim": int, "rank": int, "noise_std": float, "norm_range": list, "n_points": int,
                  "n_heldout": int, "n_test_tasks": int},
    "schools": {"data_path": (str, type(None)), "train_fraction": float, "scale_features": bool},
}
OPTIONAL_KEYS = {"threads": int, "notes": str, "extra_metrics": list}


def check_config(config: dict) -> dict:
    """A checked copy of a config: every setting present, of the right type (YAML reads ``1e3`` as text, so
    numbers are converted), no unknown keys. Raises ``ValueError`` naming the setting."""
    benchmark = config.get("benchmark")
    if benchmark not in BENCHMARK_KEYS:
        raise ValueError(f"setting 'benchmark' must be one of {', '.join(BENCHMARK_KEYS)}, got {benchmark!r}")
    expected = {**COMMON_KEYS, **BENCHMARK_KEYS[benchmark]}
    unknown = set(config) - set(expected) - set(OPTIONAL_KEYS)
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(sorted(unknown))} for the {benchmark} benchmark")
    cfg = {}
    for key, kind in {**expected, **{k: v for k, v in OPTIONAL_KEYS.items() if k in config}}.items():
        if key not in config:
            raise ValueError(f"setting {key!r} is missing")
        value = config[key]
        try:
            if kind is float:
                value = float(value)
            elif kind is int:
                if isinstance(value, bool) or float(value) != int(float(value)):
                    raise ValueError
                value = int(float(value))
            elif kind is list:
                if not isinstance(value, list) or not value:
                    raise ValueError
                if key == "extra_metrics":
                    if not all(isinstance(v, str) for v in value):
                        raise ValueError
                else:
                    numbers = [float(v) for v in value]
                    value = [int(v) for v in numbers] if key in ("checkpoints", "norm_range") else numbers
            elif not isinstance(value, kind):
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError(f"setting {key!r} has an invalid value {config[key]!r}") from None
        cfg[key] = value
    for metric in [cfg["metric"], *cfg.get("extra_metrics", [])]:
        if metric not in HIGHER_IS_BETTER:
            raise ValueError(f"setting 'metric' and 'extra_metrics' take {', '.join(HIGHER_IS_BETTER)}, got {metric!r}")
    if cfg["grid_edge"] not in ("error", "warn"):
        raise ValueError(f"setting 'grid_edge' must be error or warn, got {cfg['grid_edge']!r}")
    if cfg["dtype"] not in ("float64", "float32"):
        raise ValueError(f"setting 'dtype' must be float64 or float32, got {cfg['dtype']!r}")
    for key in ("itl_lambdas", "online_lambdas", "batch_lambdas", "step_constants"):
        if min(cfg[key]) <= 0:
            raise ValueError(f"setting {key!r} must hold positive numbers, got {cfg[key]}")
    checkpoints = cfg["checkpoints"]
    if checkpoints != sorted(set(checkpoints)) or checkpoints[0] < 1 or checkpoints[-1] > cfg["n_train_tasks"]:
        raise ValueError(f"setting 'checkpoints' must increase from 1 to n_train_tasks={cfg['n_train_tasks']}, "
                         f"got {checkpoints}")
    if cfg["seeds"] < 1:
        raise ValueError(f"setting 'seeds' must be at least 1, got {cfg['seeds']}")
    return cfg


def make_split(cfg: dict, seed: int, dtype, device, schools_tasks=None) -> Split:
    rng = np.random.default_rng(seed)
    if cfg["benchmark"] == "synthetic":
        env = SyntheticEnvironment(cfg["dim"], cfg["rank"], cfg["noise_std"], tuple(cfg["norm_range"]))
        return synthetic_split(rng, env, cfg["n_train_tasks"], cfg["n_val_tasks"], cfg["n_test_tasks"],
                               cfg["n_points"], cfg["n_heldout"], dtype, device)
    if cfg["benchmark"] == "schools":
        return schools_split(rng, schools_tasks, cfg["n_train_tasks"], cfg["n_val_tasks"], cfg["train_fraction"],
                             dtype, device)
    raise ValueError(f"unknown benchmark {cfg['benchmark']!r}; use 'synthetic' or 'schools'")


def metrics_of(cfg: dict) -> list[str]:
    """The config's metric first, then its extra metrics; each selects its own hyper-parameters."""
    return list(dict.fromkeys([cfg["metric"], *cfg.get("extra_metrics", [])]))


def run_split(split: Split, cfg: dict) -> dict[str, dict[str, MethodRun]]:
    """``{metric: {method: MethodRun}}`` for one split."""
    checkpoints = list(cfg["checkpoints"])
    metrics = metrics_of(cfg)
    by_method = {
        "online_ltl": run_online(split, cfg["online_lambdas"], cfg["step_constants"], checkpoints, metrics),
        "batch_ltl": run_batch(split, cfg["batch_lambdas"], checkpoints, metrics, cfg["batch_max_iter"],
                               cfg["batch_tol"]),
        "itl": run_itl(split, cfg["itl_lambdas"], checkpoints, metrics),
    }
    return {m: {method: by_method[method][m] for method in METHODS} for m in metrics}


def edges_at_last_checkpoint(run: dict[str, dict[str, MethodRun]]) -> list[str]:
    """Every chosen hyper-parameter of one split that is on an edge of its grid at the last checkpoint."""
    return [f"{method} ({metric}): {edge}" for metric, methods in run.items() for method, r in methods.items()
            for edge in r.edges[-1]]


def run_experiment(cfg: dict, device: torch.device, progress: bool = True
                   ) -> tuple[list[dict[str, dict[str, MethodRun]]], int]:
    """Every seed of the experiment: one ``{metric: {method: MethodRun}}`` per seed, and the number of test tasks.

    With ``grid_edge: error`` the run stops at the first seed whose chosen hyper-parameters (at the last checkpoint)
    lie on an edge of their grid, naming them: widen the grid. With ``warn`` it goes on, and the records say so."""
    cfg = check_config(cfg)
    dtype = {"float64": torch.float64, "float32": torch.float32}[cfg["dtype"]]
    if dtype == torch.float64 and device.type == "mps":
        raise ValueError("Apple MPS has no float64; run with --set dtype=float32 or on the CPU")
    schools_tasks = None
    if cfg["benchmark"] == "schools":
        schools_tasks = load_schools(resolve_schools_path(cfg["data_path"]))
        if cfg["scale_features"]:
            schools_tasks = scale_by_max_abs(schools_tasks)
    seeds = range(cfg["first_seed"], cfg["first_seed"] + cfg["seeds"])
    runs, n_test = [], 0
    for seed in tqdm(seeds, desc=f"{cfg['benchmark']} seeds", disable=not progress):
        split = make_split(cfg, seed, dtype, device, schools_tasks)
        n_test = len(split.test)
        runs.append(run_split(split, cfg))
        edges = edges_at_last_checkpoint(runs[-1])
        if edges and cfg["grid_edge"] == "error":
            raise GridEdgeError(f"seed {seed}: chosen on a grid edge: {'; '.join(edges)}. Widen the grid in the config "
                                "(or set grid_edge: warn to record it anyway)")
    return runs, n_test
