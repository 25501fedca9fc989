"""Relation Network (Sung et al. 2018): an embedding module maps images to feature maps; a learned relation module
scores the concatenation of a query's map with each class's map in [0, 1], trained by mean squared error against 1
for the query's class and 0 for the others.

A class's map is the mean of its K support maps. The paper sums them, and trains a separate model for each K; we
train one model on 1-shot episodes (where mean and sum agree) and test it at every K. With mean maps too, the
2,500-episode runs score 5-shot below 1-shot (the 400-episode run does not), so summing is not the cause. On an
intermediate checkpoint, averaging the relation scores of the single maps, or normalising the relation module with
test-batch statistics, lifts 5-shot well above 1-shot: averaged maps fall outside the batch-norm running statistics
the relation module fitted on single-drawing maps (see the records' notes)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reproductions.datasets.omniglot_benchmark import Episode, class_means, conv_block


class RelationNet(nn.Module):
    def __init__(self, channels: int = 64, hidden: int = 8):
        super().__init__()
        # Embedding module (paper, Fig. 2): two blocks with pooling, two without; 28x28 -> channels x 5 x 5.
        self.embed = nn.Sequential(
            conv_block(1, channels, padding=0), conv_block(channels, channels, padding=0),
            conv_block(channels, channels, pool=False), conv_block(channels, channels, pool=False),
        )
        # Relation module: two pooled blocks on the concatenated maps, then two fully connected layers.
        self.relate = nn.Sequential(
            conv_block(2 * channels, channels), conv_block(channels, channels), nn.Flatten(),
            nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, 1), nn.Sigmoid(),
        )


class RelationNetwork:
    def build(self, config: dict) -> nn.Module:
        return RelationNet(config["method"]["channels"], config["method"]["hidden"])

    def scores(self, model: nn.Module, episode: Episode) -> Tensor:
        """Relation score of every (query, class) pair: [queries, n_way]."""
        support = model.embed(episode.support_x)
        class_maps = class_means(support, episode.support_y, episode.n_way)  # [n_way, C, H, W]
        query = model.embed(episode.query_x)
        q, n = query.shape[0], episode.n_way
        pairs = torch.cat([class_maps.unsqueeze(0).expand(q, -1, -1, -1, -1),
                           query.unsqueeze(1).expand(-1, n, -1, -1, -1)], dim=2)
        return model.relate(pairs.reshape(q * n, *pairs.shape[2:])).reshape(q, n)

    def loss(self, model: nn.Module, episode: Episode) -> Tensor:
        target = F.one_hot(episode.query_y, episode.n_way).to(torch.float32)
        return F.mse_loss(self.scores(model, episode), target)
