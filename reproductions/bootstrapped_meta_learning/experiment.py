"""The online experiment: an actor-critic agent learns in the non-stationary two-colours grid world while its
entropy weight is fixed, meta-learned by K-step meta-gradients (MG), or meta-learned by BMG.

All seeds of one agent run together as a batch (one grid, one agent and one meta-learner per seed). One *job*
is one agent configuration with all its seeds; a finished job is cached as JSON under the work folder, so an
interrupted run resumes at the first unfinished job (``--fresh`` starts over).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from reproductions.bootstrapped_meta_learning import agent, method
from reproductions.bootstrapped_meta_learning.env import N_ACTIONS, TwoColours
from reproductions.core import recording, registry
from reproductions.core.runtime import check_finite, pick_device

# The code a result depends on (results excluded): uncommitted changes here mark its commit "-dirty".
CODE_PATHS = ["reproductions/bootstrapped_meta_learning", ":(exclude)reproductions/bootstrapped_meta_learning/results",
              "reproductions/core/registry.py", "reproductions/core/runtime.py", "reproductions/core/recording.py"]

METHODS = ("fixed", "mg", "bmg")


@dataclass(frozen=True)
class Spec:
    """One agent configuration: ``name`` labels it in records; ``method`` is fixed, mg or bmg."""

    name: str
    method: str
    K: int = 1
    L: int = 1
    matching: str = "kl"
    entropy: float | None = None  # fixed: the entropy weight; else the meta-learner's starting value

    @classmethod
    def parse(cls, raw: dict, default_entropy: float) -> Spec:
        try:
            spec = cls(**{"entropy": default_entropy, **raw})
        except TypeError as exc:
            raise ValueError(f"agents: bad entry {raw}: {exc}") from None
        if spec.method not in METHODS:
            raise ValueError(f"agents: {spec.name}: method must be one of {', '.join(METHODS)}, not {spec.method!r}")
        if spec.K < 1 or spec.L < 1:
            raise ValueError(f"agents: {spec.name}: K and L must be >= 1")
        if spec.matching not in ("kl", "euclidean"):
            raise ValueError(f"agents: {spec.name}: matching must be kl or euclidean, not {spec.matching!r}")
        return spec

    def describe(self) -> str:
        if self.method == "fixed":
            return f"fixed entropy weight {self.entropy:g}"
        if self.method == "mg":
            return f"MG, K={self.K} (meta-learned entropy weight, starts at {self.entropy:g})"
        return (f"BMG, K={self.K}, L={self.L}, {self.matching} matching (meta-learned entropy weight, "
                f"starts at {self.entropy:g})")


@dataclass
class JobResult:
    name: str
    steps: list[int] = field(default_factory=list)  # env steps at the end of each logging window
    reward: list[list[float]] = field(default_factory=list)  # [window][seed] mean reward per step
    entropy_weight: list[list[float]] = field(default_factory=list)  # [window][seed] mean entropy weight
    policy_entropy: list[list[float]] = field(default_factory=list)  # [window][seed] mean policy entropy
    seconds: float = 0.0
    commit: str = ""  # the code's commit when the job ran (a cached job keeps it; "" in caches older than this field)

    def total_reward(self) -> np.ndarray:
        """Per seed: the reward collected over the whole run (all windows have the same length)."""
        width = self.steps[0]
        return np.asarray(self.reward).sum(0) * width


def hyper(config: dict) -> method.Hyper:
    a = config["agent"]
    return method.Hyper(lr=a["lr"], gamma=a["gamma"], value_coef=a["value_coef"],
                        target_lr=config["meta"]["target_lr"], meta_entropy=config["meta"]["meta_entropy"])


def specs(config: dict) -> list[Spec]:
    out = [Spec.parse(raw, config["meta"]["init_entropy"]) for raw in config["agents"]]
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ValueError(f"agents: names must be unique, got {names}")
    return out


def run_agent(spec: Spec, config: dict, device: torch.device, progress: bool = False,
              dtype=torch.float32) -> JobResult:
    """Train ``config['seeds']`` copies of one agent configuration online; returns its reward curve."""
    start = time.perf_counter()
    e, a, m, run = config["env"], config["agent"], config["meta"], config["run"]
    n, T = int(config["seeds"]), int(a["rollout"])
    if run["log_every"] % T or run["steps"] % run["log_every"]:
        raise ValueError("run: log_every must be a multiple of agent.rollout and divide run.steps")
    hp = hyper(config)
    end_at_collect = bool(a.get("end_at_collect", True))
    env = TwoColours(n, np.random.default_rng(run["env_seed"]), size=e["size"], swap_every=e["swap_every"],
                     rewards=tuple(e["rewards"]), step_reward=e["step_reward"])
    gen = torch.Generator().manual_seed(run["init_seed"])
    x = {k: v.to(device).requires_grad_(True)
         for k, v in agent.init_params(n, env.obs_dim, a["hidden"], N_ACTIONS, gen, dtype).items()}
    w = {k: v.to(device).requires_grad_(True)
         for k, v in method.init_meta(n, m["features"], m["hidden"], spec.entropy, gen, dtype).items()}
    opt = torch.optim.Adam(list(w.values()), lr=m["lr"])
    act_rng = np.random.default_rng(run["init_seed"] + 1)
    history: list[tuple[agent.Params, agent.Rollout, torch.Tensor]] = []
    reward_hist = torch.zeros(n, m["features"], dtype=dtype, device=device)
    result = JobResult(spec.name)
    sums = np.zeros((3, n))
    obs = env.observe()
    updates = run["steps"] // T
    for u in tqdm(range(updates), desc=spec.name, unit="update", disable=not progress, mininterval=2.0):
        weights = agent.acting_weights(x)
        obs_buf, acts, rews, ends = [obs], [], [], []
        for _ in range(T):
            action = agent.act(weights, obs, act_rng)
            rews.append(env.step(action))
            ends.append(env.collected.copy())
            acts.append(action)
            obs = env.observe()
            obs_buf.append(obs)
        rewards = torch.as_tensor(np.stack(rews, 1), device=device, dtype=dtype)
        roll = agent.Rollout(torch.as_tensor(np.stack(obs_buf, 1), device=device, dtype=dtype),
                             torch.as_tensor(np.stack(acts, 1), device=device), rewards,
                             torch.as_tensor(np.stack(ends, 1), device=device, dtype=dtype) if end_at_collect
                             else None)
        reward_hist = torch.cat([reward_hist[:, 1:], rewards.mean(1, keepdim=True)], 1)
        feat = reward_hist.clone()
        with torch.no_grad():
            eps = (torch.full((n,), spec.entropy, dtype=dtype, device=device) if spec.method == "fixed"
                   else method.entropy_weight(w, feat))
        history.append((x, roll, feat))
        loss = agent.a2c_loss(x, roll, eps, hp.gamma, hp.value_coef)
        sums[0] += rewards.sum(1).cpu().numpy()
        sums[1] += eps.cpu().numpy() * T
        with torch.no_grad():
            sums[2] += agent.policy_terms(x, roll)[1].sum(1).cpu().numpy()
        x = agent.sgd_step(x, loss, hp.lr, create_graph=False)
        meta_loss = None
        if spec.method == "mg" and len(history) == spec.K + 1:
            x0, rolls, feats = history[0][0], [h[1] for h in history[:-1]], [h[2] for h in history[:-1]]
            meta_loss = method.mg_meta_loss(w, x0, rolls, feats, history[-1][1], hp)
            history = history[-1:]
        elif spec.method == "bmg" and len(history) == spec.K + spec.L:
            K = spec.K
            x_last, roll_last, _ = history[-1]  # x_{K+L-1}: the L-1 target updates are the agent's own
            target = method.bootstrap_target(w, x_last, [], [], roll_last, hp)
            meta_loss = method.bmg_meta_loss(w, history[0][0], [h[1] for h in history[:K]],
                                             [h[2] for h in history[:K]], target, roll_last, hp, spec.matching)
            history = history[-1:]
        elif spec.method == "fixed":
            history.clear()
        if meta_loss is not None:
            check_finite(float(meta_loss.detach()), f"{spec.name} meta-loss", u)
            opt.zero_grad(set_to_none=True)
            meta_loss.backward()
            opt.step()
        if ((u + 1) * T) % run["log_every"] == 0:
            steps = run["log_every"]
            result.steps.append((u + 1) * T)
            result.reward.append((sums[0] / steps).tolist())
            result.entropy_weight.append((sums[1] / steps).tolist())
            result.policy_entropy.append((sums[2] / steps).tolist())
            sums[:] = 0
    result.seconds = time.perf_counter() - start
    return result


def _job(spec: Spec, config: dict, device: str, path: Path, progress: bool, commit: str) -> JobResult:
    """Run one job and cache it (atomically: a kill never leaves half a file). Top-level, so a worker can run it."""
    torch.set_num_threads(int(config.get("threads", 1)))
    result = run_agent(spec, config, torch.device(device), progress)
    result.commit = commit
    path.parent.mkdir(parents=True, exist_ok=True)
    recording._atomic_write(path, json.dumps(asdict(result)).encode())
    return result


def run_all(config: dict, ctx: registry.RunContext) -> tuple[list[Spec], list[JobResult], str]:
    """Every job of ``config`` (cached ones are read back), and the device used. ``run.workers`` > 1 runs that many
    jobs at once in separate processes (CPU only; each with ``threads`` threads)."""
    torch.set_num_threads(int(config.get("threads", 1)))
    device = pick_device(ctx.device)
    todo = specs(config)
    cache = Path(ctx.work_dir) / "bootstrapped_meta_learning" / ctx.config_name / registry.fingerprint(
        {k: v for k, v in config.items() if k not in ("record", "threads", "claims", "agents")})
    paths = {s.name: cache / f"{registry.fingerprint(asdict(s))}.json" for s in todo}
    done = {s.name: JobResult(**json.loads(paths[s.name].read_text(encoding="utf-8")))
            for s in todo if paths[s.name].exists() and not ctx.fresh}
    missing = [s for s in todo if s.name not in done]
    if missing and ctx.eval_only:
        raise ValueError(f"no finished job at {paths[missing[0].name]}; run `mlatlas repro run "
                         "bootstrapped_meta_learning` first")
    commit = recording.git_commit(ctx.root, CODE_PATHS)
    workers = min(int(config["run"].get("workers", 1)), len(missing))
    if workers > 1 and device.type == "cpu":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {s.name: pool.submit(_job, s, config, "cpu", paths[s.name], False, commit)
                       for s in missing}
            for name, future in tqdm(futures.items(), desc="BMG jobs", unit="job", disable=not ctx.progress):
                done[name] = future.result()
    else:
        for s in missing:
            done[s.name] = _job(s, config, str(device), paths[s.name], ctx.progress, commit)
    return todo, [done[s.name] for s in todo], str(device)
