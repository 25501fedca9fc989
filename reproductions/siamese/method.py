"""Siamese networks for one-shot recognition (Koch, Zemel & Salakhutdinov 2015): twin embeddings, a learned weighted
L1 distance and a sigmoid give the probability that two images show the same character; trained on verification
pairs, used for one-shot classification by picking the most similar support image.

Deviation for the CPU budget: the twins are the 4-block 28x28 network of the other reproductions, not Koch et al.'s
105x105 network (four layers of 64-128 large filters and a 4096-unit embedding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reproductions.datasets.omniglot_benchmark import Episode, class_means, conv4


class SiameseNet(nn.Module):
    def __init__(self, channels: int = 64):
        super().__init__()
        self.embed = nn.Sequential(conv4(channels), nn.Linear(channels, channels), nn.Sigmoid())
        self.weigh = nn.Linear(channels, 1)  # weighted L1 distance -> logit of "same character"

    def pair_logits(self, a: Tensor, b: Tensor) -> Tensor:
        """Logit of "same" for every pair of the rows of ``a`` [n, ...] and ``b`` [m, ...]: [n, m]."""
        ea, eb = self.embed(a), self.embed(b)
        return self.weigh((ea.unsqueeze(1) - eb.unsqueeze(0)).abs()).squeeze(-1)


class Siamese:
    def build(self, config: dict) -> nn.Module:
        return SiameseNet(config["method"]["channels"])

    def scores(self, model: nn.Module, episode: Episode) -> Tensor:
        """Mean "same" logit of each query against each class's support images: [queries, n_way]."""
        logits = model.pair_logits(episode.query_x, episode.support_x)  # [queries, supports]
        return class_means(logits.T, episode.support_y, episode.n_way).T

    def loss(self, model: nn.Module, episode: Episode) -> Tensor:
        """Binary cross-entropy over every (query, support) pair, same- and different-character pairs weighted
        equally (the episode has n_way - 1 different pairs for each same pair)."""
        logits = model.pair_logits(episode.query_x, episode.support_x)
        same = (episode.query_y.unsqueeze(1) == episode.support_y.unsqueeze(0)).to(logits.dtype)
        weight = torch.tensor(float(episode.n_way - 1), device=logits.device)
        return F.binary_cross_entropy_with_logits(logits, same, pos_weight=weight)
