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
    """One method on one split: test and validation scores per checkpoint, the chosen hyper-parameters, and the
    time the method took over its whole hyper-parameter grid."""

    test: list[float] = field(default_factory=list)
    val: list[float] = field(default_factory=list)
    chosen: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _score(D: torch.Tensor, split: Split, metric: str) -> tuple[float, float]:
    return float(split.val.scores(D, metric).mean()), float(split.test.scores(D, metric).mean())


def _pick(candidates: list[tuple[float, float, dict]], metric: str) -> tuple[float, float, dict]:
    """The candidate ``(val, test, hyper)`` with the best validation score."""
    key = (lambda c: -c[0]) if HIGHER_IS_BETTER[metric] else (lambda c: c[0])
    return min(candidates, key=key)


def _record(run: MethodRun, best: tuple[float, float, dict]) -> None:
    run.val.append(best[0])
    run.test.append(best[1])
    run.chosen.append(best[2])


def run_itl(split: Split, lambdas, checkpoints, metric) -> MethodRun:
    """Ridge regression on each test task alone; the same for every T (no transfer)."""
    start = time.perf_counter()
    candidates = [(*_score(itl_representation(split.dim, lam, split.train.C.dtype, split.train.C.device),
                           split, metric), {"lambda": lam}) for lam in lambdas]
    best = _pick(candidates, metric)
    run = MethodRun(seconds=time.perf_counter() - start)
    for _ in checkpoints:
        _record(run, best)
    return run


def run_online(split: Split, lambdas, step_constants, checkpoints, metric) -> MethodRun:
    """One pass over the training tasks per (lambda, c); the averaged iterate is scored at every checkpoint."""
    start = time.perf_counter()
    per_checkpoint: list[list] = [[] for _ in checkpoints]
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
                    per_checkpoint[i].append((*_score(learner.average, split, metric), {"lambda": lam, "c": c}))
    run = MethodRun(seconds=time.perf_counter() - start)
    for candidates in per_checkpoint:
        _record(run, _pick(candidates, metric))
    return run


def run_batch(split: Split, lambdas, checkpoints, metric, max_iter: int, tol: float) -> MethodRun:
    """Re-solve the batch problem on the first T tasks at each checkpoint (warm-started from the previous T)."""
    start = time.perf_counter()
    per_checkpoint: list[list] = [[] for _ in checkpoints]
    for lam in lambdas:
        D = None
        for i, T in enumerate(checkpoints):
            D, _ = batch_ltl(split.train[:T], lam, D0=D, max_iter=max_iter, tol=tol)
            per_checkpoint[i].append((*_score(D, split, metric), {"lambda": lam}))
    run = MethodRun(seconds=time.perf_counter() - start)
    for candidates in per_checkpoint:
        _record(run, _pick(candidates, metric))
    return run


COMMON_KEYS = {
    "benchmark": str, "metric": str, "seeds": int, "first_seed": int, "dtype": str, "n_train_tasks": int,
    "n_val_tasks": int, "checkpoints": list, "itl_lambdas": list, "ltl_lambdas": list, "step_constants": list,
    "batch_max_iter": int, "batch_tol": float,
}
BENCHMARK_KEYS = {
    "synthetic": {"dim": int, "rank": int, "noise_std": float, "norm_range": list, "n_points": int,
                  "n_heldout": int, "n_test_tasks": int},
    "schools": {"data_path": (str, type(None)), "train_fraction": float, "scale_features": bool},
}
OPTIONAL_KEYS = {"threads": int, "notes": str}


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
                numbers = [float(v) for v in value]
                value = [int(v) for v in numbers] if key in ("checkpoints", "norm_range") else numbers
            elif not isinstance(value, kind):
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError(f"setting {key!r} has an invalid value {config[key]!r}") from None
        cfg[key] = value
    if cfg["metric"] not in HIGHER_IS_BETTER:
        raise ValueError(f"setting 'metric' must be one of {', '.join(HIGHER_IS_BETTER)}, got {cfg['metric']!r}")
    if cfg["dtype"] not in ("float64", "float32"):
        raise ValueError(f"setting 'dtype' must be float64 or float32, got {cfg['dtype']!r}")
    for key in ("itl_lambdas", "ltl_lambdas", "step_constants"):
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


def run_split(split: Split, cfg: dict) -> dict[str, MethodRun]:
    checkpoints = list(cfg["checkpoints"])
    metric = cfg["metric"]
    return {
        "online_ltl": run_online(split, cfg["ltl_lambdas"], cfg["step_constants"], checkpoints, metric),
        "batch_ltl": run_batch(split, cfg["ltl_lambdas"], checkpoints, metric, cfg["batch_max_iter"],
                               cfg["batch_tol"]),
        "itl": run_itl(split, cfg["itl_lambdas"], checkpoints, metric),
    }


def run_experiment(cfg: dict, device: torch.device, progress: bool = True) -> tuple[list[dict[str, MethodRun]], int]:
    """Every seed of the experiment: one ``{method: MethodRun}`` per seed, and the number of test tasks."""
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
    return runs, n_test
