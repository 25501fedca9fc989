"""Matching Networks (Vinyals et al. 2016) without full-context embeddings, as the paper uses them on Omniglot:
a query's label distribution is the attention-weighted sum of the support labels, the attention being a softmax
over cosine similarities between the query's and each support image's embedding.

``method.scale`` (default 1, the paper's form) multiplies the cosines before the softmax. The 4-block embedding ends
in a ReLU, so its cosines lie in [0, 1]: unscaled, a 20-way softmax can never give one class more than
e / (e + 19) = 12.5%, and the loss cannot fall below 2.08 nats, which starves training of gradient."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reproductions.datasets.omniglot_benchmark import Episode, conv4


class MatchingNetworks:
    scale = 1.0

    def build(self, config: dict) -> nn.Module:
        self.scale = float(config["method"].get("scale", 1.0))
        return conv4(config["method"]["channels"])

    def scores(self, model: nn.Module, episode: Episode) -> Tensor:
        """Log-probability of each class for each query."""
        support = F.normalize(model(episode.support_x), dim=1)
        query = F.normalize(model(episode.query_x), dim=1)
        attention = torch.softmax(self.scale * (query @ support.T), dim=1)  # [queries, supports]
        probs = attention @ F.one_hot(episode.support_y, episode.n_way).to(attention.dtype)
        return torch.log(probs.clamp_min(1e-12))

    def loss(self, model: nn.Module, episode: Episode) -> Tensor:
        return F.nll_loss(self.scores(model, episode), episode.query_y)
