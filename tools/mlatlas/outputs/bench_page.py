"""Markdown for the results of ``mlatlas bench`` (``benchmarks/results/meta_bench.json``): the terminal table
and the website's benchmarks page. Every string from the results file goes through :func:`md_text`."""

from __future__ import annotations

from mlatlas.outputs.mdescape import md_text

IMPL_NAMES = {"ours": "ours (reproductions.core)", "ours-lean": "ours, lean options (few tasks per call)",
              "higher": "higher", "learn2learn": "learn2learn"}
OURS = ("ours", "ours-lean")


def _seconds(value: float) -> str:
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _row(config: dict, result: dict, memory: bool) -> str:
    name = md_text(IMPL_NAMES.get(result["impl"], result["impl"]))
    if not result.get("available"):
        reason = result.get("reason", "unknown")
        text = reason if reason.startswith("not applicable") else f"not available: {reason}"
        cells = [md_text(config["key"]), name, md_text(text)]
        cells += ["-"] * (5 if memory else 3)
        return "| " + " | ".join(cells) + " |"
    spread = f"{_seconds(result['seconds_q1'])} - {_seconds(result['seconds_q3'])}"
    cells = [
        md_text(config["key"]),
        name,
        f"{_seconds(result['seconds_median'])} ({spread})",
        f"{result['tasks_per_second']:.1f}",
        _ratio(result["time_ratio_to_ours"]),
        f"{result['grad_rel_diff']:.1e}",
    ]
    if memory:
        cells += [f"{result['peak_mib']:.1f}", _ratio(result.get("memory_ratio_to_ours"))]
    return "| " + " | ".join(cells) + " |"


def render_table(data: dict) -> str:
    """One row per (configuration, implementation): time per meta-iteration with its interquartile range,
    tasks per second, time relative to ours, agreement of the meta-gradient and peak memory."""
    memory = any("peak_mib" in r for c in data["configs"] for r in c["results"])
    head = ["configuration", "implementation", "s / meta-iteration, median (IQR)", "tasks / s",
            "time vs ours", "grad. diff. vs ours"]
    if memory:
        head += ["peak MiB", "memory vs ours"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for config in data["configs"]:
        lines += [_row(config, result, memory) for result in config["results"]]
    return "\n".join(lines) + "\n"


def _versus(peer: dict, ours: dict, label: str) -> str:
    """How much time and memory ``peer`` needs relative to one of our variants (ratios of their medians)."""
    text = f"{peer['seconds_median'] / ours['seconds_median']:.2f}x the time of {label}"
    if "peak_mib" in peer and "peak_mib" in ours:
        text += (f" and {peer['peak_mib'] / ours['peak_mib']:.2f}x its peak memory "
                 f"({peer['peak_mib']:.2f} MiB vs {ours['peak_mib']:.2f} MiB)")
    return text


def _summary(config: dict) -> str:
    """One line per configuration: how much time and memory each peer needs relative to each of our variants."""
    rows = {r["impl"]: r for r in config["results"] if r.get("available")}
    ours = [impl for impl in OURS if impl in rows]
    parts = [f"{md_text(impl)} needs " + "; ".join(_versus(row, rows[o], o) for o in ours)
             for impl, row in rows.items() if impl not in OURS]
    return f"- {md_text(config['key'])}: " + ("; ".join(parts) or "no peer could run") + "."


# The goal the benchmark checks (issue 8): never slower than higher, at least this much faster on the sinusoid
# configurations, and peak memory no higher than higher's.
SINUSOID_SPEEDUP_GOAL = 2.0


def goal_line(config: dict) -> str | None:
    """One line per configuration: for each of our variants, its speed-up over higher and its memory relative to
    higher's, and whether that meets the goal; None when higher did not run."""
    rows = {r["impl"]: r for r in config["results"] if r.get("available")}
    peer = rows.get("higher")
    if peer is None:
        return None
    family = config.get("family") or config["key"].split("-")[0]
    wanted = SINUSOID_SPEEDUP_GOAL if family == "sinusoid" else 1.0
    parts = []
    for impl in (i for i in OURS if i in rows):
        speedup = peer["seconds_median"] / rows[impl]["seconds_median"]
        text, met = f"{speedup:.2f}x faster", speedup >= wanted
        if "peak_mib" in peer and "peak_mib" in rows[impl]:
            memory = rows[impl]["peak_mib"] / peer["peak_mib"]
            text += f", {memory:.2f}x the peak memory"
            met = met and memory <= 1.0
        else:
            text, met = text + ", memory not measured", False
        parts.append(f"{md_text(impl)}: {text} ({'meets' if met else 'misses'} the goal)")
    goal = f"at least {wanted:g}x faster" if wanted > 1 else "not slower"
    return f"- {md_text(config['key'])} ({goal}, memory no higher): " + "; ".join(parts) + "."


def _load(config: dict) -> str:
    load = config["load_during_timing"]
    return f"{load['min']:.1f} / {load['median']:.1f} / {load['max']:.1f}"


def render_bench_page(data: dict) -> str:
    """The benchmarks page: what was compared, the table, the machine, the load and how to reproduce."""
    machine, versions, settings = data["machine"], data["versions"], data["settings"]
    version_text = ", ".join(f"{md_text(k)} {md_text(v)}" for k, v in versions.items())
    lines = [
        "# Speed of our code: the meta-learning core against higher",
        "",
        "How fast and how lean our reproduction core (`reproductions.core.functional`) computes MAML "
        "meta-gradients, next to the established [higher](https://github.com/facebookresearch/higher) library, "
        "on identical work: same initial weights, same task batch, same inner learning rate.",
        "",
        f"Recorded by `{md_text(data['command'])}` at commit `{md_text(data['commit'])}` on "
        f"{md_text(data['date'])}" + (" (quick smoke run, not a result)." if settings.get("quick") else "."),
        "",
        "## Results",
        "",
        render_table(data),
        "*time vs ours* and *memory vs ours* are the implementation's median time and peak memory divided by "
        "ours (above 1 means more than ours). *grad. diff.* is the largest absolute difference between its "
        "meta-gradient and ours divided by the largest component of ours, computed in float64 on the timed "
        f"batch; the benchmark stops if it exceeds {settings['rtol']:g}.",
        "",
        "In words (ratios of medians; above 1 means the peer is slower or larger than our variant):",
        "",
        *[_summary(config) for config in data["configs"]],
        "",
        f"Against our goal (never slower than higher, at least {SINUSOID_SPEEDUP_GOAL:g}x faster on the sinusoid "
        "configurations, peak memory no higher than higher's), each of our variants on its own:",
        "",
        *[line for line in map(goal_line, data["configs"]) if line],
        "",
        "Where ours runs the tasks together (the MLP), it holds the graphs of all tasks of the meta-batch at "
        "once, while a per-task loop holds one task's at a time: that is the price of its speed in memory. The "
        "core's lean options (*ours-lean*) trade part of the speed for memory: `meta_gradient(..., "
        "vectorize=True, chunk=C)` (in the reproductions `method.tasks_per_call: C`) runs C tasks at a time and "
        "back-propagates each group before adapting the next, and `recompute=True` (`method.recompute: true`) "
        "keeps only each inner step's parameters for the backward pass, recomputing the step's gradient graph "
        "there, which pays on long inner loops; the strategy table says which each configuration uses. The "
        "reproductions run the default (*ours*).",
        "",
        "| configuration | what | our strategy | load average during timing (min / median / max) |",
        "|---|---|---|---|",
    ]
    for config in data["configs"]:
        lines.append(f"| {md_text(config['key'])} | {md_text(config['description'])} | "
                     f"{md_text(config['ours_strategy'])} | {_load(config)} |")
    memory_methods = sorted({c["memory_method"] for c in data["configs"] if c.get("memory_method")})
    lines += [
        "",
        "## Method",
        "",
        f"- One meta-iteration is the forward and backward pass that leaves the mean meta-gradient of the task "
        f"batch in `.grad` (no outer optimiser step, no data loading). Timing in {md_text(settings['timing_dtype'])} "
        f"with one thread, {settings['warmup']} warm-up meta-iterations per implementation, then "
        f"{settings['repeats']} rounds of about {settings['round_seconds']:g} s each; the implementations "
        "alternate order from round to round so that load from other processes falls on all alike. "
        "Reported: median and interquartile range (IQR) of the per-meta-iteration times over the rounds.",
        "- higher runs its documented idiom: `innerloop_ctx` per task with a differentiable SGD inner optimiser "
        "(`copy_initial_weights=False`, `track_higher_grads` off for first order, in which case the query "
        "gradient at the adapted weights is added to the initial weights by hand) and a backward pass per task.",
        "- *ours* is what the reproductions run. For the MLP, which has no batch norm, it runs the tasks of the "
        "meta-batch together as the sinusoid methods' `MAML.meta_step` does: the tasks are a leading dimension "
        "of every tensor, each linear layer one batched matrix product with every task's own weights "
        "(`reproductions/core/batched.py`), and plain autograd gives every task's inner gradient from one "
        "backward pass of the summed task losses; no `torch.func.vmap`, whose per-operation rewriting "
        "dominated the time on these small tensors. For the conv net it loops over the "
        "tasks and back-propagates each task's query loss before adapting the next (`meta_gradient`), because "
        "vmapped second-order meta-gradients through affine batch norm are not exact; the query pass (75 "
        "images) runs in the channels_last memory layout, in which the CPU's convolutions and pooling are "
        "faster, while the inner steps on the 5 support images keep the default layout, which was faster there.",
        "- Peak memory: " + "; ".join(md_text(m) for m in memory_methods) + ". Each (configuration, "
        "implementation) runs in a fresh Python process: one untimed meta-iteration (one-time initialisation), "
        "freed memory handed back to the system, then 3 meta-iterations; the figure is the resident-memory "
        "high-water mark during those minus the resident memory just before them, median over "
        f"{settings.get('memory_runs', 1)} processes." if memory_methods else "- Peak memory was not measured in this run.",
        "",
        "## Machine",
        "",
        f"- CPU: {md_text(machine['cpu'])}, {machine['logical_cpus']} logical CPUs; torch threads: "
        f"{machine['torch_threads']}; {md_text(machine['os'])}",
        f"- Versions: {version_text}",
        f"- Load average (1, 5, 15 min) before the run: "
        f"{', '.join(f'{v:.1f}' for v in data['load_average_before'])}; after: "
        f"{', '.join(f'{v:.1f}' for v in data['load_average_after'])}. The machine is shared; a load above the "
        "number of CPUs means other processes competed for them during the run.",
        f"- Wall time of the run: {data['wall_seconds']:.0f} s",
        "",
        "## Reproduce",
        "",
        "```bash",
        "pip install -e '.[bench]'   # higher==0.2.1",
        # Inside a code fence Markdown is inert: only a backtick run or a line break could end it.
        " ".join(str(data["command"]).replace("`", "").split())
        + " --json benchmarks/results/meta_bench.json --markdown benchmarks/results/meta_bench.md",
        "```",
        "",
    ]
    return "\n".join(lines)
