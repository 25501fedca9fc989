"""The regressors: plain ReLU MLPs of any depth and width, and the same with the bias transformation."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def mlp(in_features: int = 1, width: int = 40, depth: int = 2) -> nn.Sequential:
    """``depth`` hidden ReLU layers of ``width`` units; ``mlp(1, 40, 2)`` is the MAML paper's 1-40-40-1 network.
    A plain ``nn.Sequential`` of linear layers and ReLUs, so the core runs many tasks at once without vmap."""
    dims = [in_features] + [width] * depth
    blocks: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        blocks += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*blocks, nn.Linear(dims[-1], 1))


class BiasTransformMLP(nn.Module):
    """The bias transformation of Finn, Yu et al. (2017) that Finn & Levine's universality proof relies on: a
    learned vector ``theta`` is concatenated to the input, so the first layer computes
    ``W_x x + W_theta theta + b``. Its gradient step changes ``W_theta theta`` through both factors, so the
    effective first-layer bias after adaptation depends on the data in a way a plain bias cannot (plain bias:
    ``b - a dL/db``; here ``W_theta theta`` moves by ``-a (W_theta W_theta^T + |theta|^2) dL/db`` to first
    order)."""

    def __init__(self, width: int = 40, depth: int = 2, dim: int = 10):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(dim))
        self.net = mlp(1 + dim, width, depth)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(torch.cat([x, self.theta.expand(*x.shape[:-1], self.theta.shape[0])], dim=-1))


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
