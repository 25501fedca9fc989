"""Learning to Optimize (Li & Malik, ICLR 2017): an optimiser as a policy from recent objective changes and
gradients to the next step, learned with guided policy search, on logistic regression, robust linear regression and
a small neural-net classifier, against tuned gradient descent, momentum, conjugate gradient and L-BFGS
(see README.md)."""

from __future__ import annotations

from reproductions.core import registry


def run(config: dict, ctx: registry.RunContext) -> dict[str, float]:
    from reproductions.learning_to_optimize import experiment, report

    results, device = experiment.run_all(config, ctx)
    if ctx.write_record:
        report.write_all(config, ctx, results, device)
    metrics = {}
    for family, curves in report.curves_by_family(results).items():
        for name, a in curves.items():
            ok = report.finite_problems(a)
            metrics[f"{family}_{name}_final"] = float(a[:, ok, -1].mean())
            metrics[f"{family}_{name}_auc"] = float(a[:, ok].mean())
    return metrics


REPRODUCTION = registry.Reproduction(
    name="learning_to_optimize",
    paper="learning-to-optimize",
    summary="Learning to Optimize: guided policy search learns an optimiser; logistic, robust regression, small net",
    run=run,
)
