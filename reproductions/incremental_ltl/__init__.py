"""Incremental (online) learning-to-learn of a linear representation for ridge regression: Denevi, Ciliberto,
Stamos & Pontil, "Incremental Learning-to-Learn with Statistical Guarantees", UAI 2018 (arXiv 1803.08089).

Run it with ``mlatlas repro run incremental_ltl --config synthetic`` (or ``--config schools`` with the Schools
data, see README.md). The math lives in :mod:`.ltl`, the task environments in :mod:`.data`, the experiment in
:mod:`.experiment` and the summaries in :mod:`.report`.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from reproductions.core import recording, registry, runtime

from .data import DATA_DIR_ENV
from .experiment import HIGHER_IS_BETTER, METHODS, check_config, edges_at_last_checkpoint, metrics_of, run_experiment
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
    """Run every seed of the configured experiment; write one record per method and metric (at the last
    checkpoint)."""
    torch.set_num_threads(int(config.get("threads", 1)))
    cfg = check_config(config)
    device = runtime.pick_device(ctx.device)
    runtime.seed_everything(cfg["first_seed"])
    start = time.perf_counter()
    runs, n_test = run_experiment(cfg, device, progress=ctx.progress)
    wall = time.perf_counter() - start
    checkpoints = cfg["checkpoints"]
    metrics = {}
    for metric in metrics_of(cfg):
        summary = summarise([r[metric] for r in runs])
        suffix = "" if metric == cfg["metric"] else f"_{metric}"
        for method in METHODS:
            metrics[f"{method}{suffix}_T{checkpoints[-1]}"] = summary[method]["mean"][-1]
            metrics[f"{method}{suffix}_T{checkpoints[-1]}_ci95"] = summary[method]["ci95"][-1]
    edges = [f"seed {cfg['first_seed'] + i}: {e}" for i, r in enumerate(runs) for e in edges_at_last_checkpoint(r)]
    for line in edges:
        print(f"warning: chosen on a grid edge: {line}", file=sys.stderr)
    if ctx.write_record:
        write_records(cfg, ctx, runs, n_test, str(device), wall)
    return metrics


def _setting(cfg: dict, method: str, n_test: int) -> str:
    T = cfg["checkpoints"][-1]
    if cfg["benchmark"] == "synthetic":
        return (f"{LABELS[method]}, T={T} training tasks; d={cfg['dim']}, rank {cfg['rank']}, "
                f"n={cfg['n_points']} points per task")
    return (f"{LABELS[method]}, T={T} training schools, {cfg['n_val_tasks']} validation, "
            f"{n_test} test schools; {round(100 * cfg['train_fraction'])}% of a new school's "
            f"students to train" + ("; features scaled to max |x| = 1" if cfg["scale_features"] else ""))


def _grid(values: list[float]) -> str:
    return f"{len(values)} values {min(values):g}..{max(values):g}"


def _budget(cfg: dict, method: str) -> str:
    T = cfg["checkpoints"][-1]
    if method == "online_ltl":
        return (f"one pass over {T} tasks, one projected gradient step each; grid lambda {_grid(cfg['online_lambdas'])}"
                f" x c {_grid(cfg['step_constants'])}")
    if method == "batch_ltl":
        return (f"projected gradient descent to rel. tol {cfg['batch_tol']:g} (<= {cfg['batch_max_iter']} steps); "
                f"grid lambda {_grid(cfg['batch_lambdas'])}")
    return f"closed-form ridge per task; grid lambda {_grid(cfg['itl_lambdas'])}"


def _protocol(cfg: dict, method: str, metric: str, n_test: int) -> dict:
    """Our protocol as named facts (the paper's could not be read, so no record carries a paper value)."""
    facts = {"data": BENCHMARKS[cfg["benchmark"]], "metric": METRICS[metric][0],
             "training-tasks": cfg["checkpoints"][-1], "validation-tasks": cfg["n_val_tasks"], "test-tasks": n_test,
             "selection": f"hyper-parameters picked on the validation tasks by {METRICS[metric][0]}",
             "seeds": cfg["seeds"]}
    if cfg["benchmark"] == "synthetic":
        facts.update({"dim": cfg["dim"], "rank": cfg["rank"], "points-per-task": cfg["n_points"],
                      "heldout-points": cfg["n_heldout"], "noise-std": cfg["noise_std"]})
    else:
        facts.update({"train-fraction": cfg["train_fraction"], "scaled-features": cfg["scale_features"]})
    return facts


def _edge_note(runs: list[dict], method: str) -> str:
    lines = [f"seed {i}: {'; '.join(r[method].edges[-1])}" for i, r in enumerate(runs) if r[method].edges[-1]]
    if not lines:
        return " No chosen hyper-parameter lies on an edge of its grid (a plateau of equal scores may reach one)."
    more = f" | and {len(lines) - 3} more" if len(lines) > 3 else ""
    return f" On a grid edge in {len(lines)} of {len(runs)} seeds: " + " | ".join(lines[:3]) + more + "."


def write_records(cfg, ctx, runs, n_test, device, wall, results_dir=None) -> None:
    """Write ``<config>_<method>.yaml`` (and ``<config>_<method>_<metric>.yaml`` for each extra metric), each with
    its curve CSV and plot, and the per-seed raw scores in ``<config>_per_seed.json``."""
    results_dir = results_dir or REPRODUCTION.package_dir / "results"
    checkpoints = cfg["checkpoints"]
    command = ctx.command
    if cfg["benchmark"] == "schools" and not cfg["data_path"]:
        command = f"{DATA_DIR_ENV}=<data folder> {command}"  # the record names no path of this machine
    stem_base = ctx.config_name
    results_dir.mkdir(parents=True, exist_ok=True)
    commit = recording.git_commit(ctx.root, CODE_PATHS)
    for metric in metrics_of(cfg):
        by_seed = [r[metric] for r in runs]
        summary = summarise(by_seed)
        metric_name, unit = METRICS[metric]
        suffix = "" if metric == cfg["metric"] else f"_{metric}"
        rows = curve_rows(checkpoints, summary)
        checks = claims(by_seed, checkpoints, metric)
        timing = ", ".join(f"{LABELS[m]} {summary[m]['seconds']:.1f}s" for m in METHODS)
        chosen = {m: sorted({json.dumps(r[m].chosen[-1], sort_keys=True) for r in by_seed}) for m in METHODS}
        title = f"{BENCHMARKS[cfg['benchmark']]}\n{cfg['seeds']} seeds, mean ± 95% CI"
        png = plot_png(checkpoints, summary, metric, title)
        for method in METHODS:
            notes = (
                "Claims checked on paired per-seed differences (mean ± 95% CI): " + " ".join(checks)
                + f" Mean time per seed over the whole hyper-parameter grid: {timing}."
                + f" Hyper-parameters picked on validation tasks at T={checkpoints[-1]}: {', '.join(chosen[method])}."
                + _edge_note(by_seed, method)
                + (" " + cfg["notes"] if cfg.get("notes") else "")
            )
            path = recording.write_record(
                results_dir,
                f"{stem_base}_{method}{suffix}",
                root=ctx.root,
                code_paths=CODE_PATHS,
                commit=commit,
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
                higher_is_better=HIGHER_IS_BETTER[metric],
                value=round(summary[method]["mean"][-1], 4),
                ci95=round(summary[method]["ci95"][-1], 4),
                n_eval_tasks=n_test,
                n_seeds=cfg["seeds"],
                protocol=_protocol(cfg, method, metric, n_test),
                budget=_budget(cfg, method),
                notes=notes,
            )
            # The generic plot becomes the paper-style one: the three methods with their 95% CI bands, linear axes.
            recording._atomic_write(path.with_suffix(".png"), png)
    per_seed = [{metric: {m: asdict(r[metric][m]) for m in METHODS} for metric in r} for r in runs]
    raw = json.dumps({"checkpoints": checkpoints, "config": cfg, "seeds": per_seed}, indent=1)
    recording._atomic_write(results_dir / f"{stem_base}_per_seed.json", raw.encode())


REPRODUCTION = registry.Reproduction(
    name="incremental_ltl",
    paper=PAPER,
    summary="Online LTL of a ridge-regression representation vs batch LTL and ITL (synthetic, Schools)",
    run=run,
    package_dir=Path(__file__).parent,
)
