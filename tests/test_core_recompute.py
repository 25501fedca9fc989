"""``recompute=True``: inner steps that keep only their parameters for the backward pass. Same meta-gradients
as the stored graph (float64) on every path that supports it, a clear error under vmap, and far fewer bytes held
for the backward pass. Finite differences: test_core_functional.test_meta_gradient_matches_finite_differences."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reproductions.core.functional import meta_gradient, meta_loss, parameters_of
from reproductions.core.sinusoid import mlp
from reproductions.core.tasks import SinusoidFamily, TaskBatch
from reproductions.datasets.omniglot_benchmark import conv4
from reproductions.maml.method import mse

HEAD = ["4.weight", "4.bias"]


def small_mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1)).double()


def sine_tasks(n: int = 4, k: int = 5) -> TaskBatch:
    return SinusoidFamily().sample(np.random.default_rng(3), n, k, k).to("cpu", torch.float64)


def step_sizes(model: nn.Module) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    return {n: (0.02 + 0.05 * torch.rand(p.shape, generator=gen, dtype=p.dtype)).requires_grad_()
            for n, p in model.named_parameters()}


def meta_grads(model, batch, loss_fn, steps, lr, only=None, vectorize=True, recompute=False, first_order=False):
    leaves = [*model.parameters(), *([] if isinstance(lr, float) else lr.values())]
    for leaf in leaves:
        leaf.grad = None
    loss = meta_gradient(model, parameters_of(model), batch, loss_fn, steps, lr, first_order, only, vectorize,
                         chunk=3 if vectorize else None, recompute=recompute)
    return loss, [leaf.grad.clone() for leaf in leaves]


@pytest.mark.parametrize("vectorize", [True, False])
@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("variant", ["maml", "anil", "meta_sgd"])
def test_recomputed_meta_gradient_equals_the_stored_graphs(variant, steps, vectorize):
    model, batch = small_mlp(), sine_tasks()
    lr = step_sizes(model) if variant == "meta_sgd" else 0.05
    only = HEAD if variant == "anil" else None
    stored = meta_grads(model, batch, mse, steps, lr, only, vectorize)
    recomputed = meta_grads(model, batch, mse, steps, lr, only, vectorize, recompute=True)
    torch.testing.assert_close(recomputed[0], stored[0], rtol=1e-12, atol=0)
    for a, b in zip(recomputed[1], stored[1]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)
    if variant == "anil":  # the body is not adapted, yet its second-order terms reach it
        assert stored[1][0].abs().max() > 1e-6


def test_first_order_ignores_recompute():
    model, batch = small_mlp(), sine_tasks()
    a = meta_grads(model, batch, mse, 2, 0.05, first_order=True)
    b = meta_grads(model, batch, mse, 2, 0.05, first_order=True, recompute=True)
    for x, y in zip(a[1], b[1]):
        assert torch.equal(x, y)


def test_conv_net_with_batch_norm_per_task_loop():
    torch.manual_seed(0)
    model = nn.Sequential(conv4(4, batch_stats=True), nn.Linear(4, 3)).double()
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(3)
    batch = TaskBatch(torch.rand(2, 3, 1, 28, 28, generator=gen, dtype=torch.float64), labels.repeat(2, 1),
                      torch.rand(2, 6, 1, 28, 28, generator=gen, dtype=torch.float64),
                      labels.repeat_interleave(2).repeat(2, 1))
    stored = meta_grads(model, batch, F.cross_entropy, 2, 0.1, vectorize=False)
    recomputed = meta_grads(model, batch, F.cross_entropy, 2, 0.1, vectorize=False, recompute=True)
    for a, b in zip(recomputed[1], stored[1]):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_vmap_path_refuses_recompute_with_a_clear_error():
    class Wrapped(nn.Module):  # not a plain Sequential: the core maps it with vmap
        def __init__(self):
            super().__init__()
            self.net = small_mlp()

        def forward(self, x):
            return self.net(x)

    model = Wrapped()
    with pytest.raises(ValueError, match="recompute=True needs tasks in a loop or batched natively"):
        meta_loss(model, parameters_of(model), sine_tasks(), mse, 2, 0.05, vectorize=True, recompute=True)


class Saved:
    """A tensor autograd keeps for a backward pass; weakly listed, so only the ones still held are counted."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor


def held_numel(recompute: bool, steps: int) -> int:
    """Elements autograd holds for the backward pass once the meta-loss is built (graphs made and freed inside
    the inner steps do not count)."""
    model, batch = mlp().double(), sine_tasks(n=3, k=10)  # the sinusoid methods' network
    held: weakref.WeakSet = weakref.WeakSet()

    def pack(t: torch.Tensor) -> Saved:
        saved = Saved(t)
        held.add(saved)
        return saved

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda saved: saved.tensor):
        loss = meta_loss(model, parameters_of(model), batch, mse, steps, 0.05, vectorize=True, recompute=recompute)
    gc.collect()
    total = sum(saved.tensor.numel() for saved in held)
    del loss
    return total


def test_recompute_holds_a_fraction_of_the_graph():
    stored, recomputed = held_numel(False, 10), held_numel(True, 10)
    assert recomputed < stored / 3.5, (recomputed, stored)  # 3.7x on this network (reproductions/README.md)
    # per inner step it holds one copy of the three tasks' parameters, nothing else
    parameters = sum(p.numel() for p in mlp().parameters())
    assert (held_numel(True, 10) - held_numel(True, 5)) / 5 == 3 * parameters
