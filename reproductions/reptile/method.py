"""Reptile (Nichol et al. 2018): run plain SGD on each task, then move the initialisation towards the adapted
weights. The outer optimiser receives ``init - mean(adapted)`` as its gradient, so SGD with step size
``epsilon`` gives ``init <- init + epsilon * (mean(adapted) - init)``."""

from __future__ import annotations

import torch
from torch import nn
from torch.func import vmap

from reproductions.core import batched
from reproductions.core.functional import adapt, per_task, task_sgd
from reproductions.core.tasks import TaskBatch
from reproductions.maml.method import MAML


class Reptile(MAML):
    """Reptile's inner loop trains on all of a task's points (support and query: it has no train/test split);
    evaluation adapts on the support set only, like every other method."""

    def __init__(self, model: nn.Module, inner_lr: float, inner_steps: int, **kw):
        super().__init__(model, inner_lr, inner_steps, first_order=True, **kw)

    def meta_step(self, tasks: TaskBatch) -> float:
        init = {n: p.detach() for n, p in self.init_params().items()}
        x = torch.cat([tasks.support_x, tasks.query_x], dim=1)
        y = torch.cat([tasks.support_y, tasks.query_y], dim=1)

        def one(xt, yt):
            fast = adapt(self.model, init, (xt, yt), self.loss_fn, self.inner_steps, self.inner_lr, first_order=True)
            loss = self.loss_fn(torch.func.functional_call(self.model, fast, (xt,)), yt)
            return fast, loss

        if self.vectorize and batched.supports(self.model):
            fast = task_sgd(self.model, init, per_task(init, len(x)), (x, y), self.loss_fn, self.inner_steps,
                            self.inner_lr, first_order=True)
            fast = {n: f.detach() for n, f in fast.items()}
            losses = batched.task_losses(self.model, fast, x, y, self.loss_fn)
        elif self.vectorize:
            fast, losses = vmap(one)(x, y)
        else:
            pairs = [one(x[i], y[i]) for i in range(len(tasks))]
            fast = {n: torch.stack([f[n] for f, _ in pairs]) for n in init}
            losses = torch.stack([loss for _, loss in pairs])
        for name, p in self.init_params().items():
            p.grad = init[name] - fast[name].mean(dim=0)
        return losses.mean().item()
