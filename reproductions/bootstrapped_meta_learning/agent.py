"""A functional actor-critic for many independent agents at once (one per seed).

Parameters are a dict of tensors whose leading dimension is the agent (seed): every layer is one batched matrix
product, and because no agent's loss touches another agent's parameters, the gradient of the summed loss is every
agent's own gradient. The policy and the value function are separate MLPs (one hidden tanh layer each).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

Params = dict[str, torch.Tensor]


@dataclass
class Rollout:
    """``T`` steps of ``S`` agents: ``obs`` ``[S, T + 1, D]`` (the last one only bootstraps the return),
    ``actions`` ``[S, T]`` (long), ``rewards`` ``[S, T]``; ``ends`` ``[S, T]`` (1.0 where the return ends after
    that step, i.e. an object was collected; ``None``: the return never ends)."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    ends: torch.Tensor | None = None

    def seed(self, i: int) -> Rollout:
        """The rollout of agent ``i`` alone (a batch of one)."""
        return Rollout(self.obs[i:i + 1], self.actions[i:i + 1], self.rewards[i:i + 1],
                       None if self.ends is None else self.ends[i:i + 1])


def _linear_init(n: int, fan_in: int, fan_out: int, gen: torch.Generator, dtype, scale: float = 1.0):
    w = torch.randn(n, fan_in, fan_out, generator=gen, dtype=dtype) * (scale / fan_in ** 0.5)
    return w, torch.zeros(n, fan_out, dtype=dtype)


def init_params(n: int, obs_dim: int, hidden: int, n_actions: int, gen: torch.Generator,
                dtype=torch.float32) -> Params:
    p: Params = {}
    p["pi_w1"], p["pi_b1"] = _linear_init(n, obs_dim, hidden, gen, dtype)
    p["pi_w2"], p["pi_b2"] = _linear_init(n, hidden, n_actions, gen, dtype, scale=0.1)  # near-uniform start
    p["v_w1"], p["v_b1"] = _linear_init(n, obs_dim, hidden, gen, dtype)
    p["v_w2"], p["v_b2"] = _linear_init(n, hidden, 1, gen, dtype)
    return p


def _mlp(x: torch.Tensor, w1, b1, w2, b2) -> torch.Tensor:
    """``x`` ``[S, N, in]`` -> ``[S, N, out]``."""
    h = torch.tanh(torch.baddbmm(b1.unsqueeze(1), x, w1))
    return torch.baddbmm(b2.unsqueeze(1), h, w2)


def policy_logits(p: Params, obs: torch.Tensor) -> torch.Tensor:
    return _mlp(obs, p["pi_w1"], p["pi_b1"], p["pi_w2"], p["pi_b2"])


def values(p: Params, obs: torch.Tensor) -> torch.Tensor:
    return _mlp(obs, p["v_w1"], p["v_b1"], p["v_w2"], p["v_b2"]).squeeze(-1)


def policy_terms(p: Params, roll: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of the taken actions and policy entropies, both ``[S, T]``."""
    logp = torch.log_softmax(policy_logits(p, roll.obs[:, :-1]), dim=-1)
    taken = logp.gather(-1, roll.actions.unsqueeze(-1)).squeeze(-1)
    entropy = -(logp.exp() * logp).sum(-1)
    return taken, entropy


def returns(rewards: torch.Tensor, bootstrap: torch.Tensor, gamma: float,
            ends: torch.Tensor | None = None) -> torch.Tensor:
    """Discounted returns inside the rollout, bootstrapped with ``bootstrap`` ``[S]`` after its last step;
    ``G_t = r_t + gamma * (1 - end_t) * G_{t+1}``: where ``ends`` marks a step, nothing after it is added."""
    out = torch.empty_like(rewards)
    g = bootstrap
    for t in range(rewards.shape[1] - 1, -1, -1):
        keep = gamma if ends is None else gamma * (1.0 - ends[:, t])
        g = rewards[:, t] + keep * g
        out[:, t] = g
    return out


def advantages(p: Params, roll: Rollout, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages with no gradient, value predictions with gradient), both ``[S, T]``."""
    v = values(p, roll.obs)
    g = returns(roll.rewards, v[:, -1].detach(), gamma, roll.ends)
    return (g - v[:, :-1]).detach(), v[:, :-1]


def a2c_loss(p: Params, roll: Rollout, entropy_weight: torch.Tensor, gamma: float, value_coef: float) -> torch.Tensor:
    """The agent's update objective, one per agent ``[S]``: policy gradient + value regression - weighted entropy.
    ``entropy_weight`` ``[S]`` may carry a graph to the meta-learner."""
    adv, v = advantages(p, roll, gamma)
    logp, entropy = policy_terms(p, roll)
    returns_ = adv + v.detach()
    pg = -(logp * adv).mean(1)
    vf = 0.5 * ((returns_ - v) ** 2).mean(1)
    return pg + value_coef * vf - entropy_weight * entropy.mean(1)


def policy_objective(p: Params, roll: Rollout, gamma: float, entropy_weight: float = 0.0) -> torch.Tensor:
    """The meta-objective ``f``, one per agent ``[S]``: the policy-gradient loss (with a fixed entropy weight) on a
    rollout, advantages from the agent's own critic."""
    adv, _ = advantages(p, roll, gamma)
    logp, entropy = policy_terms(p, roll)
    return -(logp * adv).mean(1) - entropy_weight * entropy.mean(1)


def sgd_step(p: Params, loss: torch.Tensor, lr: float, create_graph: bool) -> Params:
    """``p - lr * grad(loss.sum())``; with ``create_graph`` the result stays differentiable (for meta-gradients)."""
    names = list(p)
    grads = torch.autograd.grad(loss.sum(), [p[k] for k in names], create_graph=create_graph, allow_unused=True)
    out = {}
    for k, g in zip(names, grads):
        new = p[k] if g is None else p[k] - lr * g
        out[k] = new if create_graph else new.detach().requires_grad_(True)
    return out


def acting_weights(p: Params) -> tuple[np.ndarray, ...]:
    """The policy's weights as numpy arrays, for :func:`act` (acting runs in numpy: far less overhead per step)."""
    return tuple(p[k].detach().cpu().double().numpy() for k in ("pi_w1", "pi_b1", "pi_w2", "pi_b2"))


def act(weights: tuple[np.ndarray, ...], obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sample one action per agent from the policy (weights from :func:`acting_weights`) at ``obs`` ``[S, D]``."""
    w1, b1, w2, b2 = weights
    h = np.tanh(np.matmul(obs[:, None, :], w1)[:, 0] + b1)
    logits = np.matmul(h[:, None, :], w2)[:, 0] + b2
    probs = np.exp(logits - logits.max(1, keepdims=True))
    cdf = np.cumsum(probs, 1)
    return (cdf > rng.random((len(obs), 1)) * cdf[:, -1:]).argmax(1)
