"""The task-batched path of the core (reproductions.core.batched): which models take it, that its forward pass is
every task's own forward pass, and that meta-gradients and evaluation losses through it equal the vmap path and
the per-task loop (float64; finite differences of the batched path are in test_core_functional)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from reproductions.core import batched
from reproductions.core.functional import losses_after_steps, meta_gradient, meta_loss, parameters_of
from reproductions.core.sinusoid import mlp
from reproductions.core.tasks import SinusoidFamily, TaskBatch
from reproductions.datasets.omniglot_benchmark import conv4
from reproductions.maml.method import mse


class Wrapped(nn.Module):
    """The same network behind a module the batched path does not know, so the core falls back to vmap."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ScaledLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * super().forward(x)


def sine_tasks(n: int = 4, k: int = 5, seed: int = 1) -> TaskBatch:
    return SinusoidFamily().sample(np.random.default_rng(seed), n, k, k).to("cpu", torch.float64)


def small_mlp(seed: int = 0, activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(1, 8), activation(), nn.Linear(8, 8), activation(), nn.Linear(8, 1)).double()


def grads_of(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters()]


def test_supports_only_linear_layers_and_elementwise_activations():
    assert batched.supports(mlp())
    assert batched.supports(nn.Sequential(nn.Linear(3, 4, bias=False), nn.Tanh(), nn.Linear(4, 2), nn.GELU()))
    assert not batched.supports(Wrapped(mlp()))  # not a Sequential
    assert not batched.supports(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)))  # statistics across points
    assert not batched.supports(nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5)))  # random per call
    assert not batched.supports(nn.Sequential(ScaledLinear(3, 4)))  # a subclass may compute something else
    assert not batched.supports(nn.Sequential(conv4(4), nn.Linear(4, 3)))


def test_forward_is_each_tasks_own_forward_pass():
    """Per-task weights for the first layers, the head's weight shared and its bias per task (any mix works)."""
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4, bias=False), nn.ReLU(), nn.Linear(4, 2)).double()
    gen = torch.Generator().manual_seed(0)
    tasks = 3
    params = {n: torch.randn(tasks, *p.shape, generator=gen, dtype=torch.float64) for n, p in model.named_parameters()}
    params["4.weight"] = torch.randn(2, 4, generator=gen, dtype=torch.float64)
    x = torch.randn(tasks, 7, 3, generator=gen, dtype=torch.float64)
    got = batched.forward(model, params, x)
    for t in range(tasks):
        own = {n: (p if n == "4.weight" else p[t]) for n, p in params.items()}
        torch.testing.assert_close(got[t], functional_call(model, own, (x[t],)), rtol=1e-14, atol=1e-14)
    sequences = torch.randn(tasks, 4, 6, 3, generator=gen, dtype=torch.float64)  # more dimensions per task
    got = batched.forward(model, params, sequences)
    assert got.shape == (tasks, 4, 6, 2)
    for t in range(tasks):
        own = {n: (p if n == "4.weight" else p[t]) for n, p in params.items()}
        torch.testing.assert_close(got[t], functional_call(model, own, (sequences[t],)), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("only", [None, ["4.weight", "4.bias"]])
def test_meta_gradient_equals_vmap_and_the_per_task_loop(first_order, only):
    batch = sine_tasks()
    results = {}
    for path in ("batched", "vmap", "loop"):
        model = small_mlp()
        learner_model = Wrapped(model) if path == "vmap" else model
        names = [("net." + n if path == "vmap" else n) for n in only] if only else None
        loss = meta_gradient(learner_model, parameters_of(learner_model), batch, mse, 3, 0.05, first_order, names,
                             vectorize=path != "loop", chunk=3)
        results[path] = (loss, grads_of(model))
    for path in ("vmap", "loop"):
        torch.testing.assert_close(results["batched"][0], results[path][0], rtol=1e-12, atol=0)
        for a, b in zip(results["batched"][1], results[path][1]):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)


def test_learned_step_sizes_and_classification_loss_match_the_loop():
    """Meta-SGD's per-parameter step sizes (shared by the tasks, broadcast over them) and cross-entropy."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ELU(), nn.Linear(6, 3)).double()
    lr = {n: torch.full(p.shape, 0.1, dtype=torch.float64, requires_grad=True) for n, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(2)
    batch = TaskBatch(torch.randn(3, 6, 4, generator=gen, dtype=torch.float64),
                      torch.randint(0, 3, (3, 6), generator=gen),
                      torch.randn(3, 9, 4, generator=gen, dtype=torch.float64),
                      torch.randint(0, 3, (3, 9), generator=gen))
    found = []
    for vectorize in (True, False):
        loss = meta_loss(model, parameters_of(model), batch, F.cross_entropy, 2, lr, vectorize=vectorize)
        found.append(torch.autograd.grad(loss, [*model.parameters(), *lr.values()]))
    for a, b in zip(*found):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)
    assert all(g.abs().max() > 0 for g in found[0][-2:])  # the step sizes do receive a meta-gradient


def test_evaluation_losses_equal_vmap_and_need_no_grad():
    model, batch = small_mlp(activation=nn.Tanh), sine_tasks(n=6, k=7)
    with torch.no_grad():
        ours = losses_after_steps(model, parameters_of(model), batch, mse, [0, 1, 5], 0.05)
        wrapped = Wrapped(model)
        reference = losses_after_steps(wrapped, parameters_of(wrapped), batch, mse, [0, 1, 5], 0.05)
    assert sorted(ours) == [0, 1, 5]
    for steps in ours:
        assert ours[steps].shape == (6,) and not ours[steps].requires_grad
        torch.testing.assert_close(ours[steps], reference[steps], rtol=1e-12, atol=1e-14)
    assert (ours[1] != ours[0]).all() and (ours[5] != ours[1]).all()  # the steps were taken
