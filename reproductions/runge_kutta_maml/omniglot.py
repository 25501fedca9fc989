"""Runge-Kutta MAML on Omniglot: this project's MAML network and episodes (``reproductions.omniglot_maml``) with
the inner steps of a Butcher tableau and the two-stage outer weights of :mod:`.method`.

The objective of an episode is ``b_1 CE_Q(θ) + b_2 CE_Q(Y(θ))``: the query cross-entropy at the initialisation and
after the inner steps. ``inner: euler, outer: midpoint`` is MAML's loss exactly (tests check it).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from reproductions.core.functional import parameters_of
from reproductions.datasets.omniglot_benchmark import Episode
from reproductions.omniglot_maml.method import OmniglotMAML
from reproductions.runge_kutta_maml import tableaus
from reproductions.runge_kutta_maml.method import integrate, outer_tableau, task_grad_of, weighted


class OmniglotRungeKutta(OmniglotMAML):
    """An episodic method (``build``, ``loss``, ``scores``) for the shared Omniglot benchmarks."""

    def __init__(self, first_order: bool = False, inner: str = "euler", outer: str = "midpoint"):
        super().__init__(first_order=first_order)
        self.inner, self.outer = tableaus.get(inner), outer_tableau(outer)

    def _query_logits(self, model: nn.Module, episode: Episode, steps: int, first_order: bool) -> Tensor:
        def loss_fn(logits: Tensor, y: Tensor) -> Tensor:
            return F.cross_entropy(logits[:, : episode.n_way], y)

        params = parameters_of(model)
        grad_of = task_grad_of(model, params, episode.support_x, episode.support_y, loss_fn, not first_order)
        fast = integrate(self.inner, dict(params), grad_of, self.inner_lr, steps)
        return functional_call(model, fast, (episode.query_x,))[:, : episode.n_way]

    def loss(self, model: nn.Module, episode: Episode) -> Tensor:
        def at_init() -> Tensor:
            return F.cross_entropy(model(episode.query_x)[:, : episode.n_way], episode.query_y)

        def adapted() -> Tensor:
            logits = self._query_logits(model, episode, self.train_steps, self.first_order)
            return F.cross_entropy(logits, episode.query_y)

        return weighted(self.outer.b, [at_init, adapted])
