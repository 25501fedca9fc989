"""Incremental (online) learning-to-learn of a linear representation for ridge regression: Denevi, Ciliberto,
Stamos & Pontil, "Incremental Learning-to-Learn with Statistical Guarantees", UAI 2018 (arXiv 1803.08089).

Run it with ``mlatlas repro run incremental_ltl --config synthetic`` (or ``--config schools`` with the Schools
data, see README.md). The math lives in :mod:`.ltl`, the task environments in :mod:`.data`, the experiment in
:mod:`.experiment` and the summaries in :mod:`.report`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from reproductions.core import recording, registry, runtime

from .data import DATA_DIR_ENV
from .experiment import HIGHER_IS_BETTER, METHODS, check_config, run_experiment
from .report import LABELS, claims, curve_rows, plot_png, summarise

PAPER = "incremental-ltl"
BENCHMARKS = {
    "synthetic": "Synthetic regression tasks sharing a low-dimensional linear representation",
    "schools": "Schools (ILEA exam scores, 139 schools as tasks)",
}
# What the results depend on: this package (not its results or README) and the core modules it uses.
CODE_PATHS = [
    "reproductions/incremental_ltl", ":!reproductions/incremental_ltl/results",
    ":!reproductions/incremental_ltl/README.md", "reproductions/core/__init__.py", "reproductions/core/recording.py",
    "reproductions/core/registry.py", "reproductions/core/runtime.py",
]
METRICS = {"mse": ("MSE", None), "explained_variance": ("explained variance", "%")}


def run(config: dict, ctx: registry.RunContext) -> dict[str, float]:
    """Run every seed of the configured experiment; write one record per method (at the last checkpoint)."""
    torch.set_num_threads(int(config.get("threads", 1)))
    cfg = check_config(config)
    device = runtime.pick_device(ctx.device)
    runtime.seed_everything(cfg["first_seed"])
    start = time.perf_counter()
    runs, n_test = run_experiment(cfg, device, progress=ctx.progress)
    wall = time.perf_counter() - start
    summary = summarise(runs)
    checkpoints = cfg["checkpoints"]
    metrics = {}
    for method in METHODS:
        metrics[f"{method}_T{checkpoints[-1]}"] = summary[method]["mean"][-1]
        metrics[f"{method}_T{checkpoints[-1]}_ci95"] = summary[method]["ci95"][-1]
    if ctx.write_record:
        write_records(cfg, ctx, runs, n_test, summary, str(device), wall)
    return metrics


def _setting(cfg: dict, method: str, n_test: int) -> str:
    T = cfg["checkpoints"][-1]
    if cfg["benchmark"] == "synthetic":
        return (f"{LABELS[method]}, T={T} training tasks; d={cfg['dim']}, rank {cfg['rank']}, "
                f"n={cfg['n_points']} points per task")
    return (f"{LABELS[method]}, T={T} training schools, {cfg['n_val_tasks']} validation, "
            f"{n_test} test schools; {round(100 * cfg['train_fraction'])}% of a new school's "
            f"students to train" + ("; features scaled to max |x| = 1" if cfg["scale_features"] else ""))


def _budget(cfg: dict, method: str) -> str:
    T = cfg["checkpoints"][-1]
    grid = f"{len(cfg['ltl_lambdas'])} lambdas"
    if method == "online_ltl":
        return f"one pass over {T} tasks, one projected gradient step each; grid {grid} x {len(cfg['step_constants'])} c"
    if method == "batch_ltl":
        return f"projected gradient descent to rel. tol {cfg['batch_tol']:g} (<= {cfg['batch_max_iter']} steps); grid {grid}"
    return f"closed-form ridge per task; grid {len(cfg['itl_lambdas'])} lambdas"


def write_records(cfg, ctx, runs, n_test, summary, device, wall, results_dir=None) -> None:
    """Write ``<config>_<method>.yaml`` (+ curve CSV and plot) for every method, and the per-seed raw scores."""
    results_dir = results_dir or REPRODUCTION.package_dir / "results"
    checkpoints = cfg["checkpoints"]
    metric_name, unit = METRICS[cfg["metric"]]
    command = ctx.command
    if cfg["benchmark"] == "schools" and not cfg["data_path"]:
        command = f"{DATA_DIR_ENV}={os.environ[DATA_DIR_ENV]} {command}"
    rows = curve_rows(checkpoints, summary)
    checks = claims(runs, checkpoints, cfg["metric"])
    timing = ", ".join(f"{LABELS[m]} {summary[m]['seconds']:.1f}s" for m in METHODS)
    chosen = {m: sorted({json.dumps(r[m].chosen[-1], sort_keys=True) for r in runs}) for m in METHODS}
    stem_base = ctx.config_name
    results_dir.mkdir(parents=True, exist_ok=True)
    # Every record carries the curve of all three methods (mean and 95% CI per checkpoint).
    title = f"{BENCHMARKS[cfg['benchmark']]}\n{cfg['seeds']} seeds, mean ± 95% CI"
    png = plot_png(checkpoints, summary, cfg["metric"], title)
    for method in METHODS:
        notes = (
            "Claims checked on paired per-seed differences (mean ± 95% CI): " + " ".join(checks)
            + f" Mean time per seed over the whole hyper-parameter grid: {timing}."
            + f" Hyper-parameters picked on validation tasks at T={checkpoints[-1]}: {', '.join(chosen[method])}."
            + (" " + cfg["notes"] if cfg.get("notes") else "")
        )
        path = recording.write_record(
            results_dir,
            f"{stem_base}_{method}",
            root=ctx.root,
            code_paths=CODE_PATHS,
            command=command,
            device=device,
            wall_time_s=wall,
            curve=rows,
            paper=PAPER,
            reproduction="incremental_ltl",
            benchmark=BENCHMARKS[cfg["benchmark"]],
            setting=_setting(cfg, method, n_test),
            metric=metric_name,
            unit=unit,
            higher_is_better=HIGHER_IS_BETTER[cfg["metric"]],
            value=round(summary[method]["mean"][-1], 4),
            ci95=round(summary[method]["ci95"][-1], 4),
            n_eval_tasks=n_test,
            n_seeds=cfg["seeds"],
            budget=_budget(cfg, method),
            notes=notes,
        )
        # The generic plot becomes the paper-style one: the three methods with their 95% CI bands, linear axes.
        recording._atomic_write(path.with_suffix(".png"), png)
    per_seed = [{m: {"test": r[m].test, "val": r[m].val, "chosen": r[m].chosen, "seconds": r[m].seconds}
                 for m in METHODS} for r in runs]
    raw = json.dumps({"checkpoints": checkpoints, "config": cfg, "seeds": per_seed}, indent=1)
    recording._atomic_write(results_dir / f"{stem_base}_per_seed.json", raw.encode())


REPRODUCTION = registry.Reproduction(
    name="incremental_ltl",
    paper=PAPER,
    summary="Online LTL of a ridge-regression representation vs batch LTL and ITL (synthetic, Schools)",
    run=run,
    package_dir=Path(__file__).parent,
)
