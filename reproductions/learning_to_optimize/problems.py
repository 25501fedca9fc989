"""The three families of objective functions of Li & Malik (2017), Section 6, as batches of problems.

A *problem set* holds P objective functions of one family with the same shapes (each is the training loss of one
model on its own randomly generated dataset) and one starting point for each. ``value(params)`` evaluates all of
them at once: ``params`` has shape ``[P, B, n]`` (B points per problem, e.g. samples or iterates) and the result
``[P, B]``; ``value_and_grad`` adds the gradient. Everything is float64.

What the paper states (Section 6) and what we had to choose (marked *ours*):

* logistic regression: d = 3, lambda = 0.0005 on w only; 100 points per dataset, 50 from each of two Gaussians
  with random means and covariances, one label per Gaussian; 90 training and 100 test functions.
  *ours*: means ~ N(0, I), covariances A A^T / d + 0.1 I with A ~ N(0, 1).
* robust linear regression (Geman-McClure, c = 1): d = 3; 25 points from each of four Gaussians with random means
  and identity covariance; the labels of one Gaussian's points are their projection on one random vector, plus one
  random bias, plus i.i.d. Gaussian noise; 120 training and 100 test functions.
  *ours*: means ~ N(0, 4 I), vectors ~ N(0, I), biases ~ N(0, 1), noise std 0.5.
* two-layer ReLU classifier with softmax cross-entropy, lambda = 0.0005 on W and U (not on biases),
  d = h = p = 2; 25 points from each of four Gaussians with random means and covariances, each Gaussian given a
  random label in {0, 1}, not all labels equal; 80 training functions (the test count is not stated: 100, as for the
  other families). *ours*: means ~ N(0, 4 I), covariances as for logistic regression.
* starting points: "a random point in the domain" (Algorithm 1). *ours*: x0 ~ N(0, I), one per problem.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

FAMILIES = ("logistic", "robust", "neural_net")
DTYPE = torch.float64


@dataclass
class ProblemSet:
    family: str
    x: torch.Tensor  # [P, N, d] inputs
    y: torch.Tensor  # [P, N] labels (0/1 or real)
    x0: torch.Tensor  # [P, n] starting points
    lam: float = 0.0005
    c: float = 1.0
    hidden: int = 2
    classes: int = 2

    @property
    def n_problems(self) -> int:
        return self.x.shape[0]

    @property
    def dim(self) -> int:
        return self.x0.shape[1]

    def to(self, device) -> ProblemSet:
        return ProblemSet(self.family, self.x.to(device), self.y.to(device), self.x0.to(device), self.lam, self.c,
                          self.hidden, self.classes)

    def subset(self, index) -> ProblemSet:
        return ProblemSet(self.family, self.x[index], self.y[index], self.x0[index], self.lam, self.c,
                          self.hidden, self.classes)

    def value(self, params: torch.Tensor) -> torch.Tensor:
        """Objective of every problem at ``params`` [P, B, n] -> [P, B]."""
        x, y = self.x[:, None], self.y[:, None]  # [P, 1, N, d], [P, 1, N]
        if self.family in ("logistic", "robust"):
            d = self.x.shape[-1]
            w, b = params[..., :d], params[..., d]
            z = torch.einsum("pbd,pnd->pbn", w, self.x) + b[..., None]  # [P, B, N]
            if self.family == "logistic":
                # -[y log s(z) + (1 - y) log(1 - s(z))] = softplus(z) - y z
                loss = (F.softplus(z) - y * z).mean(-1)
                return loss + 0.5 * self.lam * (w * w).sum(-1)
            r2 = (y - z) ** 2
            return (r2 / (self.c ** 2 + r2)).mean(-1)
        W, b1, U, b2 = unpack_net(params, self.x.shape[-1], self.hidden, self.classes)
        h = torch.relu(torch.einsum("pbhd,pnd->pbnh", W, self.x) + b1[..., None, :])
        logits = torch.einsum("pbch,pbnh->pbnc", U, h) + b2[..., None, :]
        nll = -torch.log_softmax(logits, -1).gather(-1, y.long()[..., None].expand(*logits.shape[:-1], 1))
        return nll[..., 0].mean(-1) + 0.5 * self.lam * ((W * W).sum((-1, -2)) + (U * U).sum((-1, -2)))

    def value_and_grad(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            p = params.detach().requires_grad_(True)
            f = self.value(p)
            (g,) = torch.autograd.grad(f.sum(), p)
        return f.detach(), g.detach()

    def hessian(self, params: torch.Tensor) -> torch.Tensor:
        """Exact Hessians at ``params`` [P, B, n] -> [P, B, n, n] (n is at most 12 here)."""
        with torch.enable_grad():
            p = params.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.value(p).sum(), p, create_graph=True)
            rows = [torch.autograd.grad(g[..., i].sum(), p, retain_graph=True)[0] for i in range(p.shape[-1])]
        return torch.stack(rows, -2).detach()


def unpack_net(params: torch.Tensor, d: int, h: int, p: int):
    lead = params.shape[:-1]
    i = 0
    W = params[..., i:i + h * d].reshape(*lead, h, d)
    i += h * d
    b1 = params[..., i:i + h]
    i += h
    U = params[..., i:i + p * h].reshape(*lead, p, h)
    i += p * h
    return W, b1, U, params[..., i:i + p]


def n_params(family: str, d: int, hidden: int = 2, classes: int = 2) -> int:
    return d + 1 if family in ("logistic", "robust") else hidden * d + hidden + classes * hidden + classes


def _random_cov(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def _dataset(family: str, rng: np.random.Generator, d: int) -> tuple[np.ndarray, np.ndarray]:
    if family == "logistic":
        xs, ys = [], []
        for label in (0, 1):
            xs.append(rng.multivariate_normal(rng.standard_normal(d), _random_cov(rng, d), size=50))
            ys.append(np.full(50, float(label)))
        return np.concatenate(xs), np.concatenate(ys)
    if family == "robust":
        xs, ys = [], []
        for _ in range(4):
            pts = 2.0 * rng.standard_normal(d) + rng.standard_normal((25, d))
            v, bias = rng.standard_normal(d), rng.standard_normal()
            xs.append(pts)
            ys.append(pts @ v + bias + 0.5 * rng.standard_normal(25))
        return np.concatenate(xs), np.concatenate(ys)
    if family == "neural_net":
        while True:
            labels = rng.integers(0, 2, size=4)
            if labels.min() != labels.max():
                break
        xs = [rng.multivariate_normal(2.0 * rng.standard_normal(d), _random_cov(rng, d), size=25) for _ in range(4)]
        return np.concatenate(xs), np.repeat(labels.astype(float), 25)
    raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")


def sample(family: str, n_problems: int, rng: np.random.Generator, d: int | None = None) -> ProblemSet:
    """``n_problems`` objective functions of ``family``, each on its own dataset, with starting points."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    d = d or (3 if family != "neural_net" else 2)
    data = [_dataset(family, rng, d) for _ in range(n_problems)]
    x = torch.tensor(np.stack([a for a, _ in data]), dtype=DTYPE)
    y = torch.tensor(np.stack([b for _, b in data]), dtype=DTYPE)
    x0 = torch.tensor(rng.standard_normal((n_problems, n_params(family, d))), dtype=DTYPE)
    return ProblemSet(family, x, y, x0)
