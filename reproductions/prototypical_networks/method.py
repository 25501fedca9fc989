"""Prototypical Networks (Snell, Swersky & Zemel 2017): a class is the mean of its support embeddings, and a query
is classified by a softmax over negative squared Euclidean distances to the class prototypes."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from reproductions.datasets.omniglot_benchmark import Episode, class_means, conv4


class PrototypicalNetworks:
    def build(self, config: dict) -> nn.Module:
        return conv4(config["method"]["channels"])

    def scores(self, model: nn.Module, episode: Episode) -> Tensor:
        prototypes = class_means(model(episode.support_x), episode.support_y, episode.n_way)
        return -torch_sq_dist(model(episode.query_x), prototypes)

    def loss(self, model: nn.Module, episode: Episode) -> Tensor:
        return F.cross_entropy(self.scores(model, episode), episode.query_y)


def torch_sq_dist(a: Tensor, b: Tensor) -> Tensor:
    """Squared Euclidean distances between the rows of ``a`` [n, d] and of ``b`` [m, d]: [n, m]."""
    return (a.unsqueeze(1) - b.unsqueeze(0)).pow(2).sum(-1)
