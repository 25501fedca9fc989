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


def job_config(config: dict, agent: Agent) -> dict:
    """The config one agent trains with: ``method`` carries its meta-objective (and so its checkpoint fingerprint)."""
    m = {**config["method"], "train_steps": agent.K, "test_steps": test_steps(agent, config),
         "meta_objective": agent.method}
    if agent.method == "bmg":
        m.update(L=agent.L, matching=agent.matching)
    else:
        m.pop("target_lr", None)
    return {**config, "method": m}


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
    agents = agents_of(config)
    torch.set_num_threads(int(config.get("threads", 1)))
    device = pick_device(ctx.device)
    data_cfg, ev = config["data"], config["eval"]
    n_way, k_shot = ev["setting"]
    loaded: list = []

    def data_of() -> omniglot_standard.StandardData:  # the images are read only when some agent needs them
        if not loaded:
            loaded.append(omniglot_standard.load_standard(
                data_cfg["split"], getattr(ctx, "data_dir", None) or data_cfg.get("data_dir"), data_cfg.get("base_url"),
                data_cfg.get("split_url")))
        return loaded[0]

    folder = Path(ctx.work_dir) / NAME / ctx.config_name
    results: dict[str, dict] = {}
    for agent in agents:
        job = job_config(config, agent)
        fp = registry.fingerprint({k: job[k] for k in ("seed", "method", "train", "eval", "data")})
        cache = folder / f"fewshot_{agent.name}_{fp}.json"
        if cache.exists() and not ctx.fresh and not ctx.eval_only:
            results[agent.name] = json.loads(cache.read_text(encoding="utf-8"))
            continue
        data = data_of()
        learner = FewShotLearner(agent)
        model, state = train_one(learner, NAME, job, ctx, f"fewshot_{agent.name}", device, data.train,
                                 _curve_point(learner, data, config, device),
                                 prepare=lambda m: omniglot_standard._channels_last(m, device))
        start = time.perf_counter()
        accs = heldout_accuracy(learner, model, data.test, n_way, k_shot, ev["n_query"], ev["episodes"],
                                config["seed"] + 1000, device)
        curve_seconds = sum(row.get("curve_seconds", 0.0) for row in state.curve)
        results[agent.name] = {
            "agent": asdict(agent), "accs": accs, "test_steps": test_steps(agent, config),
            "curve": [{k: v for k, v in row.items() if k != "curve_seconds"} for row in state.curve],
            "train_seconds": state.seconds - curve_seconds, "iterations": state.iteration,
            "eval_seconds": time.perf_counter() - start, "device": str(device),
            "parameters": sum(p.numel() for p in model.parameters()),
            "commit": recording.git_commit(ctx.root, CODE_PATHS),  # a cached job keeps where it ran
        }
        cache.parent.mkdir(parents=True, exist_ok=True)
        recording._atomic_write(cache, json.dumps(results[agent.name]).encode())
    claims = [claim(results, bmg, mg) for bmg, mg in config.get("claims") or []]
    if ctx.write_record:
        data = loaded[0] if loaded else described(data_cfg["split"])
        write_all(config, ctx, data, agents, results, claims)
    metrics = {}
    for agent in agents:
        r = results[agent.name]
        metrics[f"{agent.name}_acc_pct"] = float(np.mean(r["accs"]))
        metrics[f"{agent.name}_train_seconds"] = float(r["train_seconds"])
    for c in claims:
        metrics[f"{c['bmg']}_minus_{c['mg']}_acc_pct"] = c["diff"]
    return metrics


def described(split: str) -> omniglot_standard.StandardData:
    """The split's description and character counts for the records, without reading the images."""
    parts = omniglot_standard.SPLITS[split]
    counts = {role: omniglot_standard.SPLIT_CHARACTERS[part] for part, role in zip(parts, ("train", "val", "test"))
              if part is not None}
    return omniglot_standard.StandardData(split, None, None, None, characters=counts)


def claim(results: dict, bmg: str, mg: str) -> dict:
    """BMG minus MG test accuracy, paired by episode (every agent is tested on the same episodes)."""
    a, b = np.asarray(results[bmg]["accs"]), np.asarray(results[mg]["accs"])
    if a.shape != b.shape:
        raise ValueError(f"claims: {bmg} and {mg} were tested on different numbers of episodes")
    diff, ci = recording.mean_ci95(a - b)
    verdict = claim_verdict(diff, ci, f"has a higher test accuracy than MG ({mg})", f"has a lower test accuracy than MG ({mg})")
    return {"bmg": bmg, "mg": mg, "diff": float(diff), "ci": float(ci), "verdict": verdict}


def budget_of(config: dict) -> str:
    tr, m = config["train"], config["method"]
    return (f"{tr['iterations']:,} meta-iterations of {tr['meta_batch']} episodes of {tr['n_way']}-way "
            f"{tr['k_shot']}-shot ({tr['n_query']} queries per class) per agent (MAML's Omniglot run: 60,000), "
            f"{m['channels']} channels, Adam {tr['lr']}, one training seed ({config['seed']}), "
            f"{config.get('threads', 1)} CPU thread on a shared 2-core machine")


def write_all(config: dict, ctx: registry.RunContext, data, agents: list[Agent], results: dict, claims: list[dict],
              results_dir: Path | None = None) -> list[Path]:
    """One record per agent (test accuracy, learning curve), one per claim, the summary table and figure, all
    prefixed with the config's name (``fewshot_*``)."""
    results_dir = results_dir or RESULTS_DIR
    tr, ev, m, rec = config["train"], config["eval"], config["method"], config["record"]
    n_way, k_shot = ev["setting"]
    prefix = f"{ctx.config_name}_"
    commit = recording.git_commit(ctx.root, CODE_PATHS)
    provenance = recording.provenance((results[a.name].get("commit", "") for a in agents), commit)
    common = dict(root=ctx.root, code_paths=CODE_PATHS, commit=commit, paper=rec["paper"], reproduction=NAME,
                  command=ctx.command or f"mlatlas repro run {NAME} --config {ctx.config_name}",
                  benchmark=f"Omniglot {n_way}-way {k_shot}-shot, MAML-style meta-learning of the initialisation "
                            "(standard protocol, test classes)",
                  n_seeds=1, budget=budget_of(config))
    base_notes = " ".join(rec["notes"].split())
    by_name = {a.name: a for a in agents}

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
        r = results[agent.name]
        value, ci = recording.mean_ci95(r["accs"])
        curve = [{k: v for k, v in row.items() if k in ("iteration", "test_acc_pct")} for row in r["curve"]]
        notes = (f"Training took {r['train_seconds']:.1f} s of wall time ({r['train_seconds'] / r['iterations']:.2f} s "
                 f"per meta-iteration on one CPU thread, curve evaluations excluded), the test {r['eval_seconds']:.1f} s. The last model "
                 f"is tested ({r['test_steps']} inner steps) on the same {len(r['accs'])} episodes as every other "
                 f"agent; 95% interval over episodes. The curve's test accuracy uses other test episodes "
                 f"({tr.get('curve_episodes', 0)} each) and never chose a model. {base_notes}{provenance}")
        written.append(recording.write_record(
            results_dir, f"{prefix}{agent.name}", device=r["device"],
            wall_time_s=r["train_seconds"] + r["eval_seconds"], curve=curve if any(len(c) > 1 for c in curve) else None,
            setting=f"{agent.describe()}; trained on {tr['n_way']}-way {tr['k_shot']}-shot episodes, "
                    f"{r['test_steps']} inner steps at test",
            metric="accuracy", unit="%", higher_is_better=True, value=round(value, 2), ci95=round(ci, 2),
            n_eval_tasks=len(r["accs"]), protocol=protocol(agent, len(r["accs"])), notes=notes[:2000], **common))
    for c in claims:
        bmg, mg = results[c["bmg"]], results[c["mg"]]
        kind = ("at equal K" if by_name[c["bmg"]].K == by_name[c["mg"]].K else
                "against MG with a longer inner loop (the efficiency comparison)")
        notes = (f"Claim: BMG beats the K-step meta-gradient {kind}. Verdict: {c['verdict']}. Difference of test "
                 f"accuracy (percentage points), paired by test episode. Training wall time: {c['bmg']} "
                 f"{bmg['train_seconds']:.1f} s, {c['mg']} {mg['train_seconds']:.1f} s (one CPU thread, the same number "
                 f"of meta-iterations). No paper number is attached (the paper's are on MiniImageNet). "
                 f"{base_notes}{provenance}")
        written.append(recording.write_record(
            results_dir, f"{prefix}claim_{c['bmg']}_vs_{c['mg']}", device=bmg["device"],
            wall_time_s=bmg["train_seconds"] + bmg["eval_seconds"] + mg["train_seconds"] + mg["eval_seconds"],
            setting=f"{by_name[c['bmg']].describe()} minus {by_name[c['mg']].describe()}",
            metric="difference in test accuracy (BMG minus MG, paired by episode)", unit="pp", higher_is_better=True,
            value=round(c["diff"], 2), ci95=round(c["ci"], 2), n_eval_tasks=len(bmg["accs"]),
            protocol=protocol(None, len(bmg["accs"])), notes=notes[:2000], **common))
    text, png = summary(config, ctx, agents, results, claims)
    recording._atomic_write(results_dir / f"{prefix}summary.md", text.encode())
    recording._atomic_write(results_dir / f"{prefix}summary.png", png)
    return written + [results_dir / f"{prefix}summary.md", results_dir / f"{prefix}summary.png"]


def summary(config: dict, ctx: registry.RunContext, agents: list[Agent], results: dict,
            claims: list[dict]) -> tuple[str, bytes]:
    """The table of agents and claims (markdown) and the figure: test accuracy over meta-iterations and against
    training wall time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_way, k_shot = config["eval"]["setting"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    for agent in agents:
        r = results[agent.name]
        rows = [row for row in r["curve"] if "test_acc_pct" in row]
        (line,) = left.plot([row["iteration"] for row in rows], [row["test_acc_pct"] for row in rows], marker="o",
                            markersize=3, label=agent.describe())
        value, ci = recording.mean_ci95(r["accs"])
        right.errorbar([r["train_seconds"] / 60], [value], [ci], marker="o", capsize=3, color=line.get_color(),
                       label=agent.describe())
    left.set_xlabel("meta-iteration")
    left.set_ylabel(f"test accuracy (%), curve episodes ({config['train'].get('curve_episodes', 0)} each)")
    right.set_xlabel("training wall time (minutes, one CPU thread)")
    right.set_ylabel(f"final test accuracy (%), {config['eval']['episodes']} episodes, 95% CI")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"BMG vs MG, MAML-style on Omniglot {n_way}-way {k_shot}-shot (config {ctx.config_name})",
                 fontsize=10)
    fig.tight_layout()
    png = recording.figure_png(fig)
    plt.close(fig)

    lines = [f"<!-- Generated by `mlatlas repro run {NAME} --config {ctx.config_name}`; do not edit by hand. -->",
             f"# BMG vs MG, MAML-style, Omniglot {n_way}-way {k_shot}-shot: config `{ctx.config_name}`", "",
             f"Budget: {budget_of(config)}. Test: the same {config['eval']['episodes']} episodes for every agent, "
             f"{config['eval']['n_query']} queries per class; mean ± 95% CI over episodes.", "",
             "| agent | test accuracy (%) | inner steps at test | training wall time (s) | s per meta-iteration |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for agent in agents:
        r = results[agent.name]
        value, ci = recording.mean_ci95(r["accs"])
        lines.append(f"| {agent.describe()} | {value:.2f} ± {ci:.2f} | {r['test_steps']} | {r['train_seconds']:.0f} | "
                     f"{r['train_seconds'] / r['iterations']:.2f} |")
    if claims:
        lines += ["", "| claim | BMG minus MG (pp, paired by episode) | verdict |", "| --- | ---: | --- |"]
        lines += [f"| {c['bmg']} vs {c['mg']} | {c['diff']:+.2f} ± {c['ci']:.2f} | {c['verdict']} |" for c in claims]
    return "\n".join(lines) + "\n", png
