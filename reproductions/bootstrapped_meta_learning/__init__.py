"""Bootstrapped Meta-Learning (BMG; Flennerhag et al., ICLR 2022): the meta-learner is moved towards a target that
the learner reaches L updates beyond the K it differentiates through, under a matching function. ``method`` holds
MG and BMG for a meta-learned entropy weight; ``experiment`` runs them in the non-stationary two-colours grid world
(the default); ``fewshot`` compares them meta-learning MAML's initialisation on Omniglot (configs with
``experiment: fewshot``; see README.md)."""

from __future__ import annotations

from reproductions.core import registry


def run(config: dict, ctx: registry.RunContext) -> dict[str, float]:
    experiment_kind = config.get("experiment", "gridworld")
    if experiment_kind not in ("gridworld", "fewshot"):
        raise registry.RegistryError(f"experiment: {experiment_kind!r} is not one of gridworld, fewshot")
    if experiment_kind == "fewshot":
        from reproductions.bootstrapped_meta_learning import fewshot

        return fewshot.run(config, ctx)
    from reproductions.bootstrapped_meta_learning import experiment, report

    specs, results, device = experiment.run_all(config, ctx)
    if ctx.write_record:
        report.write_all(config, ctx, specs, results, device)
    metrics = {}
    for spec, r in zip(specs, results):
        metrics[f"{spec.name}_reward_per_step"] = float(report.mean_reward(r).mean())
        metrics[f"{spec.name}_final_entropy_weight"] = float(sum(r.entropy_weight[-1]) / len(r.entropy_weight[-1]))
    return metrics


REPRODUCTION = registry.Reproduction(
    name="bootstrapped_meta_learning",
    paper="bootstrapped-meta-learning",
    summary="BMG vs K-step meta-gradients meta-learning an actor-critic's entropy weight (two-colours grid world) "
            "and MAML's initialisation (Omniglot 5-way 1-shot)",
    run=run,
)
