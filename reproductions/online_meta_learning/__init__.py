"""Online Meta-Learning (Finn, Rajeswaran, Kakade & Levine, ICML 2019): follow the meta leader (FTML) against
training on everything, follow the leader with fine-tuning and training from scratch, on Rainbow MNIST tasks that
arrive one after another (see README.md)."""

from __future__ import annotations

from reproductions.core import registry


def run(config: dict, ctx: registry.RunContext) -> dict[str, float]:
    from reproductions.online_meta_learning import experiment, report

    results, seconds, device = experiment.run_all(config, ctx)
    if ctx.write_record:
        report.write_all(config, ctx, results, seconds, device)
    metrics = {}
    for m, s in report.summarise(results, config).items():
        metrics[f"{m}_points_to_threshold"] = s["efficiency"]
        metrics[f"{m}_accuracy_at_{config['report']['small_amount']}"] = s["acc_small"]
        metrics[f"{m}_accuracy_at_{max(config['data']['schedule'])}"] = s["acc_final"]
    return metrics


REPRODUCTION = registry.Reproduction(
    name="online_meta_learning",
    paper="online-meta-learning",
    summary="FTML vs train-on-everything, FTL + fine-tune and from scratch on sequential Rainbow MNIST",
    run=run,
)
