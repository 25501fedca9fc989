"""The optimiser as a policy: its state (Section 5 of the paper), the neural-network policy, and rollouts.

State at iteration t for a problem with n parameters and history length H:

    s_t = [ x_t,                                   current location (n; only the cost uses it)
            f(x_t) - f(x_{t-i})   for i = 1..H,     change of the objective relative to the H previous locations
            grad f(x_{t-j})       for j = 0..H-1 ]  the H most recent gradients, the current one first (H * n)

Entries whose location does not exist yet are zero. The paper lists the objective changes and the gradients both
"at the i-th most recent location for i in {2, ..., H+1}", counting the current location as the first. For the
objective changes this is the H previous locations, as above. Read literally for the gradients it would hide the
gradient at the current point from the policy, and the paper's own initial target (the momentum step, a linear
function of the current and past gradients) could then not be expressed; we read it as the H most recent gradients
including the current one (our reconstruction; ``include_current_gradient: false`` gives the literal reading).

The policy's mean is a network with one hidden layer of 50 softplus units and a linear output (the step), fed the
state without x_t. Inputs are standardised with fixed statistics of the first training samples (ours; the paper
does not say).
"""

from __future__ import annotations

import torch
from torch import nn

from reproductions.learning_to_optimize.problems import ProblemSet


class Tracker:
    """The state of B optimisers running on each of P problems: locations [P, B, n] and their history."""

    def __init__(self, problems: ProblemSet, x: torch.Tensor, history: int, include_current_gradient: bool = True):
        self.problems, self.H, self.current = problems, history, include_current_gradient
        P, B, n = x.shape
        self.x = x
        self.f, g = problems.value_and_grad(x)
        self.f_prev = torch.zeros(P, B, history, dtype=x.dtype, device=x.device)
        self.valid = torch.zeros(P, B, history, dtype=torch.bool, device=x.device)
        # gradients at x_t, x_{t-1}, ..., x_{t-H} (one more than kept, for the literal reading)
        self.grads = torch.zeros(P, B, history + 1, n, dtype=x.dtype, device=x.device)
        self.grads[:, :, 0] = g

    @property
    def grad(self) -> torch.Tensor:
        return self.grads[:, :, 0]

    def move(self, x_new: torch.Tensor) -> None:
        f_new, g_new = self.problems.value_and_grad(x_new)
        self.f_prev = torch.cat([self.f[..., None], self.f_prev[..., :-1]], -1)
        self.valid = torch.cat([torch.ones_like(self.valid[..., :1]), self.valid[..., :-1]], -1)
        self.grads = torch.cat([g_new[:, :, None], self.grads[:, :, :-1]], 2)
        self.x, self.f = x_new, f_new

    def features(self) -> torch.Tensor:
        """The policy's input: the state without x, [P, B, H * (1 + n)]."""
        df = torch.where(self.valid, self.f[..., None] - self.f_prev, torch.zeros_like(self.f_prev))
        g = self.grads[:, :, :self.H] if self.current else self.grads[:, :, 1:]
        return torch.cat([df, g.flatten(2)], -1)

    def state(self) -> torch.Tensor:
        return torch.cat([self.x, self.features()], -1)


def state_dim(n: int, history: int) -> int:
    return n + history * (1 + n)


class PolicyNet(nn.Module):
    """Mean step of the learned optimiser: features -> 50 softplus units -> step (n)."""

    def __init__(self, n: int, history: int, hidden: int = 50):
        super().__init__()
        d_in = history * (1 + n)
        self.body = nn.Sequential(nn.Linear(d_in, hidden), nn.Softplus(), nn.Linear(hidden, n))
        self.register_buffer("mean", torch.zeros(d_in, dtype=torch.float64))
        self.register_buffer("std", torch.ones(d_in, dtype=torch.float64))
        self.double()

    def set_normalisation(self, features: torch.Tensor) -> None:
        flat = features.reshape(-1, features.shape[-1])
        self.mean.copy_(flat.mean(0))
        self.std.copy_(flat.std(0).clamp_min(1e-8))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.body((features - self.mean) / self.std)

    def jacobian(self, features: torch.Tensor) -> torch.Tensor:
        """d step / d features at each row of ``features`` [..., d_in] -> [..., n, d_in] (exact, closed form)."""
        lin1, _, lin2 = self.body
        z = (features - self.mean) / self.std
        slope = torch.sigmoid(lin1(z))  # softplus' = sigmoid
        return torch.einsum("oh,...h,hi->...oi", lin2.weight, slope, lin1.weight) / self.std


@torch.no_grad()
def run_policy(policy: PolicyNet, problems: ProblemSet, iterations: int, history: int,
               include_current_gradient: bool = True) -> torch.Tensor:
    """The learned optimiser ("predicted step descent") from every problem's x0, taking the policy's mean step.
    Returns the objective curve [P, iterations + 1]; a problem whose iterate becomes non-finite is frozen and scores
    +inf from then on."""
    tr = Tracker(problems, problems.x0[:, None, :].clone(), history, include_current_gradient)
    curve = [tr.f[:, 0]]
    alive = torch.isfinite(tr.f[:, 0])
    for _ in range(iterations):
        step = policy(tr.features())
        x_new = tr.x + torch.where(alive[:, None, None], step, torch.zeros_like(step))
        ok = torch.isfinite(x_new).all(-1)[:, 0]
        x_new = torch.where(ok[:, None, None], x_new, tr.x)
        tr.move(x_new)
        alive = alive & ok & torch.isfinite(tr.f[:, 0])
        curve.append(torch.where(alive, tr.f[:, 0], torch.full_like(tr.f[:, 0], float("inf"))))
    return torch.stack(curve, 1)


@torch.no_grad()
def rollout_linear_gaussian(problems: ProblemSet, K: torch.Tensor, k: torch.Tensor, G: torch.Tensor, samples: int,
                            history: int, generator: torch.Generator, include_current_gradient: bool = True):
    """Sample ``samples`` trajectories per problem from time-varying linear-Gaussian controllers
    a_t ~ N(K_t s_t + k_t, G_t) (K [P, T, n, ds], k [P, T, n], G [P, T, n, n]).
    Returns states [P, S, T+1, ds], actions [P, S, T, n], objective values [P, S, T+1]."""
    P, T, n, _ = K.shape
    x0 = problems.x0[:, None, :].expand(P, samples, n).clone()
    tr = Tracker(problems, x0, history, include_current_gradient)
    chol = torch.linalg.cholesky(G)
    states, actions, values = [tr.state()], [], [tr.f]
    for t in range(T):
        s = states[-1]
        noise = torch.randn(P, samples, n, generator=generator, dtype=s.dtype).to(s.device)
        a = torch.einsum("pij,psj->psi", K[:, t], s) + k[:, t, None] + torch.einsum("pij,psj->psi", chol[:, t], noise)
        tr.move(tr.x + a)
        actions.append(a)
        states.append(tr.state())
        values.append(tr.f)
    return torch.stack(states, 2), torch.stack(actions, 2), torch.stack(values, 2)
