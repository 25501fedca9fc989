"""Train every (method, seed) job of a config with the core loop, then evaluate it on fixed test tasks.

A job's checkpoint lives under ``<work dir>/maml_universality/<config>/`` (exact resume, as in the core loop) and
its evaluation is cached there as JSON, so an interrupted run resumes at the first unfinished job; ``--fresh``
starts over. Every job is scored on the same test tasks, drawn from generators that depend only on the shift and
the grid point, never on the training seed or the method.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from reproductions.core import recording, registry, runtime
from reproductions.core.tasks import SinusoidFamily, TaskBatch
from reproductions.core.training import meta_train
from reproductions.maml_universality import learners, tasks as task_sets

TEST_SEED = 20180215  # test tasks' generators: [TEST_SEED, region, point]
REGIONS = {"in_distribution": 0, "amplitude": 1, "phase": 2, "steps": 3}


def draw(family: SinusoidFamily, key: list[int], n: int, k: int, q: int, conditioned: bool) -> TaskBatch:
    rng = np.random.default_rng(key)
    if conditioned:
        return task_sets.sample_conditioned(family, rng, n, k, q)
    return family.sample(rng, n, k, q)


def steps_of(method: dict, config: dict) -> list[int]:
    """The adaptation step counts a method is scored at: ``eval.steps`` for gradient-based learners; the others
    read the support set once, so a single entry stands for all."""
    return sorted(config["eval"]["steps"]) if learners.adapts_by_gradient(method) else [0]


def check(config: dict) -> None:
    """Clear one-line errors for the mistakes a config can hold."""
    if config.get("experiment") not in ("ood", "depth"):
        raise registry.RegistryError(f"experiment: {config.get('experiment')!r} is not 'ood', 'depth' or 'omniglot'")
    for name, method in config["methods"].items():
        if method.get("kind") not in learners.KINDS:
            raise registry.RegistryError(f"methods.{name}.kind: {method.get('kind')!r} is not one of "
                                         f"{', '.join(learners.KINDS)}")
    seeds = [int(s) for s in config["seeds"]]
    if len(set(seeds)) != len(seeds):
        raise registry.RegistryError(f"seeds {seeds} repeat a seed")


def train_job(config: dict, ctx: registry.RunContext, name: str, seed: int, device: torch.device):
    """Train (or resume) one method with one seed; returns the learner and the loop state."""
    method, data, train, ev = config["methods"][name], config["data"], config["train"], config["eval"]
    conditioned = method["kind"] == "conditioned"
    rng = runtime.seed_everything(seed)
    learner = learners.build(method, data["k_shot"]).to(device)
    optimizer = torch.optim.Adam(learner.parameters(), lr=train["outer_lr"])
    val = draw(task_sets.TRAINING, [seed, 1], ev["val_tasks"], data["k_shot"], ev["query"], conditioned).to(device)
    steps = steps_of(method, config)

    def validate() -> dict[str, float]:
        return {f"val_mse_{s}step": float(v.mean()) for s, v in learner.eval_losses(val, steps).items()}

    def step(task_rng: np.random.Generator) -> float:
        if conditioned:
            batch = task_sets.sample_conditioned(task_sets.TRAINING, task_rng, train["meta_batch"], data["k_shot"],
                                                 data["k_query"])
        else:
            batch = task_sets.TRAINING.sample(task_rng, train["meta_batch"], data["k_shot"], data["k_query"])
        return learner.meta_step(batch.to(device))

    folder = Path(ctx.work_dir) / "maml_universality" / ctx.config_name
    checkpoint = folder / f"{name}_seed{seed}.pt"
    if ctx.fresh and checkpoint.exists():
        checkpoint.unlink()
    if ctx.eval_only and not checkpoint.exists():
        raise registry.RegistryError(f"no checkpoint at {checkpoint}: run `mlatlas repro run` first")
    settings = {"method": method, "data": data, "train": train, "val": (ev["val_tasks"], ev["query"])}
    state = meta_train(
        learner, optimizer, step, rng,
        iterations=0 if ctx.eval_only else train["iterations"],
        evaluate=validate, eval_every=train["eval_every"],
        checkpoint=checkpoint, checkpoint_every=train["checkpoint_every"],
        fingerprint=registry.fingerprint(settings), progress=ctx.progress,
        description=f"maml_universality {ctx.config_name} {name} seed {seed}",
        session_info={"commit": recording.git_commit(ctx.root, ["reproductions/core", "reproductions/maml",
                                                                "reproductions/maml_universality"])},
    )
    if state.iteration != train["iterations"]:
        raise registry.RegistryError(f"{checkpoint} holds {state.iteration} of {train['iterations']} meta-iterations")
    return learner, state


def losses(learner: nn.Module, batch: TaskBatch, steps: list[int]) -> dict[str, list[float]]:
    return {str(s): v.detach().double().cpu().tolist() for s, v in learner.eval_losses(batch, steps).items()}


def evaluate_job(learner: nn.Module, config: dict, name: str, device: torch.device) -> dict:
    """Per-task query MSE on the fixed test tasks: in distribution; for ``ood`` also on every amplitude and
    phase of the grids, and after each of ``eval.step_counts`` steps on in-distribution and shifted tasks."""
    method, data, ev = config["methods"][name], config["data"], config["eval"]
    k, q, n = data["k_shot"], ev["query"], ev.get("tasks", 0)
    conditioned = method["kind"] == "conditioned"
    steps = steps_of(method, config)

    def test(family: SinusoidFamily, region: str, point: int, count: int, at: list[int]) -> dict[str, list[float]]:
        batch = draw(family, [TEST_SEED, REGIONS[region], point], count, k, q, conditioned).to(device)
        return losses(learner, batch, at)

    out = {"in_distribution": test(task_sets.TRAINING, "in_distribution", 0, ev["in_distribution_tasks"], steps)}
    if config["experiment"] != "ood":
        return out
    for kind, values in (("amplitude", ev["amplitudes"]), ("phase", ev["phases"])):
        out[kind] = {repr(float(v)): test(task_sets.shifted(kind, float(v)), kind, i, n, steps)
                     for i, v in enumerate(values)}
    counts = sorted(ev["step_counts"]) if learners.adapts_by_gradient(method) else [0]
    out["steps"] = {
        region: test(SinusoidFamily(amplitude=tuple(amplitude)), "steps", i, ev["in_distribution_tasks"], counts)
        for i, (region, amplitude) in enumerate(ev["step_families"].items())
    }
    return out


def run_all(config: dict, ctx: registry.RunContext) -> tuple[dict, str]:
    """``{method: {seed: {"eval": ..., "curve": [...], "seconds": s, "commits": [...]}}}`` and the device."""
    check(config)
    torch.set_num_threads(int(config.get("threads", 1)))
    device = runtime.pick_device(ctx.device)
    folder = Path(ctx.work_dir) / "maml_universality" / ctx.config_name
    results: dict = {}
    for name in config["methods"]:
        results[name] = {}
        for seed in [int(s) for s in config["seeds"]]:
            key = registry.fingerprint({k: config[k] for k in ("experiment", "data", "train", "eval")}
                                       | {"method": config["methods"][name]})
            cache = folder / f"{name}_seed{seed}_{key}.json"
            if cache.exists() and not ctx.fresh and not ctx.eval_only:
                results[name][seed] = json.loads(cache.read_text(encoding="utf-8"))
                continue
            learner, state = train_job(config, ctx, name, seed, device)
            start = time.perf_counter()
            evaluation = evaluate_job(learner, config, name, device)
            result = {"eval": evaluation, "curve": state.curve, "seconds": state.seconds,
                      "eval_seconds": time.perf_counter() - start,
                      "commits": sorted({s["commit"] for s in state.sessions})}
            cache.parent.mkdir(parents=True, exist_ok=True)
            recording._atomic_write(cache, json.dumps(result).encode())
            results[name][seed] = result
    return results, str(device)
