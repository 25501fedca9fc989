"""Turn finished jobs into result records (one per method, adaptation step count and test region), a summary
table and the figures laid out like the paper's (error against the size of the shift; error against inner steps;
error against depth)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from reproductions.core import recording, registry
from reproductions.maml_universality import learners, models
from reproductions.maml_universality.experiment import steps_of

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# The code a record depends on (results excluded): uncommitted changes here mark its commit "-dirty".
CODE_PATHS = ["reproductions/maml_universality", ":(exclude)reproductions/maml_universality/results",
              "reproductions/core", "reproductions/maml"]
BENCHMARK = "Sinusoid regression (Finn et al. 2017), in and out of the meta-training distribution"
TRAINING_TASKS = "amplitude U[0.1, 5], phase U[0, pi], x U[-5, 5]"
LIMITS = {"amplitude": 5.0, "phase": math.pi}  # upper ends of the training ranges


def outside(kind: str, values: list[float]) -> list[int]:
    """Indices of the grid values beyond the training range (a grid value within 1e-3 of its end, such as 3.1416
    for pi, counts as inside)."""
    return [i for i, v in enumerate(values) if v > LIMITS[kind] + 1e-3]


def stacked(results: dict, name: str, pick) -> np.ndarray:
    """[seeds, tasks] array of ``pick(evaluation)`` (a list of per-task losses) over the seeds of ``name``."""
    return np.array([pick(r["eval"]) for _, r in sorted(results[name].items())], dtype=np.float64)


def grid(results: dict, name: str, kind: str, step: int) -> tuple[list[float], np.ndarray]:
    """Grid values and [seeds, points, tasks] losses of one shift."""
    seeds = [r["eval"][kind] for _, r in sorted(results[name].items())]
    values = [float(v) for v in seeds[0]]
    return values, np.array([[s[repr(v)][str(step)] for v in values] for s in seeds], dtype=np.float64)


EXPLODED = 1e6  # a task's query MSE above this (the targets' variance is at most 50) counts as diverged


def diverged(losses: np.ndarray) -> int:
    """How many task evaluations diverged: NaN, infinite, or above :data:`EXPLODED`."""
    losses = np.asarray(losses, dtype=np.float64)
    return int((~np.isfinite(losses)).sum() + (np.nan_to_num(losses, nan=0.0, posinf=0.0, neginf=0.0) > EXPLODED).sum())


def summary(losses: np.ndarray) -> tuple[float, float]:
    """Mean and 95% half-width of a [seeds, tasks] array (see core.recording); NaN when a task diverged."""
    if diverged(losses):
        return float("nan"), float("nan")
    return recording.mean_ci95_over_seeds_and_tasks(losses)


def cell(losses: np.ndarray) -> str:
    """A table cell: mean ± 95% CI, or how many task evaluations diverged."""
    bad = diverged(losses)
    if bad:
        return f"diverged ({bad} of {losses.size})"
    m, c = summary(losses)
    return f"{m:.3f} ± {c:.3f}"


def label(config: dict, name: str, step: int) -> str:
    method = config["methods"][name]
    text = method.get("label", name)
    if method["kind"] == "maml":
        text += f", {step} step{'s' if step != 1 else ''}"
    return text


def method_facts(config: dict, name: str, step: int) -> dict:
    m, data, train = config["methods"][name], config["data"], config["train"]
    facts = {"method": m.get("label", name), "k-shot": data["k_shot"], "meta-train-tasks": TRAINING_TASKS,
             "budget": f"{train['iterations']:,} meta-iterations x {train['meta_batch']} tasks, Adam {train['outer_lr']}"}
    if m["kind"] == "maml":
        facts["network"] = f"ReLU MLP, {m['depth']} hidden layer(s) of {m['width']}"
        if m.get("bias_transform"):
            facts["network"] += f", bias transformation of size {m['bias_transform']}"
        facts["adaptation"] = (f"trained with {m['inner_steps']} step(s) of {m['inner_lr']}, tested after {step} "
                               f"step(s)")
    elif m["kind"] == "snail":
        facts["network"] = f"SNAIL-style: 2 x (causal TC, filters {m['filters']}; attention, key {m['key']})"
        facts["adaptation"] = "reads the K support pairs, no gradient steps"
    else:
        facts["network"] = f"ReLU MLP on [x, A, phase], {m['depth']} hidden layer(s) of {m['width']}"
        facts["adaptation"] = "none: told the task's amplitude and phase"
    return facts


def learning_curve(results: dict, name: str) -> list[dict]:
    first = sorted(results[name])[0]
    return results[name][first]["curve"]


def write(results_dir: Path, stem: str, config: dict, ctx: registry.RunContext, device: str, results: dict,
          name: str, step: int, losses: np.ndarray, setting: str, protocol: dict, notes: str) -> Path | None:
    """One record, or None (with a message) when some test task's loss is NaN or infinite: the mean is then
    undefined, and the summary table says how many diverged."""
    bad = diverged(losses)
    if bad:
        print(f"maml_universality: {stem}: {bad} of {losses.size} test task evaluations diverged (NaN, inf or "
              f"above {EXPLODED:g}); "
              "no record for that setting", file=sys.stderr)
        return None
    value, ci = summary(losses)
    runs = results[name]
    seeds = sorted(runs)
    per_seed = ", ".join(f"{v:.4f}" for v in losses.mean(axis=1))
    commits = sorted({c for r in runs.values() for c in r["commits"]})
    commit = recording.git_commit(ctx.root, CODE_PATHS)
    text = (f"{notes} Mean over {len(seeds)} training seeds ({', '.join(map(str, seeds))}) and the same test tasks "
            f"for each; per-seed means {per_seed}; the 95% CI adds in quadrature the Student-t interval over the "
            f"seeds' means and the interval over tasks. {' '.join(config['record']['notes'].split())}")
    if commits and commits != [commit]:
        text += f" Trained at commit {', '.join(commits)}; evaluated at the commit below."
    return recording.write_record(
        results_dir, stem, root=ctx.root, code_paths=CODE_PATHS, command=ctx.command, device=device,
        wall_time_s=sum(r["seconds"] + r["eval_seconds"] for r in runs.values()), commit=commit,
        curve=learning_curve(results, name), paper=config["record"]["paper"], reproduction="maml_universality",
        benchmark=BENCHMARK, setting=setting, metric="MSE", higher_is_better=False, value=round(value, 4),
        ci95=round(ci, 4), n_eval_tasks=losses.shape[1], n_seeds=len(seeds), protocol=protocol,
        budget=method_facts(config, name, step)["budget"] + (f", for each of {len(seeds)} seeds" if len(seeds) > 1
                                                            else ""),
        notes=text[:2000],
    )


def ood_records(config: dict, ctx: registry.RunContext, results: dict, device: str, results_dir: Path,
                prefix: str = "ood") -> list[Path]:
    ev, written = config["eval"], []
    for name, method in config["methods"].items():
        for step in steps_of(method, config):
            facts = method_facts(config, name, step)
            tag = name if method["kind"] != "maml" else f"{name}_{step}step"
            inside = stacked(results, name, lambda e: e["in_distribution"][str(step)])
            written.append(write(
                results_dir, f"{prefix}_{tag}_in_distribution", config, ctx, device, results, name, step, inside,
                f"{label(config, name, step)}; test tasks from the training distribution",
                {**facts, "test-tasks": f"{TRAINING_TASKS} ({ev['in_distribution_tasks']} tasks)",
                 "query-points": ev["query"]},
                f"Query MSE on {ev['in_distribution_tasks']} in-distribution test tasks."))
            for kind, words in (("amplitude", "amplitude above 5"), ("phase", "phase above pi")):
                values, per_point = grid(results, name, kind, step)
                out = outside(kind, values)
                chosen = per_point[:, out].reshape(per_point.shape[0], -1)
                shown = ", ".join(f"{values[i]:g}" for i in out)
                written.append(write(
                    results_dir, f"{prefix}_{tag}_{kind}_out", config, ctx, device, results, name, step, chosen,
                    f"{label(config, name, step)}; test tasks with {words} (outside the training range)",
                    {**facts, "test-tasks": f"{kind} fixed at each of {shown}; the other parameter from training",
                     "tasks-per-value": ev["tasks"], "query-points": ev["query"]},
                    f"Query MSE averaged over {len(out)} {kind} values outside the training range ({shown}), "
                    f"{ev['tasks']} tasks each. The full curves are in ood_summary.png / ood_summary.md."))
        if method["kind"] == "maml":
            counts = sorted(ev["step_counts"])
            for region in ev["step_families"]:
                per_step = {c: stacked(results, name, lambda e: e["steps"][region][str(c)]) for c in counts}
                means = ", ".join(f"{c}: {per_step[c].mean():.4f}" for c in counts)
                lo, hi = ev["step_families"][region]
                last = counts[-1]
                written.append(write(
                    results_dir, f"{prefix}_{name}_{last}steps_{region}", config, ctx, device, results, name, last,
                    per_step[last], f"{label(config, name, last)} (trained with {method['inner_steps']}); "
                    f"tasks with amplitude U[{lo:g}, {hi:g}]",
                    {**method_facts(config, name, last),
                     "test-tasks": f"amplitude U[{lo:g}, {hi:g}], phase U[0, pi] ({ev['in_distribution_tasks']} tasks)",
                     "query-points": ev["query"]},
                    f"Resistance to overfitting: query MSE after {last} inner steps of {method['inner_lr']} on the "
                    f"K = {config['data']['k_shot']} support points, far more than the {method['inner_steps']} "
                    f"it was meta-trained with. Mean MSE by step count: {means}."))
    return written


def depth_records(config: dict, ctx: registry.RunContext, results: dict, device: str, results_dir: Path,
                  prefix: str = "depth") -> list[Path]:
    ev, written = config["eval"], []
    for name, method in config["methods"].items():
        for step in steps_of(method, config):
            facts = method_facts(config, name, step)
            count = models.parameter_count(learners.build(method, config["data"]["k_shot"]))
            tag = name if method["kind"] != "maml" else f"{name}_{step}step"
            inside = stacked(results, name, lambda e: e["in_distribution"][str(step)])
            written.append(write(
                results_dir, f"{prefix}_{tag}", config, ctx, device, results, name, step, inside,
                f"{label(config, name, step)}; {method['depth']} hidden layer(s) of {method['width']} "
                f"({count:,} parameters)",
                {**facts, "parameters": count,
                 "test-tasks": f"{TRAINING_TASKS} ({ev['in_distribution_tasks']} tasks)", "query-points": ev["query"]},
                f"Query MSE on {ev['in_distribution_tasks']} in-distribution test tasks; {count:,} parameters."))
    return written


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves(config: dict, results: dict) -> dict:
    """``{(name, step): {kind: (values, means, ci95s)}}`` of every shift grid."""
    out = {}
    for name, method in config["methods"].items():
        for step in steps_of(method, config):
            out[(name, step)] = {}
            for kind in ("amplitude", "phase"):
                values, per_point = grid(results, name, kind, step)
                stats = [summary(per_point[:, i]) for i in range(len(values))]
                out[(name, step)][kind] = (values, [m for m, _ in stats], [c for _, c in stats])
    return out


def ood_summary(config: dict, results: dict, title: str) -> tuple[str, bytes]:
    """The summary table (markdown) and the figure: MSE against amplitude, against phase, against inner steps."""
    plt = _plt()
    data, ev = curves(config, results), config["eval"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), dpi=100)
    for (name, step), shifts in data.items():
        style = "-" if step in (0, config["methods"][name].get("inner_steps")) else "--"
        for ax, kind in zip(axes[:2], ("amplitude", "phase")):
            values, means, cis = shifts[kind]
            ax.errorbar(values, means, cis, marker="o", markersize=3, capsize=2, linestyle=style,
                        label=label(config, name, step))
    axes[0].axvspan(0.1, 5.0, color="grey", alpha=0.15, label="training range")
    axes[1].axvspan(0.0, math.pi, color="grey", alpha=0.15, label="training range")
    for ax, xlabel in zip(axes[:2], ("amplitude", "phase")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("query MSE (log scale)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    counts = sorted(ev["step_counts"])
    for name, method in config["methods"].items():
        for region in ev["step_families"]:
            if method["kind"] == "maml":
                per = [summary(stacked(results, name, lambda e: e["steps"][region][str(c)])) for c in counts]
                axes[2].errorbar([max(c, 0.5) for c in counts], [m for m, _ in per], [c for _, c in per], marker="o",
                                 markersize=3, capsize=2, label=f"{method.get('label', name)}, {region}")
            else:
                m, _ = summary(stacked(results, name, lambda e: e["steps"][region]["0"]))
                axes[2].axhline(m, linestyle=":", color="black" if region == "in_distribution" else "grey",
                                label=f"{method.get('label', name)}, {region}")
    axes[2].set_xscale("log")
    axes[2].set_yscale("log")
    axes[2].set_xlabel("inner gradient steps at test time (0 plotted at 0.5)")
    fig.text(0.5, 0.005, "A point is left out where some test task diverged (query MSE NaN, inf or above 1e6); "
             "the summary table gives the counts.", ha="center", fontsize=7)
    axes[2].set_ylabel("query MSE (log scale)")
    axes[2].grid(alpha=0.3)
    axes[2].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    png = recording.figure_png(fig)

    lines = ["<!-- Generated by `mlatlas repro run maml_universality`; do not edit by hand. -->",
             f"# {title}", "",
             f"Query MSE (mean ± 95% CI over {len(config['seeds'])} seeds and {ev['tasks']} tasks per value). "
             "Training range: amplitude [0.1, 5], phase [0, π].", ""]
    for kind in ("amplitude", "phase"):
        keys = list(data)
        values = data[keys[0]][kind][0]
        lines += [f"## Error against {kind}", "",
                  f"| {kind} | " + " | ".join(label(config, n, s) for n, s in keys) + " |",
                  "| ---: | " + " | ".join("---:" for _ in keys) + " |"]
        arrays = {key: grid(results, key[0], kind, key[1])[1] for key in keys}
        for i, v in enumerate(values):
            cells = [cell(arrays[key][:, i]) for key in keys]
            lines.append(f"| {v:.3g} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Error against inner steps at test time", "",
              "| learner, tasks | " + " | ".join(str(c) for c in counts) + " |",
              "| --- | " + " | ".join("---:" for _ in counts) + " |"]
    for name, method in config["methods"].items():
        for region in ev["step_families"]:
            if method["kind"] == "maml":
                row = [cell(stacked(results, name, lambda e: e["steps"][region][str(c)])) for c in counts]
            else:
                row = [cell(stacked(results, name, lambda e: e["steps"][region]["0"]))] * len(counts)
            lines.append(f"| {method.get('label', name)}, {region} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n", png


def depth_summary(config: dict, results: dict, title: str) -> tuple[str, bytes]:
    plt = _plt()
    groups: dict[tuple[str, int], list] = {}
    for name, method in config["methods"].items():
        for step in steps_of(method, config):
            losses = stacked(results, name, lambda e: e["in_distribution"][str(step)])
            m, _ = summary(losses)
            sd = float(losses.mean(axis=1).std(ddof=1)) if len(losses) > 1 else 0.0
            count = models.parameter_count(learners.build(method, config["data"]["k_shot"]))
            groups.setdefault((method.get("label", name), step), []).append((method["depth"], m, cell(losses), sd,
                                                                              count))
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=100)
    lines = ["<!-- Generated by `mlatlas repro run maml_universality`; do not edit by hand. -->", f"# {title}", "",
             f"In-distribution query MSE, mean ± 95% CI over {len(config['seeds'])} seeds and "
             f"{config['eval']['in_distribution_tasks']} tasks (sd over seeds' means in brackets).", "",
             "| learner | hidden layers | parameters | MSE |", "| --- | ---: | ---: | ---: |"]
    for (text, step), rows in groups.items():
        rows.sort()
        name = text + (f", {step} step{'s' if step != 1 else ''}" if step else "")
        ax.errorbar([r[0] for r in rows], [r[1] for r in rows], [r[3] for r in rows], marker="o", capsize=3,
                    linestyle="-" if step in (0, 1) else "--", label=name)
        lines += [f"| {name} | {d} | {n:,} | {c} ({sd:.3f}) |" for d, m, c, sd, n in rows]
    ax.set_xlabel("hidden layers (parameters held near 1,750)")
    ax.set_ylabel("query MSE (log scale); bars: sd over seeds")
    ax.set_yscale("log")
    ax.set_xticks(sorted({r[0] for rows in groups.values() for r in rows}))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return "\n".join(lines) + "\n", recording.figure_png(fig)


def write_all(config: dict, ctx: registry.RunContext, results: dict, device: str,
              results_dir: Path = RESULTS_DIR) -> list[Path]:
    # Files are named after the experiment for the default and depth configs, after the config otherwise.
    prefix = config["experiment"] if ctx.config_name in ("default", "depth") else ctx.config_name
    if config["experiment"] == "ood":
        written = ood_records(config, ctx, results, device, results_dir, prefix)
        text, png = ood_summary(config, results, "Sinusoids outside the meta-training distribution "
                                                 f"({config['data']['k_shot']}-shot)")
    else:
        written = depth_records(config, ctx, results, device, results_dir, prefix)
        text, png = depth_summary(config, results, "Depth at a fixed parameter count "
                                                   f"({config['data']['k_shot']}-shot sinusoids)")
    recording._atomic_write(results_dir / f"{prefix}_summary.md", text.encode())
    recording._atomic_write(results_dir / f"{prefix}_summary.png", png)
    return [p for p in written if p] + [results_dir / f"{prefix}_summary.md", results_dir / f"{prefix}_summary.png"]
