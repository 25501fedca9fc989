"""Meta-SGD (Li et al. 2017): MAML whose inner step size is a learned tensor per parameter (direction and
rate), meta-learned together with the initialisation."""

from __future__ import annotations

import torch
from torch import nn

from reproductions.core.functional import LearningRate
from reproductions.maml.method import MAML


class MetaSGD(MAML):
    def __init__(self, model: nn.Module, inner_steps: int = 1, lr_init: tuple[float, float] = (0.005, 0.1), **kw):
        super().__init__(model, inner_lr=float("nan"), inner_steps=inner_steps, **kw)
        # Parameter names hold dots, which ParameterDict keys may not: store them with '-' instead.
        self.alpha = nn.ParameterDict(
            {
                name.replace(".", "-"): nn.Parameter(torch.empty_like(p).uniform_(*lr_init))
                for name, p in model.named_parameters()
            }
        )

    def step_sizes(self) -> LearningRate:
        return {key.replace("-", "."): value for key, value in self.alpha.items()}
