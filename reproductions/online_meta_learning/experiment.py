"""The online protocol: tasks arrive one after another; each task's training points arrive in growing amounts.

For each task ``t`` and each amount ``n`` of the schedule (e.g. 10, 20, 50, 100, 200 points), the learner trains
for its iterations on the buffer (every earlier task's data and the current task's first ``n`` points), then each
method is scored on the task's held-out test images. A task's *efficiency* is the smallest amount at which the
test accuracy reaches the threshold (none when it never does). One learner serves both FTL and TOE (they differ
only in scoring). After each task a checkpoint (networks, optimisers, random state, results) is written, so an
interrupted run resumes at the next task and ends exactly where an uninterrupted one ends.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from reproductions.core import registry, training
from reproductions.core.runtime import check_finite, pick_device
from reproductions.datasets import mnist
from reproductions.online_meta_learning import rainbow
from reproductions.online_meta_learning.method import ADAPTS, KIND, METHODS, Learner, accuracy


def build_tasks(config: dict) -> list[rainbow.Task]:
    d = config["data"]
    train, test = mnist.load("train", d["data_dir"]), mnist.load("test", d["data_dir"])
    return rainbow.make_tasks(train, test, d["tasks"], max(d["schedule"]), d["test_points"], config["seed"])


def efficiency(amounts: list[int], accuracies: list[float], threshold: float) -> int | None:
    """The smallest amount of data whose test accuracy reaches ``threshold``; ``None`` if none does."""
    for n, acc in zip(amounts, accuracies):
        if acc >= threshold:
            return n
    return None


def _checkpoint_path(ctx: registry.RunContext, kind: str) -> Path:
    return Path(ctx.work_dir) / "online_meta_learning" / ctx.config_name / f"{kind}.pt"


def run_kind(kind: str, methods: list[str], config: dict, tasks: list[rainbow.Task], ctx: registry.RunContext,
             device: torch.device) -> tuple[dict[str, list[dict]], float]:
    """Run one learner over the whole task sequence; per-task results of each of its ``methods`` and seconds."""
    schedule, threshold = config["data"]["schedule"], config["threshold"]
    learner = Learner(kind, config, device, config["seed"])
    rng = np.random.default_rng([config["seed"], ("ftml", "joint", "scratch").index(kind)])
    results: dict[str, list[dict]] = {m: [] for m in methods}
    start, seconds = 0, 0.0
    path = _checkpoint_path(ctx, kind)
    fingerprint = registry.fingerprint(config)
    if path.exists() and not ctx.fresh:
        state = training.load_checkpoint(path, version=None)
        if state.get("fingerprint") != fingerprint:
            raise ValueError(f"{path}: checkpoint of another configuration; run with --fresh to start over")
        try:
            learner.model.load_state_dict(state["model"])
            learner.optimizer.load_state_dict(state["optimizer"])
            training.set_rng_state(rng, state["rng"])
            torch.set_rng_state(state["torch_rng"])
            results, start, seconds = state["results"], state["next_task"], state["seconds"]
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise training.CheckpointError(f"{path}: the checkpoint does not fit this run; run with --fresh") from exc
    if ctx.eval_only and start < len(tasks):
        raise ValueError(f"{path}: the run stopped after {start} of {len(tasks)} tasks; finish it with `repro run` "
                         "before evaluating")
    past = [(t.x_train.to(device), t.y_train.to(device)) for t in tasks[:start]]
    bar = tqdm(range(start, len(tasks)), desc=f"{kind}", unit="task", initial=start, total=len(tasks),
               disable=not ctx.progress)
    for i in bar:
        began = time.perf_counter()
        task = tasks[i]
        x, y = task.x_train.to(device), task.y_train.to(device)
        x_test, y_test = task.x_test.to(device), task.y_test.to(device)
        learner.start_task()
        accs: dict[str, list[float]] = {m: [] for m in methods}
        for n in schedule:
            loss = learner.train(past + [(x[:n], y[:n])], rng)
            check_finite(loss, f"{kind} training loss", i)
            for m in methods:
                accs[m].append(accuracy(learner.model, learner.predict_params(x[:n], y[:n], ADAPTS[m]),
                                        x_test, y_test))
        past.append((x, y))
        for m in methods:
            results[m].append({"task": i, "transform": task.transform.name, "amounts": list(schedule),
                               "accuracy": accs[m], "efficiency": efficiency(schedule, accs[m], threshold)})
        seconds += time.perf_counter() - began
        bar.set_postfix(loss=f"{loss:.3f}", acc=f"{accs[methods[0]][-1]:.3f}")
        training.save_checkpoint(path, {"fingerprint": fingerprint, "model": learner.model.state_dict(),
                     "optimizer": learner.optimizer.state_dict(), "rng": training.rng_state(rng),
                     "torch_rng": torch.get_rng_state(), "results": results, "next_task": i + 1,
                     "seconds": seconds})
    return results, seconds


def run_all(config: dict, ctx: registry.RunContext) -> tuple[dict[str, list[dict]], dict[str, float], str]:
    """Every method of the config: ``(results by method, seconds by method, device)``."""
    torch.set_num_threads(config["threads"])
    unknown = set(config["methods"]) - set(METHODS)
    if unknown:
        raise ValueError(f"methods: unknown {sorted(unknown)}; choose from {', '.join(METHODS)}")
    device = pick_device(ctx.device)
    tasks = build_tasks(config)
    results: dict[str, list[dict]] = {}
    seconds: dict[str, float] = {}
    for kind in dict.fromkeys(KIND[m] for m in config["methods"]):
        methods = [m for m in config["methods"] if KIND[m] == kind]
        if ctx.eval_only and (ctx.fresh or not _checkpoint_path(ctx, kind).exists()):
            raise ValueError(f"{_checkpoint_path(ctx, kind)}: no finished run to evaluate; run it first")
        by_method, secs = run_kind(kind, methods, config, tasks, ctx, device)
        results.update(by_method)
        seconds.update({m: secs for m in methods})
    return results, seconds, device.type
