"""One *job* is one (family, seed): draw the training functions, tune the baselines on them, learn the optimiser
with guided policy search, then run every optimiser on the held-out test functions (the same test functions for
every seed, drawn from ``test_seed``). A finished job is cached under the work folder, so an interrupted run resumes
at the first unfinished job; ``--fresh`` starts over.
"""

from __future__ import annotations

import copy
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from reproductions.core import recording, registry
from reproductions.core.runtime import pick_device, seed_everything
from reproductions.learning_to_optimize import baselines, gps, problems
from reproductions.learning_to_optimize.policy import PolicyNet, Tracker, rollout_linear_gaussian, run_policy, \
    state_dim

# The code a result depends on (results excluded): uncommitted changes here mark its commit "-dirty".
CODE_PATHS = ["reproductions/learning_to_optimize", ":(exclude)reproductions/learning_to_optimize/results",
              "reproductions/core/registry.py", "reproductions/core/runtime.py", "reproductions/core/recording.py"]

LEARNED = "learned"
PAPER_SET = (LEARNED, "gd", "momentum", "cg", "lbfgs")  # the algorithms the paper's margin of victory compares


@dataclass
class JobResult:
    family: str
    seed: int
    curves: dict[str, list[list[float]]]  # optimiser -> [test problem][iteration 0..N] objective
    hyper: dict[str, dict]  # tuned baseline settings
    training: list[dict[str, float]] = field(default_factory=list)  # one row per GPS iteration
    seconds: float = 0.0
    commit: str = ""  # the code's commit when the job ran (a cached job keeps it; "" in caches older than this field)


def family_config(config: dict, family: str) -> dict:
    """The config with ``per_family[family]`` merged over it."""
    out = copy.deepcopy({k: v for k, v in config.items() if k != "per_family"})
    for key, value in (config.get("per_family", {}) or {}).get(family, {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key].update(value)
        else:
            out[key] = value
    return out


def momentum_controller(steps: torch.Tensor, decays: torch.Tensor, n: int, history: int, horizon: int, std: float,
                        include_current_gradient: bool = True) -> gps.Controller:
    """The paper's initial target: mean action = the momentum step, -gamma sum_j alpha^j grad_{t-j} (over the H
    gradients in the state), exploration N(0, std^2 I)."""
    P = steps.shape[0]
    ds = state_dim(n, history)
    K = torch.zeros(P, horizon, n, ds, dtype=steps.dtype, device=steps.device)
    eye = torch.eye(n, dtype=steps.dtype, device=steps.device)
    for j in range(history):
        lag = j if include_current_gradient else j + 1
        coef = -steps * decays ** lag  # [P]
        col = n + history + j * n
        K[:, :, :, col:col + n] = coef[:, None, None, None] * eye
    k = torch.zeros(P, horizon, n, dtype=steps.dtype, device=steps.device)
    G = (std ** 2) * eye.expand(P, horizon, n, n).clone()
    return gps.Controller(K, k, G)


def learn_optimizer(cfg: dict, train: problems.ProblemSet, seed: int, progress: bool = False):
    """Guided policy search on the training functions; returns (policy, one row per GPS iteration)."""
    g, pc = cfg["gps"], cfg["policy"]
    H, cur, T = cfg["history"], cfg["include_current_gradient"], g["horizon"]
    n = train.dim
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    policy = PolicyNet(n, H, pc["hidden"]).to(train.x0.device)
    opt = torch.optim.Adam(policy.parameters(), lr=pc["lr"])
    steps, decays = baselines.tune_momentum_per_problem(train, T, g["momentum_steps"], g["momentum_decays"])
    ctrl = momentum_controller(steps, decays, n, H, T, g["init_std"], cur)
    s0 = Tracker(train, train.x0[:, None, :].clone(), H, cur).state()[:, 0]
    rows = []
    for it in tqdm(range(1, g["iterations"] + 1), desc=f"GPS {train.family}", disable=not progress, leave=False):
        states, actions, values = rollout_linear_gaussian(train, ctrl.K, ctrl.k, ctrl.G, g["samples"], H, gen, cur)
        keep = ~gps.diverged_samples(states, values, g["divergence"])  # [P, S]; diverged runs enter no fit
        states = torch.where(keep[:, :, None, None], states, torch.zeros_like(states))
        actions = torch.where(keep[:, :, None, None], actions, torch.zeros_like(actions))
        if it == 1:
            policy.set_normalisation(states[keep][..., n:])
        xuy = torch.cat([states[:, :, :-1], actions, states[:, :, 1:]], -1)[keep].reshape(-1, 2 * states.shape[-1] + n)
        pick = torch.randperm(xuy.shape[0], generator=gen)[:g["gmm_points"]].to(xuy.device)
        gmm = gps.fit_gmm(xuy[pick], g["gmm_components"], g["gmm_iterations"], gen)
        dyn = gps.fit_dynamics(states, actions, gmm, g["prior_strength"], keep=keep)
        count = keep.sum(1).clamp_min(1).to(states.dtype)[:, None, None]
        mean_states = states.sum(1) / count  # [P, T+1, ds] over the kept samples
        C, c = gps.quadratic_cost(train, mean_states[..., :n], states.shape[-1])
        lin = None
        if it > 1 and g["policy_weight"] > 0:
            lin = gps.linearise_policy(policy, mean_states[:, :T], n, gps.policy_covariance(ctrl))
        new, eta, kl = gps.c_step(dyn, C, c, ctrl, s0, g["kl_step"] * T, lin, g["policy_weight"],
                                  g["bisection_steps"])
        lost = ~keep.any(1)  # a condition with no usable sample keeps its controller
        ctrl = gps.Controller(torch.where(lost[:, None, None, None], ctrl.K, new.K),
                              torch.where(lost[:, None, None], ctrl.k, new.k),
                              torch.where(lost[:, None, None, None], ctrl.G, new.G))
        kl = torch.where(lost, torch.zeros_like(kl), kl)
        missed = kl > g["kl_step"] * T * (1 + 1e-6)  # bound not met even at the top of the eta range
        loss = gps.train_policy(policy, states, ctrl, n, pc["epochs"], pc["batch_size"], pc["lr"], gen, opt, keep)
        with torch.no_grad():
            policy_curve = run_policy(policy, train, T, H, cur)
        rows.append({
            "iteration": it,
            "sample_mean_objective": float(values[keep].mean()),
            "diverged_samples": int((~keep).sum()),
            "conditions_without_samples": int(lost.sum()),
            "kl_bound_missed": int(missed.sum()),
            "policy_train_mean_objective": float(torch.nan_to_num(policy_curve, posinf=1e6).mean()),
            "kl": float(kl.mean()),
            "log10_eta": float(torch.log10(eta).mean()),
            "policy_loss": loss,
        })
    return policy, rows


def run_job(config: dict, family: str, seed: int, progress: bool, device: str = "cpu") -> JobResult:
    start = time.perf_counter()
    cfg = family_config(config, family)
    seed_everything(seed)
    sizes = cfg["problems"]
    train = problems.sample(family, sizes["train"], np.random.default_rng([seed, 1])).to(device)
    test = problems.sample(family, sizes["test"], np.random.default_rng([cfg["test_seed"], 2])).to(device)
    N = cfg["eval_iterations"]
    b = cfg["baselines"]
    hyper = {name: baselines.tune(name, train, N, b["steps"], b["decays"], b["lbfgs_memory"])
             for name in baselines.FIXED_STEP}
    policy, rows = learn_optimizer(cfg, train, seed, progress)
    curves = {LEARNED: run_policy(policy, test, N, cfg["history"], cfg["include_current_gradient"])}
    for name in baselines.FIXED_STEP:
        curves[name] = baselines.run(name, test, N, hyper[name])
    for name in b["scipy"] or []:
        if name not in baselines.SCIPY:
            raise ValueError(f"baselines.scipy: unknown {name!r}; choose from {', '.join(baselines.SCIPY)}")
        curves[name] = baselines.run(name, test, N, {})
    return JobResult(family, seed, {k: v.cpu().tolist() for k, v in curves.items()}, hyper, rows,
                     time.perf_counter() - start)


def run_all(config: dict, ctx: registry.RunContext) -> tuple[list[JobResult], str]:
    """Every (family, seed) job of ``config`` (cached ones are read back), and the device used. The work is small
    dense float64 algebra, fastest on the CPU; another device gives the same computation."""
    torch.set_num_threads(int(config.get("threads", 1)))
    device = str(pick_device(ctx.device))
    unknown = set(config["families"]) - set(problems.FAMILIES)
    if unknown:
        raise ValueError(f"families: unknown {sorted(unknown)}; choose from {', '.join(problems.FAMILIES)}")
    cache = Path(ctx.work_dir) / "learning_to_optimize" / ctx.config_name / registry.fingerprint(
        {**{k: v for k, v in config.items() if k not in ("record", "threads")}, "device": device})
    jobs = [(f, s) for f in config["families"] for s in range(config["seeds"])]
    commit = recording.git_commit(ctx.root, CODE_PATHS)
    results = []
    for family, seed in tqdm(jobs, desc="learning_to_optimize jobs", unit="job", disable=not ctx.progress):
        path = cache / f"{family}_seed{seed}.pt"
        if path.exists() and not ctx.fresh:
            results.append(JobResult(**torch.load(path, weights_only=True)))  # plain values only: no code runs
            continue
        if ctx.eval_only:
            raise ValueError(f"no finished job at {path}; run `mlatlas repro run learning_to_optimize` first")
        result = run_job(config, family, seed, ctx.progress, device)
        result.commit = commit
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save(result.__dict__, buf)
        recording._atomic_write(path, buf.getvalue())
        results.append(result)
    return results, device
