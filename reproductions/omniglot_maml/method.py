"""MAML and first-order MAML (Finn, Abbeel & Levine 2017) on Omniglot with the standard 4-block network.

The inner loop is the shared core's functional adaptation (``reproductions.core.functional.adapt``). The output
layer has ``max_way`` units; an N-way task uses the first N, so one network serves 5- and 20-way tasks. Batch
norm normalises with the statistics of the current batch, as in Finn et al.'s code.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from reproductions.core.functional import adapt, parameters_of
from reproductions.datasets.omniglot_benchmark import Episode, conv4


class OmniglotMAML:
    def __init__(self, first_order: bool):
        self.first_order = first_order

    def build(self, config: dict) -> nn.Module:
        m = config["method"]
        self.inner_lr, self.train_steps, self.test_steps = m["inner_lr"], m["train_steps"], m["test_steps"]
        body = conv4(m["channels"], batch_stats=True, strided=m.get("strided", False))
        return nn.Sequential(body, nn.Linear(m["channels"], m["max_way"]))

    def _query_logits(self, model: nn.Module, episode: Episode, steps: int, first_order: bool) -> Tensor:
        def loss_fn(logits: Tensor, y: Tensor) -> Tensor:
            return F.cross_entropy(logits[:, : episode.n_way], y)

        fast = adapt(model, parameters_of(model), (episode.support_x, episode.support_y), loss_fn, steps,
                     self.inner_lr, first_order=first_order)
        return functional_call(model, fast, (episode.query_x,))[:, : episode.n_way]

    def loss(self, model: nn.Module, episode: Episode) -> Tensor:
        logits = self._query_logits(model, episode, self.train_steps, self.first_order)
        return F.cross_entropy(logits, episode.query_y)

    def scores(self, model: nn.Module, episode: Episode) -> Tensor:
        # torch.func.grad computes the inner gradients even under the caller's no_grad.
        return self._query_logits(model, episode, self.test_steps, first_order=True).detach()
