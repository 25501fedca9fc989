"""MetaInit (Dauphin & Schoenholz, NeurIPS 2019): choose each weight tensor's norm at initialisation by signed
gradient descent on the gradient quotient. ``method`` works on any ``nn.Module``; ``experiment`` is our
scaled-down test of the paper's claims on Omniglot and ``comparison`` the MNIST comparison with LSUV, each
initialisation with its own tuned learning rate (see README.md)."""

from __future__ import annotations

from reproductions.core import registry


def run(config: dict, ctx: registry.RunContext) -> dict[str, float]:
    from reproductions.metainit import comparison, experiment, report

    if config.get("experiment") == "mnist":
        results, device = comparison.run_all(config, ctx)
        if ctx.write_record and not config.get("smoke"):  # smoke configs exercise the code, they are no result
            report.write_comparison(config, ctx, results, device)
        metrics = {}
        for cond, res in results.items():
            s = report.comparison_stats(res)
            metrics[f"{cond}_lr"] = res["lr"] if res["lr"] is not None else float("nan")
            metrics[f"{cond}_test_error_pct"] = s["test_error"] if s else float("nan")
            if res["edge"]:
                print(f"warning: {cond}: {res['edge']}")
        return metrics

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
    summary="MetaInit: tune weight norms to minimise the gradient quotient; plain deep MLPs on Omniglot and MNIST",
    run=run,
)
