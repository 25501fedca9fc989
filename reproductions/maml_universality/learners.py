"""The learners compared, all with the interface of the core sinusoid experiment: ``meta_step(tasks) -> loss``
(meta-gradient left in ``.grad``) and ``eval_losses(tasks, steps) -> {steps: per-task query MSE}``.

- ``maml``: MAML (second order) on a plain MLP or, with ``bias_transform: D``, on the bias-transformed MLP.
- ``snail``: the recurrent (SNAIL/TCML-style) meta-learner, :mod:`snail`.
- ``conditioned``: the task-conditioned reference of the depth experiment, an MLP told the task's amplitude
  and phase; trained by plain regression on the query points, it does not adapt.
"""

from __future__ import annotations

from collections.abc import Collection

import torch
from torch import Tensor, nn

from reproductions.core.tasks import TaskBatch
from reproductions.maml.method import MAML
from reproductions.maml_universality import models
from reproductions.maml_universality.snail import SnailLearner

KINDS = ("maml", "snail", "conditioned")


class ConditionedLearner(nn.Module):
    """Regression from ``[x, A, phase]`` to ``y`` (inputs from :func:`tasks.sample_conditioned`)."""

    conditioned = True

    def __init__(self, width: int, depth: int):
        super().__init__()
        self.model = models.mlp(3, width, depth)

    def losses(self, tasks: TaskBatch) -> Tensor:
        return ((self.model(tasks.query_x) - tasks.query_y) ** 2).mean(dim=(1, 2))

    def meta_step(self, tasks: TaskBatch) -> float:
        loss = self.losses(tasks).mean()
        loss.backward()
        return float(loss.detach())

    @torch.no_grad()
    def eval_losses(self, tasks: TaskBatch, steps: Collection[int]) -> dict[int, Tensor]:
        out = self.losses(tasks)
        return {s: out for s in steps}


def build(method: dict, k_shot: int) -> nn.Module:
    """The learner a config's ``methods.<name>`` section describes."""
    kind = method.get("kind")
    if kind == "maml":
        width, depth, bt = int(method["width"]), int(method["depth"]), int(method.get("bias_transform") or 0)
        model = models.BiasTransformMLP(width, depth, bt) if bt else models.mlp(1, width, depth)
        return MAML(model, float(method["inner_lr"]), int(method["inner_steps"]), first_order=False)
    if kind == "snail":
        return SnailLearner(k_shot, int(method["filters"]), int(method["key"]), int(method["value"]))
    if kind == "conditioned":
        return ConditionedLearner(int(method["width"]), int(method["depth"]))
    raise ValueError(f"method kind {kind!r} is not one of {', '.join(KINDS)}")


def adapts_by_gradient(method: dict) -> bool:
    return method.get("kind") == "maml"
