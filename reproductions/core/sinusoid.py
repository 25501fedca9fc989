"""The sinusoid regression experiment of the MAML paper, shared by every optimization-based method.

A method is a *learner*: an ``nn.Module`` that owns the meta-parameters and implements

- ``meta_step(tasks) -> float``: the training loss of a task batch, with the meta-gradient left in ``.grad``;
- ``eval_losses(tasks, steps) -> {steps: per-task query MSE}``: adapt on each task's support set and score.

:func:`run` trains it with the shared loop, evaluates it on fresh tasks and writes the result records.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from reproductions.core import recording, registry, runtime
from reproductions.core.tasks import SinusoidFamily
from reproductions.core.training import meta_train

BENCHMARK = "Sinusoid regression (Finn et al. 2017)"


def mlp(hidden: int = 40, layers: int = 2) -> nn.Sequential:
    """The MAML paper's regressor: 1 -> 40 -> 40 -> 1 with ReLU."""
    dims = [1] + [hidden] * layers
    blocks: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        blocks += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*blocks, nn.Linear(dims[-1], 1))


def memory_options(method: dict) -> dict:
    """The learner's memory/speed trade-offs from a config's ``method`` section: ``tasks_per_call`` (tasks run
    and back-propagated together; all of the meta-batch when absent) and ``recompute`` (second order: recompute
    each inner step's graph in the backward pass instead of keeping it). Neither changes the meta-gradient beyond
    float rounding."""
    return {"tasks_per_call": method.get("tasks_per_call"), "recompute": bool(method.get("recompute", False))}


def make_optimizer(learner: nn.Module, train: dict):
    """The outer optimiser (Adam or SGD on ``outer_lr``) and, with ``anneal``, a linear decay of its step to 0."""
    if train.get("optimizer", "adam") == "adam":
        optimizer = torch.optim.Adam(learner.parameters(), lr=train["outer_lr"])
    else:
        optimizer = torch.optim.SGD(learner.parameters(), lr=train["outer_lr"])
    scheduler = None
    if train.get("anneal", False):
        total = train["iterations"]
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: max(0.0, 1.0 - i / total))
    return optimizer, scheduler


def evaluate(learner: nn.Module, tasks, steps: list[int]) -> dict[int, np.ndarray]:
    return {s: v.cpu().double().numpy() for s, v in learner.eval_losses(tasks, steps).items()}


def code_paths(repro: registry.Reproduction) -> list[str]:
    """The folders whose uncommitted changes make a result's commit ``-dirty``: the core and the method's own
    package (the method may import another method's package, e.g. FOMAML uses MAML's; those count too)."""
    return [
        "reproductions/core",
        "reproductions/maml",
        f"reproductions/{repro.name}",
    ]


def test_k_shot(config: dict) -> int:
    """Support points of a test task: ``eval.k_shot`` when given (a model trained at one K, tested at another, as
    the MAML paper does), else the training K."""
    return int(config["eval"].get("k_shot", config["data"]["k_shot"]))


DATA = "sinusoids y = A sin(x - phase): A ~ U[0.1, 5], phase ~ U[0, pi], x ~ U[-5, 5]"
MODEL = "MLP 1-40-40-1, ReLU"
METHOD_FACTS = ("inner_steps", "inner_lr", "first_order")  # the method settings a paper's protocol may state


def protocol(config: dict, steps: int) -> dict:
    """The facts of our protocol for the record of ``steps`` test-time steps (same keys as a paper value's
    ``protocol``): the task family, network, training K and inner loop, test K, steps and tasks, and budget. A
    config's ``record.protocol`` adds facts or overrides these."""
    data, train, ev, method = config["data"], config["train"], config["eval"], config.get("method", {})
    facts = {"data": DATA, "model": MODEL, "train_k": int(data["k_shot"])}
    facts.update({key: method[key] for key in METHOD_FACTS if key in method})
    facts.update(test_k=test_k_shot(config), test_steps=int(steps), test_tasks=int(ev["tasks"]),
                 budget=f"{train['iterations']:,} meta-iterations x {train['meta_batch']} tasks")
    facts.update(config["record"].get("protocol") or {})
    return facts


def training_settings(config: dict) -> dict:
    """The settings a checkpoint depends on. Changing the final evaluation (test tasks, step counts) or the record
    text keeps it valid, and so does raising ``train.iterations`` when no schedule depends on it: the run then
    trains on from where it was.
    """
    ev, train = config["eval"], dict(config["train"])
    if not train.get("anneal", False):
        train.pop("iterations")
    return {
        **{k: v for k, v in config.items() if k not in ("eval", "record", "threads", "train")},
        "train": train,
        "validation": (ev["val_tasks"], ev["query"]),
    }


def run(build: Callable[[dict], nn.Module], repro: registry.Reproduction, config: dict, ctx: registry.RunContext):
    """Train (or resume), evaluate and record one method on one K-shot setting, for each training seed of
    ``seeds`` (default: just ``seed``). Returns the final metrics."""
    torch.set_num_threads(int(config.get("threads", 1)))
    device = runtime.pick_device(ctx.device)
    seeds = [int(s) for s in config.get("seeds") or [config["seed"]]]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {seeds} repeat a seed")
    data, ev = config["data"], config["eval"]
    # One test set for every seed, drawn from the first seed's generator (a single-seed run keeps its old tasks).
    test_tasks = SinusoidFamily().sample(np.random.default_rng([seeds[0], 2]), ev["tasks"], test_k_shot(config), ev["query"])
    test_tasks = test_tasks.to(device)
    steps = sorted(ev["steps"])
    single = {k: v for k, v in config.items() if k != "seeds"}  # what one seed's training depends on

    states, per_seed, eval_seconds = [], {s: [] for s in steps}, 0.0
    for seed in seeds if ctx.only_seeds is None else [s for s in seeds if s in ctx.only_seeds]:
        name = "checkpoint.pt" if len(seeds) == 1 else f"checkpoint_seed{seed}.pt"
        learner, state = _train_seed(build, repro, {**single, "seed": seed}, ctx, device, name)
        start = time.perf_counter()
        for s, losses in evaluate(learner, test_tasks, steps).items():
            per_seed[s].append(losses)
        eval_seconds += time.perf_counter() - start
        states.append(state)

    metrics, diverged = {}, {}
    for s in steps:
        losses = np.stack(per_seed[s])  # [seeds, tasks]
        metrics[f"mse_{s}step"], metrics[f"mse_{s}step_ci95"] = recording.mean_ci95_over_seeds_and_tasks(losses)
        if len(seeds) > 1:
            metrics.update({f"mse_{s}step_seed{seed}": float(row.mean()) for seed, row in zip(seeds, losses)})
        bad = int((~np.isfinite(losses)).sum())
        if bad:  # the mean is undefined: say so instead of recording it
            diverged[s] = (bad, losses.size)
            print(
                f"{repro.name} {ctx.config_name}: {bad} of {losses.size} test task evaluations diverged "
                f"(NaN/inf) after {s} step(s); no record for that setting",
                file=sys.stderr,
            )
    if ctx.write_record:
        write_records(repro, config, ctx, seeds, states, metrics, device, eval_seconds, diverged)
    return metrics


def _train_seed(build, repro, config: dict, ctx: registry.RunContext, device, checkpoint_name: str):
    """Train (or resume) the learner of ``config["seed"]``; returns it with its training state."""
    seed, data, train, ev = config["seed"], config["data"], config["train"], config["eval"]
    family = SinusoidFamily()
    rng = runtime.seed_everything(seed)
    learner = build(config).to(device)
    optimizer, scheduler = make_optimizer(learner, train)
    # Fixed validation tasks from their own generator: evaluation never disturbs the training stream.
    val_tasks = family.sample(np.random.default_rng([seed, 1]), ev["val_tasks"], data["k_shot"], ev["query"])
    val_tasks = val_tasks.to(device)
    steps = sorted(ev["steps"])

    def validate() -> dict[str, float]:
        losses = evaluate(learner, val_tasks, steps)
        return {f"val_mse_{s}step": float(v.mean()) for s, v in losses.items()}

    def step(task_rng: np.random.Generator) -> float:
        batch = family.sample(task_rng, train["meta_batch"], data["k_shot"], data["k_query"]).to(device)
        return learner.meta_step(batch)

    checkpoint = ctx.work_dir / repro.name / ctx.config_name / checkpoint_name
    if ctx.fresh and checkpoint.exists():
        checkpoint.unlink()
    if ctx.eval_only and not checkpoint.exists():
        raise registry.RegistryError(f"no checkpoint at {checkpoint}: run `mlatlas repro run` first")
    state = meta_train(
        learner,
        optimizer,
        step,
        rng,
        iterations=0 if ctx.eval_only else train["iterations"],
        evaluate=validate,
        eval_every=train["eval_every"],
        scheduler=scheduler,
        checkpoint=checkpoint,
        checkpoint_every=train["checkpoint_every"],
        fingerprint=registry.fingerprint(training_settings(config)),
        progress=ctx.progress,
        description=f"{repro.name} {ctx.config_name} seed {seed}",
        session_info={"commit": recording.git_commit(ctx.root, code_paths(repro))},
    )
    if state.iteration != train["iterations"]:
        raise registry.RegistryError(
            f"{checkpoint} holds {state.iteration} of {train['iterations']} meta-iterations; resume with `repro run`"
        )
    return learner, state


def protocol(config: dict, steps: int) -> dict:
    """The facts of a record's protocol (``records.Protocol``): the benchmark's own (data, test shots and steps,
    test tasks) and the config's ``record.protocol`` (the method's, e.g. its training)."""
    data, ev = config["data"], config["eval"]
    return {
        "data": "sinusoids: amplitude U[0.1, 5], phase U[0, pi], x U[-5, 5]",
        "test": f"{data['k_shot']}-shot, {steps} adaptation step{'s' if steps != 1 else ''}",
        "test-tasks": ev["tasks"],
        "query-points": ev["query"],
        **config["record"].get("protocol", {}),
    }


def write_records(repro, config, ctx, seeds, states, metrics, device, eval_seconds, diverged) -> None:
    """One record per evaluated step count, e.g. ``sinusoid_5shot_1step.yaml``, except the step counts in
    ``diverged`` (step count -> (diverged, evaluated) task evaluations): the records that are written say so."""
    data, train, ev, rec = config["data"], config["train"], config["eval"], config["record"]
    budget = f"{train['iterations']:,} meta-iterations x {train['meta_batch']} tasks"
    if len(seeds) > 1:
        budget += f", for each of {len(seeds)} seeds"
    if rec.get("paper_budget"):
        budget += f" ({rec['paper_budget']})"
    notes = " ".join(rec["notes"].split())
    if rec.get("deviation"):  # what this configuration alone changes, and why
        notes += " " + " ".join(rec["deviation"].split())
    test_k = test_k_shot(config)
    if len(seeds) == 1:
        notes += (
            f" Test: {ev['tasks']:,} fresh tasks from one training seed, K = {test_k} support and "
            f"{ev['query']} query points each; the 95% CI is over those tasks only."
        )
    else:
        notes += (
            f" Test: the same {ev['tasks']:,} fresh tasks (K = {test_k} support and {ev['query']} query points "
            f"each) for each of {len(seeds)} training seeds ({', '.join(map(str, seeds))}); the value is the mean over "
            "seeds and tasks, and the 95% CI adds in quadrature the Student-t interval over the seeds' means and the "
            "interval over tasks (of each task's mean over the seeds). The learning curve is seed "
            f"{seeds[0]}'s."
        )
    for s, (bad, total) in sorted(diverged.items()):
        notes += (
            f" After {s} adaptation step{'s' if s != 1 else ''}, {bad} of {total:,} test task evaluations diverged "
            "(NaN or infinite loss), so that setting has no record."
        )
    commit = recording.git_commit(ctx.root, code_paths(repro))  # once, so all records of a run agree
    trained_at = sorted({session["commit"] for state in states for session in state.sessions})
    if trained_at != [commit]:
        notes += f" Meta-trained at commit {', '.join(trained_at) or 'unknown'}; evaluated at the commit below."
    # The curve keeps the validation columns of the evaluated step counts only.
    columns = {"iteration", "train_loss"} | {f"val_mse_{s}step" for s in ev["steps"]}
    curve = [{k: v for k, v in row.items() if k in columns} for row in states[0].curve]
    for s in sorted(set(ev["steps"]) - set(diverged)):
        paper_value = rec.get("paper_values", {}).get(s)
        step_notes = notes
        if len(seeds) > 1:
            means = ", ".join(f"{metrics[f'mse_{s}step_seed{seed}']:.4f}" for seed in seeds)
            step_notes += f" Per-seed means: {means}."
        recording.write_record(
            Path(ctx.root) / "reproductions" / repro.name / "results",  # ctx.root: the checkout the command names
            f"{ctx.config_name}_{s}step",
            root=ctx.root,
            code_paths=code_paths(repro),
            command=ctx.command,
            device=str(device),
            wall_time_s=sum(state.seconds for state in states) + eval_seconds,
            commit=commit,
            curve=curve,
            paper=repro.paper,
            reproduction=repro.name,
            benchmark=BENCHMARK,
            setting=(f"{data['k_shot']}-shot" if test_k == data["k_shot"] else
                     f"trained {data['k_shot']}-shot, tested {test_k}-shot") + f", {s} adaptation step{'s' if s != 1 else ''}",
            metric="MSE",
            higher_is_better=False,
            value=round(metrics[f"mse_{s}step"], 4),
            ci95=round(metrics[f"mse_{s}step_ci95"], 4),
            n_eval_tasks=ev["tasks"],
            n_seeds=len(seeds),
            protocol=protocol(config, s),
            paper_value=paper_value,
            tolerance=rec.get("tolerance"),
            budget=budget,
            notes=step_notes,
        )


def reproduction(name: str, paper: str, summary: str, build: Callable[[dict], nn.Module]) -> registry.Reproduction:
    """The registry entry of a method on this benchmark: ``build(config)`` makes the learner."""
    repro = registry.Reproduction(name=name, paper=paper, summary=summary, run=lambda config, ctx: None,
                                  seed_fanout=True, splits_tasks=True)
    repro.run = lambda config, ctx: run(build, repro, config, ctx)
    return repro
