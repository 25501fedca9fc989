"""Side-by-side benchmark of our meta-learning core against ``higher`` (and learn2learn when it imports).

For each configuration, in one process:

1. **Agreement.** Every implementation computes the meta-gradient of the same batch from the same initial
   weights in float64; each must match ours to ``RTOL`` (max absolute difference over all components divided by
   the largest component of ours). A disagreement stops the benchmark: timing different work means nothing.
2. **Time.** float32, one thread. After warm-up, ``repeats`` rounds; in each round every implementation runs a
   few meta-iterations, and the order of implementations alternates between rounds (A,B then B,A) so that load
   from other processes on a shared machine falls on all of them alike. The median and interquartile range of
   the per-meta-iteration times over the rounds are reported, with the load average seen during the rounds.
3. **Memory.** Peak resident memory above a baseline, in fresh subprocesses per (configuration,
   implementation), median of ``memory_runs``: see :mod:`reproductions.bench.peak_memory`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from reproductions.bench import workloads
from reproductions.bench.workloads import Config
from reproductions.core import recording

RTOL = 1e-6
ROUND_SECONDS = 0.5  # aim for rounds at least this long, so the timer's resolution does not matter
QUICK_ROUND_SECONDS = 0.05


class DisagreementError(RuntimeError):
    """An implementation's meta-gradient differs from ours beyond the tolerance."""


def relative_difference(grad: torch.Tensor, reference: torch.Tensor) -> float:
    return float((grad - reference).abs().max() / reference.abs().max())


def check_agreement(config: Config, impls: list[str]) -> dict[str, float]:
    """float64 meta-gradients of every implementation on one batch; their relative difference to ours."""
    work = workloads.build(config, dtype=torch.float64)
    reference = workloads.meta_grad("ours", config, work)
    differences = {}
    for impl in impls:
        differences[impl] = relative_difference(workloads.meta_grad(impl, config, work), reference)
        if not differences[impl] <= RTOL:
            raise DisagreementError(
                f"{config.key}: {impl}'s meta-gradient differs from ours by {differences[impl]:.2e} (> {RTOL:g})"
            )
    return differences


def time_rounds(
    config: Config, impls: list[str], repeats: int, warmup: int, round_seconds: float = ROUND_SECONDS
) -> tuple[dict, list[float]]:
    """Per-meta-iteration seconds of each implementation in each round, and the 1-minute load average
    sampled after every round."""
    work = workloads.build(config)
    per_round = {}
    for impl in impls:  # warm-up, and how many meta-iterations make a round of about round_seconds
        start = time.perf_counter()
        for _ in range(warmup):
            workloads.meta_grad(impl, config, work)
        per_round[impl] = max(1, round(round_seconds / ((time.perf_counter() - start) / warmup)))
    seconds: dict[str, list[float]] = {impl: [] for impl in impls}
    loads = []
    for r in range(repeats):
        for impl in impls if r % 2 == 0 else impls[::-1]:
            n = per_round[impl]
            start = time.perf_counter()
            for _ in range(n):
                workloads.meta_grad(impl, config, work)
            seconds[impl].append((time.perf_counter() - start) / n)
        loads.append(os.getloadavg()[0])
    return seconds, loads


def peak_memory(config: Config, impl: str, runs: int) -> dict:
    """Median over ``runs`` fresh interpreters of :mod:`reproductions.bench.peak_memory`."""
    measured = [_peak_memory_once(config, impl) for _ in range(runs)]
    return {**measured[0], "peak_mib": statistics.median(m["peak_mib"] for m in measured),
            "peak_mib_all": [m["peak_mib"] for m in measured]}


def _peak_memory_once(config: Config, impl: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "reproductions.bench.peak_memory", config.key, impl],
        capture_output=True, text=True, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if out.returncode != 0:
        raise RuntimeError(f"memory measurement of {impl} on {config.key} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarize(times: list[float]) -> dict:
    q1, median, q3 = (float(v) for v in np.percentile(times, [25, 50, 75]))
    return {"seconds_median": median, "seconds_q1": q1, "seconds_q3": q3, "seconds_all": times}


def bench_config(
    config: Config, repeats: int, warmup: int, memory_runs: int, round_seconds: float
) -> dict:
    names = list(workloads.IMPLEMENTATIONS)
    reasons = {impl: workloads.unavailable(impl, config) for impl in names}
    runnable = [impl for impl in names if reasons[impl] is None]
    differences = check_agreement(config, runnable)
    seconds, loads = time_rounds(config, runnable, repeats, warmup, round_seconds)
    memories = {impl: peak_memory(config, impl, memory_runs) for impl in runnable} if memory_runs else {}
    ours_time = statistics.median(seconds["ours"])
    results = []
    for impl in names:
        if reasons[impl] is not None:
            results.append({"impl": impl, "available": False, "reason": reasons[impl]})
            continue
        row = {"impl": impl, "available": True, "grad_rel_diff": differences[impl], **summarize(seconds[impl])}
        row["tasks_per_second"] = config.meta_batch / row["seconds_median"]
        row["time_ratio_to_ours"] = row["seconds_median"] / ours_time
        if memory_runs:
            row["peak_mib"], row["peak_mib_all"] = memories[impl]["peak_mib"], memories[impl]["peak_mib_all"]
            row["memory_ratio_to_ours"] = memories[impl]["peak_mib"] / memories["ours"]["peak_mib"]
        results.append(row)
    return {
        "key": config.key,
        "description": config.description,
        "meta_batch": config.meta_batch,
        "inner_steps": config.inner_steps,
        "first_order": config.first_order,
        "family": config.family,
        "ours_strategy": (f"all {config.meta_batch} tasks batched in one call; ours-lean: {config.chunk} tasks per "
                          f"call{', inner steps recomputed' if config.recompute else ''}"
                          if config.vectorize else "loop over tasks, backward per task, query pass in channels_last"),
        "load_during_timing": {"min": min(loads), "median": statistics.median(loads), "max": max(loads)},
        "memory_method": next(iter(memories.values()))["method"] if memories else None,
        "results": results,
    }


# The code a result depends on: a change to any of it makes the recorded commit "-dirty".
CODE_PATHS = ["reproductions/bench", "reproductions/core/functional.py", "reproductions/core/tasks.py",
              "reproductions/core/sinusoid.py", "reproductions/core/batched.py", "reproductions/core/recompute.py",
              "reproductions/datasets/omniglot_benchmark.py"]


def machine() -> dict:
    return {"cpu": recording.hardware_description("cpu"), "logical_cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "os": platform.platform()}


def versions() -> dict:
    found = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for package in ("higher", "learn2learn"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def run(root: Path, quick: bool = False, repeats: int = 7, warmup: int = 2, memory_runs: int = 3,
        command: str = "mlatlas bench", progress: bool = True) -> dict:
    """The whole benchmark; the result is what ``benchmarks/results/meta_bench.json`` records."""
    torch.set_num_threads(1)
    configs = workloads.QUICK_CONFIGS if quick else workloads.CONFIGS
    round_seconds = QUICK_ROUND_SECONDS if quick else ROUND_SECONDS
    commit = recording.git_commit(root, CODE_PATHS)  # now: the code this process has imported
    load_before = os.getloadavg()
    started = time.perf_counter()
    rows = []
    for config in tqdm(configs, desc="configurations", disable=not progress):
        rows.append(bench_config(config, repeats, warmup, memory_runs, round_seconds))
    return {
        "command": command,
        "commit": commit,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "machine": machine(),
        "versions": versions(),
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
        "settings": {"quick": quick, "repeats": repeats, "warmup": warmup, "rtol": RTOL,
                     "check_dtype": "float64", "timing_dtype": "float32", "round_seconds": round_seconds, "memory_runs": memory_runs},
        "configs": rows,
    }
