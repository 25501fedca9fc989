"""Meta-gradients (MG) and bootstrapped meta-gradients (BMG) for a meta-learned entropy weight.

The meta-learner ``w`` maps a feature vector (the agent's mean reward per step in each of its last rollouts) to
the entropy-regularisation weight ``eps = sigmoid(MLP_w(features))`` of the agent's update. From agent
parameters ``x0`` and the rollouts that followed, ``unroll`` replays ``K`` updates with a graph back to ``w``:
``x_K(w)``.

* MG: minimise ``f(x_K(w))``, the policy objective on the next rollout (``mg_meta_loss``).
* BMG: build a target ``x~`` by ``L - 1`` further updates of the update rule and a final gradient step on ``f``
  (``bootstrap_target``; no gradient flows into it), then minimise ``mu(x~, x_K(w))`` (``bmg_meta_loss``), with
  ``mu`` the KL divergence between the target's and the agent's policies on the target rollout's states, or half
  the squared Euclidean distance in parameter space.

With ``L = 1``, Euclidean matching and final step size ``beta``, the BMG meta-gradient is exactly ``beta`` times
the MG meta-gradient (``tests/test_repro_bootstrapped_meta_learning.py`` checks it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from reproductions.bootstrapped_meta_learning import agent
from reproductions.bootstrapped_meta_learning.agent import Params, Rollout


@dataclass(frozen=True)
class Hyper:
    """The agent's and the meta-objective's fixed settings."""

    lr: float = 0.1  # the agent's SGD step
    gamma: float = 0.99
    value_coef: float = 0.5
    target_lr: float = 0.1  # the bootstrap's final gradient step on f
    meta_entropy: float = 0.0  # entropy weight inside f (MG objective and BMG's final target step)


def init_meta(n: int, n_features: int, hidden: int, eps0: float, gen: torch.Generator,
              dtype=torch.float32) -> Params:
    """A 1-hidden-layer tanh MLP per agent whose output starts at ``eps0`` for any input."""
    if not 0.0 < eps0 < 1.0:
        raise ValueError(f"meta.init_entropy must be in (0, 1), got {eps0}")
    w1 = torch.randn(n, n_features, hidden, generator=gen, dtype=dtype) / n_features ** 0.5
    logit = torch.log(torch.tensor(eps0 / (1 - eps0), dtype=dtype))
    return {"w1": w1, "b1": torch.zeros(n, hidden, dtype=dtype),
            "w2": torch.zeros(n, hidden, 1, dtype=dtype), "b2": torch.full((n, 1), float(logit), dtype=dtype)}


def entropy_weight(w: Params, features: torch.Tensor) -> torch.Tensor:
    """``features`` ``[S, F]`` -> ``eps`` ``[S]`` in (0, 1)."""
    h = torch.tanh(torch.baddbmm(w["b1"].unsqueeze(1), features.unsqueeze(1), w["w1"]))
    return torch.sigmoid(torch.baddbmm(w["b2"].unsqueeze(1), h, w["w2"])).reshape(-1)


def inner_step(x: Params, roll: Rollout, eps: torch.Tensor, hp: Hyper, create_graph: bool) -> Params:
    return agent.sgd_step(x, agent.a2c_loss(x, roll, eps, hp.gamma, hp.value_coef), hp.lr, create_graph)


def unroll(w: Params, x0: Params, rolls: Sequence[Rollout], feats: Sequence[torch.Tensor], hp: Hyper) -> Params:
    """``x_K(w)``: ``K = len(rolls)`` agent updates from ``x0`` (no gradient into ``x0``), differentiable in ``w``."""
    x = {k: v.detach().requires_grad_(True) for k, v in x0.items()}
    for roll, feat in zip(rolls, feats, strict=True):
        x = inner_step(x, roll, entropy_weight(w, feat), hp, create_graph=True)
    return x


def mg_meta_loss(w: Params, x0: Params, rolls, feats, eval_roll: Rollout, hp: Hyper) -> torch.Tensor:
    """K-step meta-gradient objective ``sum_seeds f(x_K(w))`` on ``eval_roll``."""
    return agent.policy_objective(unroll(w, x0, rolls, feats, hp), eval_roll, hp.gamma, hp.meta_entropy).sum()


def bootstrap_target(w: Params, x_start: Params, rolls, feats, final_roll: Rollout, hp: Hyper) -> Params:
    """The target: ``len(rolls)`` (= L - 1) updates of the update rule from ``x_start`` (= x_K), then one gradient
    step of size ``target_lr`` on ``f`` over ``final_roll``. Returned detached: gradients stop at the target."""
    with torch.no_grad():
        w = {k: v.detach() for k, v in w.items()}
    x = {k: v.detach().requires_grad_(True) for k, v in x_start.items()}
    for roll, feat in zip(rolls, feats, strict=True):
        with torch.no_grad():
            eps = entropy_weight(w, feat)
        x = inner_step(x, roll, eps, hp, create_graph=False)
    f = agent.policy_objective(x, final_roll, hp.gamma, hp.meta_entropy)
    x = agent.sgd_step(x, f, hp.target_lr, create_graph=False)
    return {k: v.detach() for k, v in x.items()}


def matching(target: Params, x: Params, roll: Rollout, kind: str) -> torch.Tensor:
    """``mu(target, x)`` per agent ``[S]``: ``kl`` = mean over the rollout's states of KL(pi_target || pi_x);
    ``euclidean`` = half the squared distance over all parameters."""
    if kind == "kl":
        obs = roll.obs[:, :-1]
        return kl_from_logits(agent.policy_logits(target, obs), agent.policy_logits(x, obs)).mean(1)
    if kind == "euclidean":
        return half_squared_distance(target, x, start_dim=1)
    raise ValueError(f"bmg.matching: unknown matching function {kind!r}; choose kl or euclidean")


def kl_from_logits(target_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(target_logits) || softmax(logits))`` over the last dimension (one value per row)."""
    log_t = torch.log_softmax(target_logits, dim=-1)
    return (log_t.exp() * (log_t - torch.log_softmax(logits, dim=-1))).sum(-1)


def half_squared_distance(target: Params, x: Params, start_dim: int = 0) -> torch.Tensor:
    """``1/2 sum_k ||x[k] - target[k]||^2`` over every parameter ``k`` of ``x``; the dimensions before
    ``start_dim`` (e.g. a seed dimension) are kept."""
    return sum(0.5 * ((x[k] - target[k]) ** 2).flatten(start_dim).sum(-1) for k in x)


def bmg_meta_loss(w: Params, x0: Params, rolls, feats, target: Params, match_roll: Rollout, hp: Hyper,
                  kind: str = "kl") -> torch.Tensor:
    """BMG objective ``sum_seeds mu(x~, x_K(w))``; ``target`` must come from :func:`bootstrap_target`."""
    return matching(target, unroll(w, x0, rolls, feats, hp), match_roll, kind).sum()


def meta_gradient(loss: torch.Tensor, w: Params) -> Params:
    names = list(w)
    return dict(zip(names, torch.autograd.grad(loss, [w[k] for k in names])))
