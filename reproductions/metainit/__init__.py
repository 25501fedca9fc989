"""MetaInit (Dauphin & Schoenholz, NeurIPS 2019): choose each weight tensor's norm at initialisation by signed
gradient descent on the gradient quotient. ``method`` works on any ``nn.Module``; ``experiment`` is our
scaled-down test of the paper's claims on Omniglot (see README.md)."""

from __future__ import annotations

from reproductions.core import registry


def run(config: dict, ctx: registry.RunContext) -> dict[str, float]:
    from reproductions.metainit import experiment, report

    results, device = experiment.run_all(config, ctx)
    if ctx.write_record:
        report.write_all(config, ctx, results, device)
    metrics = {}
    for (depth, cond), runs in report.group(results).items():
        s = report.summarise(runs)
        metrics[f"depth{depth}_{cond}_test_error_pct"] = s["test_error"]
        metrics[f"depth{depth}_{cond}_gq_start"] = s["gq_start"]
    return metrics


REPRODUCTION = registry.Reproduction(
    name="metainit",
    paper="metainit",
    summary="MetaInit: tune weight norms to minimise the gradient quotient; plain deep MLPs on Omniglot",
    run=run,
)
