"""L2G (Lee, Na, Lee & Hwang 2019) on Prototypical Networks and Relation Network, standard Omniglot protocol.

For every seed of ``seeds`` the base learner is trained twice from the same initialisation on the same stream of
training draws: once plainly (``inner_lr = 0``: both episodes of each draw, no inner step) and once with L2G. Both
are tested on the same test episodes. Records: each variant (mean over seeds), and L2G's gain (paired difference,
Student-t 95% interval over seeds) with the verdict on the claim "L2G improves the base learner".
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch

from reproductions.core import recording, registry
from reproductions.core.runtime import pick_device
from reproductions.datasets.omniglot_benchmark import heldout_accuracy, train_one
from reproductions.datasets.omniglot_standard import _channels_last, load_standard
from reproductions.l2g.method import L2G
from reproductions.prototypical_networks.method import PrototypicalNetworks
from reproductions.relation_network.method import RelationNetwork

NAME, PAPER = "l2g", "l2g"
BASES = {"prototypical_networks": PrototypicalNetworks, "relation_network": RelationNetwork}
BASE_TITLES = {"prototypical_networks": "Prototypical Networks", "relation_network": "Relation Network"}
VARIANTS = ("plain", "l2g")


def variant_config(config: dict, seed: int, variant: str) -> dict:
    """The config of one training run: the seed, and for ``plain`` no inner step (``inner_lr = 0``)."""
    cfg = copy.deepcopy(config)
    cfg["seed"] = seed
    if variant == "plain":
        cfg["method"]["l2g"]["inner_lr"] = 0.0
    return cfg


def claim_verdict(gain: float, ci: float) -> str:
    if gain - ci > 0:
        return "holds"
    if gain + ci < 0:
        return "does not hold (L2G is worse)"
    return "not shown (the 95% interval includes 0)"


def run(config: dict, ctx: registry.RunContext) -> dict[str, float]:
    torch.set_num_threads(config.get("threads", 1))
    device = pick_device(ctx.device)
    base_name = config["method"]["base"]
    if base_name not in BASES:
        raise ValueError(f"method.base must be one of {', '.join(BASES)}, not {base_name!r}")
    seeds = [int(s) for s in config["seeds"]]
    data_cfg, ev = config["data"], config["eval"]
    start = time.perf_counter()
    data = load_standard(data_cfg["split"], getattr(ctx, "data_dir", None) or data_cfg.get("data_dir"),
                         data_cfg.get("base_url"), data_cfg.get("split_url"))
    accs = {(v, key): [] for v in VARIANTS for key in _keys(ev)}  # per seed: per-episode accuracies
    train_seconds = 0.0
    for seed in seeds:
        for variant in VARIANTS:
            cfg = variant_config(config, seed, variant)
            method = L2G.from_config(BASES[base_name](), cfg)
            model, state = train_one(method, NAME, cfg, ctx, f"{variant}_seed{seed}", device, data.train,
                                     lambda m: {}, prepare=lambda m: _channels_last(m, device))
            train_seconds += state.seconds
            for (n_way, k_shot), key in zip(ev["settings"], _keys(ev)):
                # The same test episodes for every model (a fixed evaluation seed), so the comparison is paired.
                accs[(variant, key)].append(heldout_accuracy(method, model, data.test, n_way, k_shot, ev["n_query"],
                                                             ev["episodes"], ev["seed"], device))
    metrics: dict[str, float] = {}
    for key in _keys(ev):
        for variant in VARIANTS:
            metrics[f"{variant}_{key}_acc_pct"] = float(np.mean(accs[(variant, key)]))
        gains = [np.mean(l) - np.mean(p) for l, p in zip(accs[("l2g", key)], accs[("plain", key)])]
        metrics[f"gain_{key}_pct"], metrics[f"gain_{key}_ci95"] = recording.mean_ci95(gains)
    if ctx.write_record:
        _write_records(config, ctx, data, accs, device, train_seconds, time.perf_counter() - start)
    return metrics


def _keys(ev: dict) -> list[str]:
    return [f"{n}way{k}shot" for n, k in ev["settings"]]


def _write_records(config, ctx, data, accs, device, train_seconds, wall) -> None:
    rec, tr, ev, l2g = config["record"], config["train"], config["eval"], config["method"]["l2g"]
    base = config["method"]["base"]
    seeds = config["seeds"]
    half = tr["n_way"] // 2
    budget = (f"{tr['iterations']:,} updates per model, each on one {tr['n_way']}-way {tr['k_shot']}-shot draw "
              f"({tr['n_query']} queries per class) split into two {half}-way episodes; the last model tested; "
              f"{len(seeds)} seeds x 2 variants, {train_seconds / 60:.0f} minutes of training in all on "
              f"{config.get('threads', 1)} CPU thread(s) of a 2-core machine shared with other jobs")
    common = dict(root=ctx.root, code_paths=[f"reproductions/{NAME}", "reproductions/datasets", "reproductions/core",
                                             f"reproductions/{base}"],
                  command=ctx.command or f"mlatlas repro run {NAME} --config {ctx.config_name}",
                  device=str(device), wall_time_s=wall, paper=PAPER, reproduction=NAME, n_seeds=len(seeds),
                  budget=budget, tolerance=rec.get("tolerance"))
    commit = recording.git_commit(ctx.root, common["code_paths"])
    for (n_way, k_shot), key in zip(ev["settings"], _keys(ev)):
        protocol = {
            "data": data.describe(), "split": data.split, "train_characters": data.characters["train"],
            "test_characters": data.characters["test"], "base_learner": BASE_TITLES[base],
            "train_way": half, "train_shot": tr["k_shot"], "train_queries": tr["n_query"],
            "train_updates": tr["iterations"], "l2g_weight": l2g["weight"], "l2g_inner_lr": l2g["inner_lr"],
            "test_way": n_way, "test_shot": k_shot, "test_queries": ev["n_query"], "test_episodes": ev["episodes"],
            "seeds": len(seeds), **rec.get("protocol", {}),
        }
        bench = f"Omniglot {n_way}-way {k_shot}-shot (standard protocol, test classes)"
        setting = (f"{BASE_TITLES[base]} on standard Omniglot ({data.split}), trained on pairs of {half}-way "
                   f"{tr['k_shot']}-shot episodes over disjoint classes; {ev['n_query']} test queries per class")
        notes = (rec.get("notes") or "").strip()
        for variant in VARIANTS:
            value, ci = recording.mean_ci95_over_seeds_and_tasks(np.array(accs[(variant, key)]))
            what = ("L2G (bilevel: one inner step on the first episode, judged on the second)"
                    if variant == "l2g" else "plain learner on both episodes (no inner step)")
            recording.write_record(
                Path(ctx.root) / "reproductions" / NAME / "results", f"{ctx.config_name}_{variant}_{key}",
                commit=commit, benchmark=bench, setting=f"{setting}; {what}", metric="accuracy", unit="%",
                higher_is_better=True, value=round(value, 2), ci95=round(ci, 2), n_eval_tasks=ev["episodes"],
                protocol={**protocol, "variant": variant},
                notes=f"Mean over {len(seeds)} seeds; interval over seeds and test episodes in quadrature. {notes}",
                **common)
        gains = [np.mean(l) - np.mean(p) for l, p in zip(accs[("l2g", key)], accs[("plain", key)])]
        gain, ci = recording.mean_ci95(gains)
        claim = f"L2G improves {BASE_TITLES[base]} on Omniglot {n_way}-way {k_shot}-shot"
        recording.write_record(
            Path(ctx.root) / "reproductions" / NAME / "results", f"{ctx.config_name}_gain_{key}",
            commit=commit, benchmark=bench, setting=f"{setting}; L2G minus the plain learner, paired by seed",
            metric="accuracy gain of L2G over the plain learner", unit="percentage points", higher_is_better=True,
            value=round(gain, 2), ci95=round(ci, 2), n_eval_tasks=ev["episodes"],
            protocol={**protocol, "variant": "l2g minus plain"}, paper_value=rec.get("paper_gains", {}).get(key),
            notes=(f"Claim '{claim}': {claim_verdict(gain, ci)} at our budget (gain {gain:+.2f} points, 95% "
                   f"interval ±{ci:.2f} over {len(seeds)} seeds; per seed: "
                   f"{', '.join(f'{g:+.2f}' for g in gains)}). {notes}"),
            **common)


REPRODUCTION = registry.Reproduction(
    NAME, PAPER, "L2G (bilevel: a step on one episode judged on an unseen one) on ProtoNets / Relation Network, "
                 "standard Omniglot, paired with the plain learner over seeds", run,
)
