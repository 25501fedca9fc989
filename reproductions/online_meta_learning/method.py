"""FTML and the paper's three baselines as learners that see tasks one after another.

Every learner keeps a *buffer*: the data of every task seen so far (FTML and follow the leader use all of it; from
scratch only the current task's). When new data of the current task arrives, the learner trains for a few
iterations (:meth:`Learner.train`), then is scored on the current task by :meth:`Learner.predict_params`, the
parameters it would use for that task:

- **FTML** (follow the meta leader): MAML meta-gradient steps (Adam) on tasks drawn uniformly from the buffer, each
  with two independently drawn minibatches (inner / outer); scored after the update procedure ``U_t``: a few
  full-batch gradient steps on all the current task's data.
- **FTL + fine-tune** and **TOE** (train on everything) share one network trained by plain minibatch Adam on all
  the data seen so far (tasks drawn uniformly, then points); FTL is scored after the same ``U_t`` as FTML, TOE
  without it.
- **From scratch**: a fresh network for each task, trained by Adam on the current task's data only.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from reproductions.core import functional
from reproductions.core.tasks import TaskBatch

METHODS = ("ftml", "ftl", "toe", "scratch")
KIND = {"ftml": "ftml", "ftl": "joint", "toe": "joint", "scratch": "scratch"}  # how each method trains
ADAPTS = {"ftml": True, "ftl": True, "toe": False, "scratch": False}  # scored after U_t, or as trained
LABELS = {"ftml": "FTML", "ftl": "FTL + fine-tune", "toe": "TOE (train on everything)", "scratch": "from scratch"}


def conv_net(layers: int = 5, width: int = 32, n_classes: int = 10, in_channels: int = 3) -> nn.Sequential:
    """``layers`` blocks of 3x3 convolution (stride 2), batch norm and ReLU, then a linear layer: 28x28 inputs
    shrink to 1x1 after five blocks. Batch norm always normalises with the statistics of the batch it sees (as in
    MAML's code), so there are no running statistics to carry between tasks."""
    blocks: list[nn.Module] = []
    channels, size = in_channels, 28
    for _ in range(layers):
        blocks += [nn.Conv2d(channels, width, 3, stride=2, padding=1),
                   nn.BatchNorm2d(width, track_running_stats=False), nn.ReLU()]
        channels, size = width, (size + 1) // 2
    return nn.Sequential(*blocks, nn.Flatten(), nn.Linear(width * size * size, n_classes))


def smoothed_ce(smoothing: float):
    def loss(logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y, label_smoothing=smoothing)
    return loss


def sample_points(rng: np.random.Generator, available: int, size: int) -> np.ndarray:
    """``size`` indices among ``available`` points: without replacement when there are enough, else with."""
    return rng.choice(available, size=size, replace=available < size)


def ftml_batch(buffer: list[tuple[Tensor, Tensor]], rng: np.random.Generator, meta_batch: int, inner_batch: int,
               outer_batch: int) -> TaskBatch:
    """``meta_batch`` tasks drawn uniformly from the buffer (the paper's nu^t), each with an inner minibatch
    D^tr and an outer minibatch D^val drawn independently from that task's data."""
    picks = rng.integers(len(buffer), size=meta_batch)
    sx, sy, qx, qy = [], [], [], []
    for k in picks:
        x, y = buffer[k]
        a, b = sample_points(rng, len(y), inner_batch), sample_points(rng, len(y), outer_batch)
        sx.append(x[a]), sy.append(y[a]), qx.append(x[b]), qy.append(y[b])
    return TaskBatch(torch.stack(sx), torch.stack(sy), torch.stack(qx), torch.stack(qy))


def ftml_meta_gradient(model: nn.Module, tasks: TaskBatch, loss_fn, steps: int, lr: float,
                       first_order: bool = False) -> Tensor:
    """Leave the FTML meta-gradient (the MAML gradient of the mean outer loss over ``tasks``) in ``model``'s
    ``.grad``; return the outer loss. One task at a time: batch norm has cross-example state, so no vmap."""
    return functional.meta_gradient(model, functional.parameters_of(model), tasks, loss_fn, steps, lr,
                                    first_order=first_order)


def update_procedure(model: nn.Module, params: dict[str, Tensor], x: Tensor, y: Tensor, loss_fn, steps: int,
                     lr: float) -> dict[str, Tensor]:
    """``U_t``: ``steps`` full-batch gradient steps on all of the current task's data (no graph kept)."""
    params = {n: p.detach() for n, p in params.items()}
    return {n: p.detach() for n, p in functional.adapt(model, params, (x, y), loss_fn, steps, lr,
                                                        first_order=True).items()}


@torch.no_grad()
def accuracy(model: nn.Module, params: dict[str, Tensor], x: Tensor, y: Tensor) -> float:
    return float((functional_call(model, params, (x,)).argmax(1) == y).float().mean())


class Learner:
    """One way of training (``ftml``, ``joint`` for FTL and TOE, ``scratch``) across the task sequence."""

    def __init__(self, kind: str, config: dict, device: torch.device, seed: int):
        if kind not in ("ftml", "joint", "scratch"):
            raise ValueError(f"unknown learner kind {kind!r}")
        self.kind, self.config, self.device = kind, config, device
        m = config["model"]
        self.loss_fn = smoothed_ce(config["train"]["label_smoothing"])
        torch.manual_seed(seed)
        self.model = conv_net(m["layers"], m["width"]).to(device)
        self.init_state = copy.deepcopy(self.model.state_dict())  # from scratch restarts here for every task
        self.optimizer = self._optimizer()

    def _optimizer(self) -> torch.optim.Optimizer:
        lr = self.config["ftml"]["meta_lr"] if self.kind == "ftml" else self.config["train"]["lr"]
        return torch.optim.Adam(self.model.parameters(), lr=lr)

    def start_task(self) -> None:
        if self.kind == "scratch":
            self.model.load_state_dict(self.init_state)
            self.optimizer = self._optimizer()

    def iterations(self) -> int:
        return self.config["ftml" if self.kind == "ftml" else "train"]["iterations_per_arrival"]

    def train(self, buffer: list[tuple[Tensor, Tensor]], rng: np.random.Generator) -> float:
        """The training of one data arrival; ``buffer[-1]`` is the current task's data so far. Returns the last
        training loss."""
        cfg, loss = self.config, float("nan")
        self.model.train()
        for _ in range(self.iterations()):
            self.optimizer.zero_grad(set_to_none=True)
            if self.kind == "ftml":
                f = cfg["ftml"]
                tasks = ftml_batch(buffer, rng, f["meta_batch"], f["inner_batch"], f["outer_batch"])
                loss = float(ftml_meta_gradient(self.model, tasks, self.loss_fn, f["inner_steps"], f["inner_lr"],
                                                f["first_order"]))
            else:
                x, y = self._minibatch(buffer, rng, cfg["train"]["batch_size"])
                out = self.loss_fn(self.model(x), y)
                out.backward()
                loss = float(out.detach())
            self.optimizer.step()
        return loss

    def _minibatch(self, buffer, rng, size: int) -> tuple[Tensor, Tensor]:
        if self.kind == "scratch":
            x, y = buffer[-1]
            idx = sample_points(rng, len(y), size)
            return x[idx], y[idx]
        picks = rng.integers(len(buffer), size=size)
        pts = [(k, int(rng.integers(len(buffer[k][1])))) for k in picks]
        return (torch.stack([buffer[k][0][i] for k, i in pts]), torch.stack([buffer[k][1][i] for k, i in pts]))

    def predict_params(self, x: Tensor, y: Tensor, adapt: bool) -> dict[str, Tensor]:
        """The parameters used on the current task, given its data so far: after ``U_t`` when ``adapt``."""
        params = functional.parameters_of(self.model)
        if adapt:
            u = self.config["update"]
            return update_procedure(self.model, params, x, y, self.loss_fn, u["steps"], u["lr"])
        return {n: p.detach() for n, p in params.items()}
