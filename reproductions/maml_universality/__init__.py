"""Meta-Learning and Universality (Finn & Levine, ICLR 2018): MAML against a recurrent (SNAIL/TCML-style)
meta-learner on sinusoids outside the meta-training distribution, more inner steps at test time, depth at a fixed
parameter count, the bias transformation, and Omniglot test characters under shear and scale (see README.md)."""

from __future__ import annotations

from reproductions.core import registry


def run(config: dict, ctx: registry.RunContext) -> dict[str, float]:
    if config.get("experiment") == "omniglot":
        from reproductions.maml_universality import omniglot

        return omniglot.run(config, ctx)
    from reproductions.maml_universality import experiment, report

    results, device = experiment.run_all(config, ctx)
    if ctx.write_record:
        report.write_all(config, ctx, results, device)
    metrics = {}
    for name, method in config["methods"].items():
        for step in experiment.steps_of(method, config):
            losses = report.stacked(results, name, lambda e: e["in_distribution"][str(step)])
            tag = name if method["kind"] != "maml" else f"{name}_{step}step"
            metrics[f"{tag}_mse_in_distribution"] = float(losses.mean())
            if config["experiment"] == "ood":
                for kind in ("amplitude", "phase"):
                    values, per_point = report.grid(results, name, kind, step)
                    out = report.outside(kind, values)
                    metrics[f"{tag}_mse_{kind}_out"] = float(per_point[:, out].mean()) if out else float("nan")
    return metrics


REPRODUCTION = registry.Reproduction(
    name="maml_universality",
    paper="maml-universality",
    summary="Meta-learning and universality: MAML vs a SNAIL-style learner on out-of-distribution sinusoids, depth, "
            "inner steps, bias transformation; Omniglot under shear and scale",
    run=run,
)
