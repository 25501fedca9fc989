"""Meta-gradients of every method, in float64, against a plain per-task reference loop and finite differences."""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F
import pytest
import torch
from torch import nn
from torch.autograd.functional import vhp

from reproductions.core.functional import adapt, channels_last, meta_gradient, meta_loss, parameters_of
from reproductions.core.sinusoid import mlp
from reproductions.core.tasks import SinusoidFamily, TaskBatch
from reproductions.datasets.omniglot_benchmark import conv4
from reproductions.maml.method import MAML, mse
from reproductions.meta_sgd.method import MetaSGD
from reproductions.reptile.method import Reptile

LR = 0.05


@pytest.fixture(autouse=True)
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def small_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return mlp(hidden=8).double()


def tasks(n: int = 3, k: int = 5, seed: int = 1):
    return SinusoidFamily().sample(np.random.default_rng(seed), n, k, k).to("cpu", torch.float64)


def flat_grad(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def reference_meta_grad(model, batch, steps, first_order=False, only=None):
    """Textbook MAML: one task at a time, torch.autograd.grad with create_graph, no torch.func."""
    names = [n for n, _ in model.named_parameters()]
    total = 0.0
    for i in range(len(batch)):
        fast = dict(model.named_parameters())
        sx, sy, qx, qy = batch.support_x[i], batch.support_y[i], batch.query_x[i], batch.query_y[i]
        for _ in range(steps):
            loss = mse(torch.func.functional_call(model, fast, (sx,)), sy)
            adapted = [n for n in names if only is None or n in only]
            grads = torch.autograd.grad(loss, [fast[n] for n in adapted], create_graph=not first_order)
            fast = {**fast, **{n: fast[n] - LR * g for n, g in zip(adapted, grads)}}
        total = total + mse(torch.func.functional_call(model, fast, (qx,)), qy)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(total / len(batch), list(model.parameters()))])


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("vectorize", [False, True])
def test_maml_matches_per_task_loop(steps, first_order, vectorize):
    model, batch = small_model(), tasks()
    learner = MAML(model, LR, steps, first_order=first_order, vectorize=vectorize)
    learner.meta_step(batch)
    expected = reference_meta_grad(model, batch, steps, first_order)
    torch.testing.assert_close(flat_grad(model), expected, rtol=1e-10, atol=1e-12)


def test_anil_matches_per_task_loop():
    model, batch = small_model(), tasks()
    head = ["4.weight", "4.bias"]
    MAML(model, LR, 2, adapt_only=head).meta_step(batch)
    torch.testing.assert_close(flat_grad(model), reference_meta_grad(model, batch, 2, only=head), rtol=1e-10, atol=1e-12)


def test_first_order_differs_by_exactly_the_hessian_term():
    """One step: d/dθ L_q(θ - α∇L_s(θ)) = (I - α H_s(θ)) ∇L_q(θ'), and first order keeps only ∇L_q(θ')."""
    model, batch = small_model(), tasks(n=1)
    MAML(model, LR, 1).meta_step(batch)
    second = flat_grad(model)
    model.zero_grad()
    MAML(model, LR, 1, first_order=True).meta_step(batch)
    first = flat_grad(model)

    params = parameters_of(model)
    names = list(params)
    shapes = [p.shape for p in params.values()]
    sizes = [p.numel() for p in params.values()]

    def unflat(v):
        return dict(zip(names, (t.reshape(s) for t, s in zip(torch.split(v, sizes), shapes))))

    def support_loss(v):
        return mse(torch.func.functional_call(model, unflat(v), (batch.support_x[0],)), batch.support_y[0])

    theta = torch.cat([p.detach().reshape(-1) for p in params.values()])
    fast = adapt(model, {n: p.detach() for n, p in params.items()}, (batch.support_x[0], batch.support_y[0]), mse, 1, LR, True)
    fast = {n: p.detach().requires_grad_() for n, p in fast.items()}
    query = mse(torch.func.functional_call(model, fast, (batch.query_x[0],)), batch.query_y[0])
    grad_q = torch.cat([g.reshape(-1) for g in torch.autograd.grad(query, list(fast.values()))])
    _, hessian_term = vhp(support_loss, theta, grad_q)  # H_s(θ) ∇L_q(θ'); H is symmetric
    torch.testing.assert_close(first, grad_q, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(second - first, -LR * hessian_term, rtol=1e-8, atol=1e-10)
    assert (second - first).abs().max() > 1e-6  # the term is not negligible here, so the test can fail


def finite_difference_check(loss_of_params: callable, params: list[torch.Tensor], analytic: list[torch.Tensor]):
    """Central differences along a few random directions: <grad, d> ≈ (f(p + εd) - f(p - εd)) / 2ε."""
    gen = torch.Generator().manual_seed(0)
    eps = 1e-6
    for _ in range(5):
        dirs = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
        with torch.no_grad():
            plus = loss_of_params([p + eps * d for p, d in zip(params, dirs)])
            minus = loss_of_params([p - eps * d for p, d in zip(params, dirs)])
        numeric = (plus - minus) / (2 * eps)
        exact = sum((g * d).sum() for g, d in zip(analytic, dirs))
        assert abs(float(numeric) - float(exact)) <= 1e-6 * max(1.0, abs(float(exact))), (numeric, exact)


@pytest.mark.parametrize("recompute", [False, True])
@pytest.mark.parametrize("name", ["maml", "anil", "meta_sgd"])
def test_meta_gradient_matches_finite_differences(name, recompute):
    """Also with the inner steps recomputed in the backward pass (reproductions.core.recompute)."""
    model, batch = small_model(), tasks()
    if name == "meta_sgd":
        torch.manual_seed(3)
        learner = MetaSGD(model, inner_steps=2, recompute=recompute)
    else:
        learner = MAML(model, LR, 2, adapt_only=["4.weight", "4.bias"] if name == "anil" else None,
                       recompute=recompute)
    learner.meta_step(batch)
    params = list(learner.parameters())  # includes Meta-SGD's learned step sizes
    names = [n for n, _ in learner.named_parameters()]
    analytic = [p.grad.clone() for p in params]

    def loss_of(values):
        originals = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, v in zip(params, values):
                p.copy_(v)
        with torch.enable_grad():
            value = learner.meta_loss(batch).detach()
        with torch.no_grad():
            for p, v in zip(params, originals):
                p.copy_(v)
        return value

    assert len(names) == len(analytic)
    finite_difference_check(loss_of, [p.detach().clone() for p in params], analytic)


def test_first_order_gradient_is_the_query_gradient_at_the_adapted_weights():
    """FOMAML's meta-gradient, checked by finite differences of the query loss around the adapted weights."""
    model, batch = small_model(), tasks(n=1)
    MAML(model, LR, 2, first_order=True).meta_step(batch)
    params = {n: p.detach() for n, p in parameters_of(model).items()}
    fast = adapt(model, params, (batch.support_x[0], batch.support_y[0]), mse, 2, LR, first_order=True)
    names = list(fast)

    def query_loss(values):
        return mse(torch.func.functional_call(model, dict(zip(names, values)), (batch.query_x[0],)), batch.query_y[0])

    finite_difference_check(query_loss, [fast[n].detach() for n in names], [p.grad for p in model.parameters()])


def test_reptile_one_step_direction_is_the_scaled_training_gradient():
    """With one inner step, Reptile's update direction θ - φ equals α ∇L(θ) on the task's points."""
    model, batch = small_model(), tasks(n=1)
    Reptile(model, LR, 1).meta_step(batch)
    x = torch.cat([batch.support_x[0], batch.query_x[0]])
    y = torch.cat([batch.support_y[0], batch.query_y[0]])
    names = [n for n, _ in model.named_parameters()]

    def train_loss(values):
        return LR * mse(torch.func.functional_call(model, dict(zip(names, values)), (x,)), y)

    finite_difference_check(train_loss, [p.detach() for p in model.parameters()], [p.grad for p in model.parameters()])


def test_vectorized_meta_loss_equals_loop_on_the_full_model():
    torch.manual_seed(0)
    model = mlp().double()
    batch = tasks(n=4, k=10)
    params = parameters_of(model)
    a = meta_loss(model, params, batch, mse, 2, 0.01, vectorize=True)
    b = meta_loss(model, params, batch, mse, 2, 0.01, vectorize=False)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("chunk", [1, 2, 5, 9])
def test_chunked_meta_gradient_equals_per_task_loop(chunk, first_order):
    """Tasks run together in groups, each group back-propagated on its own (a short last group included)."""
    model, batch = small_model(), tasks(n=5)
    loss = meta_gradient(model, parameters_of(model), batch, mse, 3, LR, first_order, vectorize=True, chunk=chunk)
    torch.testing.assert_close(flat_grad(model), reference_meta_grad(model, batch, 3, first_order),
                               rtol=1e-10, atol=1e-12)
    expected = meta_loss(model, parameters_of(model), batch, mse, 3, LR, first_order)
    torch.testing.assert_close(loss, expected.detach(), rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="chunk must be at least 1"):
        meta_gradient(model, parameters_of(model), batch, mse, 3, LR, vectorize=True, chunk=0)


def test_channels_last_lays_out_one_channel_images_so_convolutions_pick_it():
    images = torch.rand(6, 1, 28, 28)
    laid_out = channels_last(images)
    assert torch.equal(laid_out, images)
    assert laid_out.stride() == (784, 1, 28, 1) and images.stride() == (784, 784, 28, 1)
    assert F.conv2d(laid_out, torch.rand(4, 1, 3, 3)).is_contiguous(memory_format=torch.channels_last)
    assert channels_last(torch.rand(3, 5)).stride() == (5, 1)  # not an image: untouched
    kernel = torch.rand(4, 1, 3, 3, requires_grad=True)  # a first-layer kernel: its layout decides too
    assert F.conv2d(images, channels_last(kernel)).is_contiguous(memory_format=torch.channels_last)
    channels_last(kernel).sum().backward()
    assert torch.equal(kernel.grad, torch.ones_like(kernel))  # the copy passes gradients to the parameter


def conv_tasks(n: int = 2, ways: int = 3, queries: int = 2, seed: int = 0) -> TaskBatch:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(ways)
    return TaskBatch(torch.rand(n, ways, 1, 28, 28, generator=gen), labels.repeat(n, 1),
                     torch.rand(n, ways * queries, 1, 28, 28, generator=gen),
                     labels.repeat_interleave(queries).repeat(n, 1))


def test_conv_net_with_batch_norm_second_order_matches_plain_loop_and_finite_differences():
    """The conv path (query pass in channels_last, per-task backward) against textbook MAML in the default
    layout, float64, second order through batch norm with batch statistics; then central differences."""
    torch.manual_seed(0)
    model = nn.Sequential(conv4(4, batch_stats=True), nn.Linear(4, 3)).double()
    batch, steps, lr = conv_tasks(), 2, 0.1
    layouts = []
    hook = model[0][0][0].register_forward_hook(
        lambda m, i, out: layouts.append(out.is_contiguous(memory_format=torch.channels_last)
                                         and not out.is_contiguous()))
    meta_gradient(model, parameters_of(model), batch, F.cross_entropy, steps, lr)
    hook.remove()
    # per task: the support steps in the default layout, then the query pass in channels_last
    assert layouts == [False] * steps + [True] + [False] * steps + [True]
    ours = flat_grad(model)

    def textbook(values: list[torch.Tensor]) -> torch.Tensor:
        names = [n for n, _ in model.named_parameters()]
        total = 0.0
        for i in range(len(batch)):
            fast = dict(zip(names, values))
            for _ in range(steps):
                loss = F.cross_entropy(torch.func.functional_call(model, fast, (batch.support_x[i],)), batch.support_y[i])
                grads = torch.autograd.grad(loss, list(fast.values()), create_graph=True)
                fast = {n: fast[n] - lr * g for n, g in zip(names, grads)}
            total = total + F.cross_entropy(torch.func.functional_call(model, fast, (batch.query_x[i],)), batch.query_y[i])
        return total / len(batch)

    leaves = [p.detach().clone().requires_grad_() for p in model.parameters()]
    expected = torch.autograd.grad(textbook(leaves), leaves)
    torch.testing.assert_close(ours, torch.cat([g.reshape(-1) for g in expected]), rtol=1e-10, atol=1e-12)

    # Central differences along unit directions (batch norm over 3 images makes the loss strongly curved, so the
    # step must be small in every coordinate at once).
    gen, eps = torch.Generator().manual_seed(1), 1e-5
    for _ in range(3):
        dirs = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in leaves]
        norm = torch.sqrt(sum((d * d).sum() for d in dirs))
        dirs = [d / norm for d in dirs]
        plus = textbook([(p + eps * d).detach().requires_grad_() for p, d in zip(leaves, dirs)]).detach()
        minus = textbook([(p - eps * d).detach().requires_grad_() for p, d in zip(leaves, dirs)]).detach()
        exact = sum((g * d).sum() for g, d in zip(expected, dirs))
        assert abs(float((plus - minus) / (2 * eps)) - float(exact)) <= 1e-6 * max(1.0, abs(float(exact)))
