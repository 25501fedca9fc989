"""Matching Networks (Vinyals et al. 2016) without full-context embeddings, as the paper uses them on Omniglot:
a query's label distribution is the attention-weighted sum of the support labels, the attention being a softmax
over cosine similarities between the query's and each support image's embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reproductions.datasets.omniglot_benchmark import Episode, conv4


class MatchingNetworks:
    def build(self, config: dict) -> nn.Module:
        return conv4(config["method"]["channels"])

    def scores(self, model: nn.Module, episode: Episode) -> Tensor:
        """Log-probability of each class for each query."""
        support = F.normalize(model(episode.support_x), dim=1)
        query = F.normalize(model(episode.query_x), dim=1)
        attention = torch.softmax(query @ support.T, dim=1)  # [queries, supports]
        probs = attention @ F.one_hot(episode.support_y, episode.n_way).to(attention.dtype)
        return torch.log(probs.clamp_min(1e-12))

    def loss(self, model: nn.Module, episode: Episode) -> Tensor:
        return F.nll_loss(self.scores(model, episode), episode.query_y)
