"""BMG's multi-task few-shot experiment (MAML-style) in a version that fits on Omniglot.

The meta-learner is MAML's initialisation ``w`` of the 4-block strided network (:mod:`reproductions.omniglot_maml`);
the update rule is ``K`` SGD steps of size ``inner_lr`` on the support loss (the core's functional ``adapt``),
giving ``x_K(w)``, differentiable in ``w`` (second order). Per episode:

* MG (``mg_loss``): the query cross-entropy of ``x_K(w)``: plain second-order MAML with ``K`` inner steps.
* BMG (``bmg_loss``): the target ``x~`` runs ``L - 1`` further support steps from ``x_K`` and then one step of
  size ``target_lr`` on the query cross-entropy (``bootstrap_target``; no gradient flows into it); the
  meta-objective is the matching function ``mu(x~, x_K(w))`` (``matching``): the KL divergence
  ``KL(p_x~ || p_x_K)`` between the two networks' predictions on the query images, averaged over them, or half the
  squared Euclidean distance between the parameters.

With ``L = 1`` and Euclidean matching the BMG meta-gradient is exactly ``target_lr`` times the MG one (the tests
check it). Every agent meta-trains on the standard Omniglot protocol (:mod:`reproductions.datasets.omniglot_standard`)
through the shared episodic loop (:func:`omniglot_benchmark.train_one`: one episode at a time, so batch norm's
batch statistics stay per task; checkpoints, exact resume), then is tested on the same 5-way 1-shot episodes of the
423 test characters. A finished agent is cached with the commit it ran at.

With ``seeds`` (a list; default ``[seed]``) every agent is trained once per training seed; seed ``s`` trains and
tests exactly as a config with ``seed: s`` alone (its own test episodes, drawn with ``s + 1000``), so its cached job
is shared with single-seed runs. Each agent's value is the mean over the seeds of each seed's mean test accuracy,
with a Student-t interval over those seed means; a claim is the BMG minus MG difference paired by episode within
each seed, then averaged over the seeds with a Student-t interval over the seeds' differences. With one seed both
intervals are over the test episodes.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from reproductions.bootstrapped_meta_learning import method as grid_method
from reproductions.bootstrapped_meta_learning.report import claim_verdict
from reproductions.core import recording, registry
from reproductions.core.functional import Params, adapt, channels_last, parameters_of
from reproductions.core.runtime import pick_device
from reproductions.datasets import omniglot_standard
from reproductions.datasets.omniglot_benchmark import Episode, heldout_accuracy, train_one
from reproductions.omniglot_maml.method import OmniglotMAML

NAME = "bootstrapped_meta_learning"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
CODE_PATHS = ["reproductions/bootstrapped_meta_learning", ":(exclude)reproductions/bootstrapped_meta_learning/results",
              "reproductions/core", "reproductions/omniglot_maml", "reproductions/datasets"]
METHODS = ("mg", "bmg")
MATCHINGS = ("kl", "euclidean")


# --------------------------------------------------------------------------------------------------
# The two meta-objectives, for one episode
# --------------------------------------------------------------------------------------------------


def _cross_entropy(n_way: int):
    def loss(logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits[:, :n_way], y)

    return loss


def query_logits(model: nn.Module, params: Params, episode: Episode) -> Tensor:
    return functional_call(model, params, (channels_last(episode.query_x),))[:, : episode.n_way]


def adapted(model: nn.Module, params: Params, episode: Episode, steps: int, lr: float) -> Params:
    """``x_K(w)``: ``steps`` SGD steps on the support loss from ``params``, second order (a graph back to them)."""
    return adapt(model, params, (episode.support_x, episode.support_y), _cross_entropy(episode.n_way), steps, lr)


def mg_loss(model: nn.Module, params: Params, episode: Episode, K: int, lr: float) -> Tensor:
    """The K-step meta-objective: query cross-entropy after ``K`` inner steps (second-order MAML)."""
    return F.cross_entropy(query_logits(model, adapted(model, params, episode, K, lr), episode), episode.query_y)


def bootstrap_target(model: nn.Module, x_k: Params, episode: Episode, L: int, lr: float, target_lr: float) -> Params:
    """``x~``: ``L - 1`` further support steps of the update rule from ``x_K``, then one step of size ``target_lr``
    on the meta-objective (the query cross-entropy). Detached: gradients stop at the target."""
    if L < 1:
        raise ValueError(f"L must be at least 1, not {L}")
    loss = _cross_entropy(episode.n_way)
    x = {k: v.detach() for k, v in x_k.items()}
    x = adapt(model, x, (episode.support_x, episode.support_y), loss, L - 1, lr, first_order=True)
    x = adapt(model, x, (episode.query_x, episode.query_y), loss, 1, target_lr, first_order=True)
    return {k: v.detach() for k, v in x.items()}


def matching(model: nn.Module, target: Params, x: Params, episode: Episode, kind: str) -> Tensor:
    """``mu(x~, x)``: ``kl`` = mean over the query images of KL(p_target || p_x); ``euclidean`` = half the squared
    distance over all parameters."""
    if kind == "kl":
        with torch.no_grad():
            target_logits = query_logits(model, target, episode)
        return grid_method.kl_from_logits(target_logits, query_logits(model, x, episode)).mean()
    if kind == "euclidean":
        return grid_method.half_squared_distance(target, x)
    raise ValueError(f"matching must be one of {', '.join(MATCHINGS)}, not {kind!r}")


def bmg_loss(model: nn.Module, params: Params, episode: Episode, K: int, L: int, lr: float, target_lr: float,
             kind: str = "kl") -> Tensor:
    """The BMG meta-objective ``mu(x~, x_K(w))`` of one episode."""
    x_k = adapted(model, params, episode, K, lr)
    return matching(model, bootstrap_target(model, x_k, episode, L, lr, target_lr), x_k, episode, kind)


# --------------------------------------------------------------------------------------------------
# Agents
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agent:
    """One meta-training configuration: ``mg`` with ``K`` inner steps, or ``bmg`` with ``K``, ``L`` and a matching
    function."""

    name: str
    method: str
    K: int = 1
    L: int = 1
    matching: str = "kl"

    @classmethod
    def parse(cls, raw) -> Agent:
        if not isinstance(raw, dict):
            raise registry.RegistryError(f"agents: each entry is a mapping (name, method, K, ...), not {raw!r}")
        try:
            agent = cls(**raw)
        except TypeError as exc:
            raise registry.RegistryError(f"agents: bad entry {raw}: {exc}") from None
        if agent.method not in METHODS:
            raise registry.RegistryError(f"agents: {agent.name}: method must be one of {', '.join(METHODS)}, "
                                         f"not {agent.method!r}")
        if not (isinstance(agent.K, int) and isinstance(agent.L, int)) or agent.K < 1 or agent.L < 1:
            raise registry.RegistryError(f"agents: {agent.name}: K and L must be integers >= 1")
        if agent.matching not in MATCHINGS:
            raise registry.RegistryError(f"agents: {agent.name}: matching must be one of {', '.join(MATCHINGS)}, "
                                         f"not {agent.matching!r}")
        return agent

    def describe(self) -> str:
        if self.method == "mg":
            return f"MG (second-order MAML), K={self.K}"
        return f"BMG, K={self.K}, L={self.L}, {self.matching} matching"


def agents_of(config: dict) -> list[Agent]:
    agents = [Agent.parse(raw) for raw in config.get("agents") or []]
    if not agents:
        raise registry.RegistryError("agents: the few-shot experiment needs at least one agent")
    names = [a.name for a in agents]
    if len(set(names)) != len(names):
        raise registry.RegistryError(f"agents: names must be unique, got {names}")
    for pair in config.get("claims") or []:
        if not (isinstance(pair, list) and len(pair) == 2 and all(n in names for n in pair)):
            raise registry.RegistryError(f"claims: {pair!r} must be [BMG agent, MG agent], both named in agents")
    return agents


def test_steps(agent: Agent, config: dict) -> int:
    """Inner steps at test: MAML's Omniglot test steps, or the agent's training ``K`` when that is longer."""
    return max(agent.K, int(config["method"]["test_steps"]))


def seeds_of(config: dict) -> list[int]:
    """The training seeds: ``seeds`` (a list of distinct integers) or, when it is absent or null, ``[seed]``."""
    seeds = config.get("seeds")
    if seeds is None:
        return [int(config["seed"])]
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise registry.RegistryError(f"seeds: a list of integer training seeds (e.g. [0, 1, 2]), not {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise registry.RegistryError(f"seeds: {seeds} repeats a seed")
    return list(seeds)


def seed_config(config: dict, seed: int) -> dict:
    """The config of one training seed: exactly a config with ``seed: seed`` and no ``seeds``, so that its jobs (and
    their fingerprints and caches) are those of a single-seed run of that seed."""
    return {**{k: v for k, v in config.items() if k != "seeds"}, "seed": seed}


def job_config(config: dict, agent: Agent) -> dict:
    """The config one agent trains with: ``method`` carries its meta-objective (and so its checkpoint fingerprint)."""
    m = {**config["method"], "train_steps": agent.K, "test_steps": test_steps(agent, config),
         "meta_objective": agent.method}
    if agent.method == "bmg":
        m.update(L=agent.L, matching=agent.matching)
    else:
        m.pop("target_lr", None)
    return {**config, "method": m}


def job_fingerprint(job: dict) -> str:
    """What a finished job's result depends on (its cache file is ``fewshot_<agent>_<fingerprint>.json``)."""
    return registry.fingerprint({k: job[k] for k in ("seed", "method", "train", "eval", "data")})


class FewShotLearner(OmniglotMAML):
    """The episodic-method interface (``build``, ``loss``, ``scores``) of one agent: MAML's network and test-time
    adaptation, with the MG or the BMG meta-objective as the training loss of an episode."""

    def __init__(self, agent: Agent):
        super().__init__(first_order=False)
        self.agent = agent

    def build(self, config: dict) -> nn.Module:
        model = super().build(config)  # the network; inner_lr, train_steps (= K) and test_steps
        self.target_lr = float(config["method"].get("target_lr", self.inner_lr))
        return model

    def loss(self, model: nn.Module, episode: Episode) -> Tensor:
        params, a = parameters_of(model), self.agent
        if a.method == "mg":
            return mg_loss(model, params, episode, a.K, self.inner_lr)
        return bmg_loss(model, params, episode, a.K, a.L, self.inner_lr, self.target_lr, a.matching)


# --------------------------------------------------------------------------------------------------
# Train, test, record
# --------------------------------------------------------------------------------------------------


def _curve_point(learner: FewShotLearner, data, config: dict, device):
    """Learning curve only (never used to choose a model): test accuracy on ``train.curve_episodes`` test episodes
    of their own seed, and the seconds it took (subtracted from the training time)."""
    n, ev = int(config["train"].get("curve_episodes", 0)), config["eval"]
    n_way, k_shot = ev["setting"]

    def point(model: nn.Module) -> dict[str, float]:
        if not n:
            return {}
        start = time.perf_counter()
        accs = heldout_accuracy(learner, model, data.test, n_way, k_shot, ev["n_query"], n, config["seed"] + 2000,
                                device)
        return {"test_acc_pct": float(np.mean(accs)), "curve_seconds": time.perf_counter() - start}

    return point


def run(config: dict, ctx: registry.RunContext) -> dict[str, float]:
    agents, seeds = agents_of(config), seeds_of(config)
    torch.set_num_threads(int(config.get("threads", 1)))
    device = pick_device(ctx.device)
    data_cfg, ev = config["data"], config["eval"]
    n_way, k_shot = ev["setting"]
    data_of = omniglot_standard.LazyStandardData(data_cfg, getattr(ctx, "data_dir", None))

    folder = Path(ctx.work_dir) / NAME / ctx.config_name
    results: dict[str, dict[int, dict]] = {agent.name: {} for agent in agents}  # agent -> seed -> its job
    for seed in seeds:
        single = seed_config(config, seed)
        for agent in agents:
            job = job_config(single, agent)
            cache = folder / f"fewshot_{agent.name}_{job_fingerprint(job)}.json"
            if cache.exists() and not ctx.fresh and not ctx.eval_only:
                results[agent.name][seed] = json.loads(cache.read_text(encoding="utf-8"))
                continue
            data = data_of()
            learner = FewShotLearner(agent)
            model, state = train_one(learner, NAME, job, ctx, f"fewshot_{agent.name}_seed{seed}", device, data.train,
                                     _curve_point(learner, data, single, device),
                                     prepare=lambda m: omniglot_standard._channels_last(m, device))
            start = time.perf_counter()
            accs = heldout_accuracy(learner, model, data.test, n_way, k_shot, ev["n_query"], ev["episodes"],
                                    seed + 1000, device)
            curve_seconds = sum(row.get("curve_seconds", 0.0) for row in state.curve)
            results[agent.name][seed] = {
                "agent": asdict(agent), "accs": accs, "test_steps": test_steps(agent, config),
                "curve": [{k: v for k, v in row.items() if k != "curve_seconds"} for row in state.curve],
                "train_seconds": state.seconds - curve_seconds, "iterations": state.iteration,
                "eval_seconds": time.perf_counter() - start, "device": str(device),
                "parameters": sum(p.numel() for p in model.parameters()),
                "commit": recording.git_commit(ctx.root, CODE_PATHS),  # a cached job keeps where it ran
            }
            cache.parent.mkdir(parents=True, exist_ok=True)
            recording._atomic_write(cache, json.dumps(results[agent.name][seed]).encode())
    claims = [claim(results, bmg, mg) for bmg, mg in config.get("claims") or []]
    if ctx.write_record:
        data = data_of.for_records()
        write_all(config, ctx, data, agents, results, claims)
    metrics = {}
    for agent in agents:
        a = aggregate(results[agent.name])
        metrics[f"{agent.name}_acc_pct"] = a["value"]
        metrics[f"{agent.name}_train_seconds"] = a["train_seconds"]
        if len(seeds) > 1:
            metrics.update({f"{agent.name}_acc_pct_seed{s}": m for s, (m, _) in a["per_seed"].items()})
    for c in claims:
        metrics[f"{c['bmg']}_minus_{c['mg']}_acc_pct"] = c["diff"]
    return metrics


# --------------------------------------------------------------------------------------------------
# Statistics over episodes and seeds
# --------------------------------------------------------------------------------------------------


def over_seeds(per_seed: dict[int, tuple[float, float]]) -> tuple[float, float]:
    """The value and 95% half-width from each seed's (mean, interval over its episodes): with one seed that seed's
    own (over episodes); with several, the mean of the seeds' means and the Student-t interval over them (each seed
    has its own test episodes, so the spread of its mean includes their sampling)."""
    if len(per_seed) == 1:
        return next(iter(per_seed.values()))
    return recording.mean_ci95([m for m, _ in per_seed.values()])


def mean_curve(curves: list[list[dict]]) -> list[dict[str, float]]:
    """The learning curve's test accuracy averaged over the seeds at each iteration that every seed evaluated."""
    points = [{row["iteration"]: row["test_acc_pct"] for row in curve if "test_acc_pct" in row} for curve in curves]
    common = [it for it in points[0] if all(it in p for p in points[1:])]
    return [{"iteration": it, "test_acc_pct": float(np.mean([p[it] for p in points]))} for it in common]


def aggregate(runs: dict[int, dict]) -> dict:
    """One agent over its training seeds (``runs``: seed -> that seed's job): each seed's mean test accuracy with its
    interval over episodes, the value and interval over seeds (:func:`over_seeds`), the training and test wall times
    as means over the seeds (and their total), and the mean learning curve."""
    per_seed = {seed: recording.mean_ci95(r["accs"]) for seed, r in runs.items()}
    value, ci = over_seeds(per_seed)
    first = next(iter(runs.values()))
    return {"value": float(value), "ci": float(ci), "per_seed": per_seed,
            "train_seconds": float(np.mean([r["train_seconds"] for r in runs.values()])),
            "eval_seconds": float(np.mean([r["eval_seconds"] for r in runs.values()])),
            "total_seconds": float(sum(r["train_seconds"] + r["eval_seconds"] for r in runs.values())),
            "iterations": first["iterations"], "test_steps": first["test_steps"],
            "episodes": len(first["accs"]), "n_eval_tasks": sum(len(r["accs"]) for r in runs.values()),
            "device": ", ".join(sorted({r["device"] for r in runs.values()})),
            "curve": mean_curve([r["curve"] for r in runs.values()])}


def claim(results: dict, bmg: str, mg: str) -> dict:
    """BMG minus MG test accuracy, paired by episode within each seed (every agent is tested on the same episodes
    of a seed); over several seeds the mean of the seeds' differences with a Student-t interval over them."""
    per_seed = {}
    for seed, run in results[bmg].items():
        a, b = np.asarray(run["accs"]), np.asarray(results[mg][seed]["accs"])
        if a.shape != b.shape:
            raise ValueError(f"claims: {bmg} and {mg} were tested on different numbers of episodes (seed {seed})")
        per_seed[seed] = recording.mean_ci95(a - b)
    diff, ci = over_seeds(per_seed)
    verdict = claim_verdict(diff, ci, f"has a higher test accuracy than MG ({mg})",
                            f"has a lower test accuracy than MG ({mg})")
    return {"bmg": bmg, "mg": mg, "diff": float(diff), "ci": float(ci), "verdict": verdict, "per_seed": per_seed}


def _per_seed_text(per_seed: dict[int, tuple[float, float]], signed: bool = False) -> str:
    fmt = "{:+.2f}" if signed else "{:.2f}"
    return ", ".join(f"seed {s} {fmt.format(m)} ± {ci:.2f}" for s, (m, ci) in per_seed.items())


def interval_words(n_seeds: int, of: str = "means") -> str:
    """What a record's 95% interval is over (``of``: the seeds' ``means`` or ``differences``)."""
    if n_seeds == 1:
        return "95% interval over the test episodes (one training seed)"
    return (f"95% interval: Student t over the {n_seeds} training seeds' {of} (each seed tested on its own "
            "episodes, so it covers both training runs and episode sampling)")


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------


def budget_of(config: dict) -> str:
    tr, m, seeds = config["train"], config["method"], seeds_of(config)
    said = "one training seed" if len(seeds) == 1 else f"{len(seeds)} training seeds"
    queries = f"{tr['n_query']} {'query' if tr['n_query'] == 1 else 'queries'} per class"
    return (f"{tr['iterations']:,} meta-iterations of {tr['meta_batch']} episodes of {tr['n_way']}-way "
            f"{tr['k_shot']}-shot ({queries}) per agent and seed (MAML's Omniglot run: 60,000), "
            f"{m['channels']} channels, Adam {tr['lr']}, {said} ({', '.join(map(str, seeds))}), "
            f"{config.get('threads', 1)} CPU thread on a shared 2-core machine")


def write_all(config: dict, ctx: registry.RunContext, data, agents: list[Agent], results: dict, claims: list[dict],
              results_dir: Path | None = None) -> list[Path]:
    """One record per agent (test accuracy, learning curve), one per claim, the summary table and figure, all
    prefixed with the config's name (``fewshot_*``). ``results``: agent -> seed -> that seed's job."""
    results_dir = results_dir or RESULTS_DIR
    tr, ev, m, rec = config["train"], config["eval"], config["method"], config["record"]
    n_way, k_shot = ev["setting"]
    seeds = seeds_of(config)
    n = len(seeds)
    prefix = f"{ctx.config_name}_"
    commit = recording.git_commit(ctx.root, CODE_PATHS)
    provenance = recording.provenance((r.get("commit", "") for a in agents for r in results[a.name].values()), commit)
    common = dict(root=ctx.root, code_paths=CODE_PATHS, commit=commit, paper=rec["paper"], reproduction=NAME,
                  command=ctx.command or f"mlatlas repro run {NAME} --config {ctx.config_name}",
                  benchmark=f"Omniglot {n_way}-way {k_shot}-shot, MAML-style meta-learning of the initialisation "
                            "(standard protocol, test classes)",
                  n_seeds=n, budget=budget_of(config))
    base_notes = " ".join(rec["notes"].split())
    by_name = {a.name: a for a in agents}
    stats = {a.name: aggregate(results[a.name]) for a in agents}
    per = "" if n == 1 else " per seed, mean over the seeds"

    def protocol(agent: Agent | None, n_episodes: int) -> dict:
        facts = {
            "data": data.describe(), "split": data.split,
            "train_characters": data.characters["train"], "test_characters": data.characters["test"],
            "train_way": tr["n_way"], "train_shot": tr["k_shot"], "train_queries": tr["n_query"],
            "episodes_per_update": tr["meta_batch"], "train_updates": tr["iterations"],
            "test_way": n_way, "test_shot": k_shot, "test_queries": ev["n_query"], "test_episodes": n_episodes,
            "method_channels": m["channels"], "method_strided": m["strided"], "method_inner_lr": m["inner_lr"],
        }
        if agent is not None:
            facts.update(method=agent.describe(), method_meta_objective=agent.method, method_train_steps=agent.K,
                         method_test_steps=test_steps(agent, config))
            if agent.method == "bmg":
                facts.update(method_target_steps=agent.L, method_matching=agent.matching,
                             method_target_lr=float(m.get("target_lr", m["inner_lr"])))
        return facts

    written = []
    for agent in agents:
        a = stats[agent.name]
        if n == 1:
            tested = (f"The last model is tested ({a['test_steps']} inner steps) on the same {a['episodes']} episodes "
                      f"as every other agent; {interval_words(n)}.")
        else:
            tested = (f"Training seeds {', '.join(map(str, seeds))}: each seed's last model is tested "
                      f"({a['test_steps']} inner steps) on {a['episodes']} test episodes of that seed (the same for "
                      f"every agent). Value: the mean over the seeds of each seed's mean test accuracy; "
                      f"{interval_words(n)}. Per seed (± over its episodes): {_per_seed_text(a['per_seed'])}.")
        each = ", ".join(f"{r['train_seconds']:.0f}" for r in results[agent.name].values())
        times = "" if n == 1 else f"per seed {each} s; "
        total = "" if n == 1 else " The record's wall_time_s is the total over the seeds."
        notes = (f"{tested} Training took {a['train_seconds']:.1f} s of wall time{per} ({times}"
                 f"{a['train_seconds'] / a['iterations']:.2f} s per meta-iteration on one CPU thread, curve "
                 f"evaluations excluded), the test {a['eval_seconds']:.1f} s{per}.{total} The curve's test accuracy"
                 f"{'' if n == 1 else ' (mean over the seeds)'} uses other test episodes "
                 f"({tr.get('curve_episodes', 0)} each) and never chose a model. {base_notes}{provenance}")
        written.append(recording.write_record(
            results_dir, f"{prefix}{agent.name}", device=a["device"], wall_time_s=a["total_seconds"],
            curve=a["curve"] or None,
            setting=f"{agent.describe()}; trained on {tr['n_way']}-way {tr['k_shot']}-shot episodes, "
                    f"{a['test_steps']} inner steps at test",
            metric="accuracy", unit="%", higher_is_better=True, value=round(a["value"], 2), ci95=round(a["ci"], 2),
            n_eval_tasks=a["n_eval_tasks"], protocol=protocol(agent, a["episodes"]), notes=notes[:2000], **common))
    for c in claims:
        bmg, mg = stats[c["bmg"]], stats[c["mg"]]
        kind = ("at equal K" if by_name[c["bmg"]].K == by_name[c["mg"]].K else
                "against MG with a longer inner loop (the efficiency comparison)")
        if n == 1:
            how = "paired by test episode"
        else:
            how = (f"paired by test episode within each training seed, then averaged over the {n} seeds; "
                   f"{interval_words(n, 'differences')}. Per seed (± over its episodes): "
                   f"{_per_seed_text(c['per_seed'], True)}")
        notes = (f"Claim: BMG beats the K-step meta-gradient {kind}. Verdict: {c['verdict']}. Difference of test "
                 f"accuracy (percentage points), {how}. Training wall time{per}: {c['bmg']} "
                 f"{bmg['train_seconds']:.1f} s, {c['mg']} {mg['train_seconds']:.1f} s (one CPU thread, the same "
                 f"number of meta-iterations). No paper number is attached (the paper's are on MiniImageNet). "
                 f"{base_notes}{provenance}")
        written.append(recording.write_record(
            results_dir, f"{prefix}claim_{c['bmg']}_vs_{c['mg']}", device=bmg["device"],
            wall_time_s=bmg["total_seconds"] + mg["total_seconds"],
            setting=f"{by_name[c['bmg']].describe()} minus {by_name[c['mg']].describe()}",
            metric="difference in test accuracy (BMG minus MG, paired by episode)", unit="pp", higher_is_better=True,
            value=round(c["diff"], 2), ci95=round(c["ci"], 2), n_eval_tasks=bmg["n_eval_tasks"],
            protocol=protocol(None, bmg["episodes"]), notes=notes[:2000], **common))
    text, png = summary(config, ctx, agents, results, claims)
    recording._atomic_write(results_dir / f"{prefix}summary.md", text.encode())
    recording._atomic_write(results_dir / f"{prefix}summary.png", png)
    return written + [results_dir / f"{prefix}summary.md", results_dir / f"{prefix}summary.png"]


def summary(config: dict, ctx: registry.RunContext, agents: list[Agent], results: dict,
            claims: list[dict]) -> tuple[str, bytes]:
    """The table of agents and claims (markdown; with several seeds a column per seed, then the aggregate) and the
    figure: test accuracy over meta-iterations (the mean over seeds, each seed thin) and against training wall
    time (the aggregate value and interval)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_way, k_shot = config["eval"]["setting"]
    seeds = seeds_of(config)
    n = len(seeds)
    stats = {a.name: aggregate(results[a.name]) for a in agents}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    for agent in agents:
        a = stats[agent.name]
        (line,) = left.plot([row["iteration"] for row in a["curve"]], [row["test_acc_pct"] for row in a["curve"]],
                            marker="o", markersize=3, label=agent.describe())
        if n > 1:
            for r in results[agent.name].values():
                rows = [row for row in r["curve"] if "test_acc_pct" in row]
                left.plot([row["iteration"] for row in rows], [row["test_acc_pct"] for row in rows], lw=0.7,
                          alpha=0.35, color=line.get_color())
        right.errorbar([a["train_seconds"] / 60], [a["value"]], [a["ci"]], marker="o", capsize=3,
                       color=line.get_color(), label=agent.describe())
    curve_what = "" if n == 1 else f", mean over {n} seeds (thin: each seed)"
    left.set_xlabel("meta-iteration")
    left.set_ylabel("test accuracy (%)")
    left.set_title(f"learning curve{curve_what}; {config['train'].get('curve_episodes', 0)} other test episodes per "
                   "point", fontsize=8)
    right.set_xlabel(f"training wall time (minutes, one CPU thread{'' if n == 1 else ', mean over seeds'})")
    right.set_ylabel("final test accuracy (%)")
    right.set_title(f"{config['eval']['episodes']} test episodes{'' if n == 1 else ' per seed'}; mean ± 95% CI over "
                    f"{'episodes' if n == 1 else f'{n} seeds'}", fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"BMG vs MG, MAML-style on Omniglot {n_way}-way {k_shot}-shot (config {ctx.config_name})",
                 fontsize=10)
    fig.tight_layout()
    png = recording.figure_png(fig)
    plt.close(fig)

    seed_heads = "".join(f" seed {s} |" for s in seeds) if n > 1 else ""
    seed_rule = " ---: |" * n if n > 1 else ""
    mean_of = "" if n == 1 else ", mean over seeds"
    if n == 1:
        test = (f"Test: the same {config['eval']['episodes']} episodes for every agent, {config['eval']['n_query']} "
                "queries per class; mean ± 95% CI over episodes.")
    else:
        test = (f"Test: {config['eval']['episodes']} episodes per training seed (each seed its own, the same for every "
                f"agent), {config['eval']['n_query']} queries per class. Seed columns: that seed's mean ± 95% CI over "
                f"its episodes; the aggregate: the mean of the {n} seed means ± 95% Student-t CI over them. Claims "
                "are paired by episode within a seed, then aggregated over the seeds the same way. Wall times are "
                "means over the seeds.")
    lines = [f"<!-- Generated by `mlatlas repro run {NAME} --config {ctx.config_name}`; do not edit by hand. -->",
             f"# BMG vs MG, MAML-style, Omniglot {n_way}-way {k_shot}-shot: config `{ctx.config_name}`", "",
             f"Budget: {budget_of(config)}. {test}", "",
             f"| agent |{seed_heads} test accuracy (%){mean_of} | inner steps at test | training wall time "
             f"(s{mean_of}) | s per meta-iteration |",
             f"| --- |{seed_rule} ---: | ---: | ---: | ---: |"]
    for agent in agents:
        a = stats[agent.name]
        cells = "".join(f" {m:.2f} ± {ci:.2f} |" for m, ci in a["per_seed"].values()) if n > 1 else ""
        lines.append(f"| {agent.describe()} |{cells} {a['value']:.2f} ± {a['ci']:.2f} | {a['test_steps']} | "
                     f"{a['train_seconds']:.0f} | {a['train_seconds'] / a['iterations']:.2f} |")
    if claims:
        lines += ["", f"| claim |{seed_heads} BMG minus MG (pp, paired by episode{mean_of}) | verdict |",
                  f"| --- |{seed_rule} ---: | --- |"]
        for c in claims:
            cells = "".join(f" {d:+.2f} ± {ci:.2f} |" for d, ci in c["per_seed"].values()) if n > 1 else ""
            lines.append(f"| {c['bmg']} vs {c['mg']} |{cells} {c['diff']:+.2f} ± {c['ci']:.2f} | {c['verdict']} |")
    return "\n".join(lines) + "\n", png
