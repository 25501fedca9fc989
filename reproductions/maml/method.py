"""MAML (Finn et al. 2017): learn an initialisation such that a few gradient steps on a task's support set give
a low query loss. The meta-gradient differentiates through the inner steps (second order unless
``first_order``)."""

from __future__ import annotations

from collections.abc import Collection

import torch
from torch import Tensor, nn

from reproductions.core.functional import (
    LearningRate,
    Params,
    losses_after_steps,
    meta_gradient,
    meta_loss,
    parameters_of,
)
from reproductions.core.tasks import TaskBatch


def mse(prediction: Tensor, target: Tensor) -> Tensor:
    return ((prediction - target) ** 2).mean()


class MAML(nn.Module):
    """Meta-learner around ``model``: ``inner_steps`` SGD steps of size ``inner_lr`` on the support set.

    ``adapt_only`` restricts the inner loop to some parameters (ANIL); ``vectorize`` runs the tasks together
    (batched natively, or with vmap) instead of one at a time. ``tasks_per_call`` (with ``vectorize``) runs that
    many tasks at a time and back-propagates each group before the next: less peak memory, more time (see
    ``mlatlas bench``); None runs the whole meta-batch at once.
    ``recompute`` (second order) keeps only each inner step's parameters for the backward pass and recomputes the
    rest there: less memory on long inner loops, more time.
    """

    def __init__(
        self,
        model: nn.Module,
        inner_lr: float,
        inner_steps: int,
        first_order: bool = False,
        adapt_only: Collection[str] | None = None,
        vectorize: bool = True,
        loss_fn=mse,
        tasks_per_call: int | None = None,
        recompute: bool = False,
    ):
        super().__init__()
        self.model = model
        self.inner_lr, self.inner_steps, self.first_order = inner_lr, inner_steps, first_order
        self.adapt_only = None if adapt_only is None else list(adapt_only)
        self.vectorize, self.loss_fn, self.tasks_per_call = vectorize, loss_fn, tasks_per_call
        self.recompute = recompute

    def init_params(self) -> Params:
        return parameters_of(self.model)

    def step_sizes(self) -> LearningRate:
        """The inner learning rate: a float here, per-parameter tensors in Meta-SGD."""
        return self.inner_lr

    def meta_loss(self, tasks: TaskBatch) -> Tensor:
        return meta_loss(
            self.model,
            self.init_params(),
            tasks,
            self.loss_fn,
            self.inner_steps,
            self.step_sizes(),
            self.first_order,
            self.adapt_only,
            self.vectorize,
            recompute=self.recompute,
        )

    def meta_step(self, tasks: TaskBatch) -> float:
        return meta_gradient(
            self.model, self.init_params(), tasks, self.loss_fn, self.inner_steps, self.step_sizes(),
            self.first_order, self.adapt_only, self.vectorize, chunk=self.tasks_per_call, recompute=self.recompute,
        ).item()

    def eval_losses(self, tasks: TaskBatch, steps: Collection[int]) -> dict[int, Tensor]:
        return losses_after_steps(
            self.model, self.init_params(), tasks, self.loss_fn, steps, self.step_sizes(), self.adapt_only
        )
