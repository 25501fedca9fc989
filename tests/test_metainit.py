"""MetaInit: the gradient quotient against a direct float64 computation, the Hessian-vector product against
finite differences, MetaInit lowering the quotient of badly scaled models, and device smoke tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from reproductions.core.runtime import available_devices
from reproductions.metainit import method, models

torch.set_num_threads(1)


def small_mlp(dtype=torch.float64, seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 3)).to(dtype)


def flat_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """The loss as a function of one flat parameter vector, and that vector."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(flat: torch.Tensor) -> torch.Tensor:
        params, i = {}, 0
        for name, shape in zip(names, shapes):
            n = shape.numel()
            params[name] = flat[i:i + n].reshape(shape)
            i += n
        return nn.functional.cross_entropy(functional_call(model, params, (x,)), y)

    return loss, theta


def batch(dtype=torch.float64, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return method.random_batch((5,), 3, 16, gen, dtype=dtype)


@pytest.mark.parametrize("eps", [1e-5, 1e-2])
def test_gradient_quotient_matches_direct_float64_computation(eps):
    model = small_mlp()
    x, y = batch()
    loss_fn, theta = flat_loss(model, x, y)
    g = torch.autograd.functional.jacobian(loss_fn, theta)
    hessian = torch.autograd.functional.hessian(loss_fn, theta)
    sign = torch.where(g >= 0, 1.0, -1.0).to(g.dtype)
    direct = ((g - hessian @ g) / (g + eps * sign) - 1).abs().mean()

    ours = method.gradient_quotient(nn.functional.cross_entropy(model(x), y), list(model.parameters()), eps)
    assert ours.dtype == torch.float64
    torch.testing.assert_close(ours, direct, rtol=1e-10, atol=0)
    # and the number-returning helper agrees
    assert method.model_gradient_quotient(model, x, y, eps=eps) == pytest.approx(float(direct), rel=1e-10)


def test_gradient_quotient_is_the_relative_gradient_change_of_a_small_step():
    """GQ's Hg is the first-order change of the gradient: for a step h·g, (g(θ) − g(θ − h·g)) / h → H·g."""
    model = small_mlp()
    x, y = batch()
    loss_fn, theta = flat_loss(model, x, y)
    grad = lambda t: torch.autograd.functional.jacobian(loss_fn, t)  # noqa: E731
    g = grad(theta)
    h = 1e-6
    hg_from_step = (g - grad(theta - h * g)) / h
    params = list(model.parameters())
    hvp = method.hessian_vector_product(nn.functional.cross_entropy(model(x), y), params,
                                        [gi.detach() for gi in torch.autograd.grad(
                                            nn.functional.cross_entropy(model(x), y), params)])
    torch.testing.assert_close(torch.cat([v.reshape(-1) for v in hvp]), hg_from_step, rtol=1e-4, atol=1e-9)


def test_hessian_vector_product_matches_central_finite_differences():
    model = small_mlp(seed=3)
    x, y = batch(seed=4)
    loss_fn, theta = flat_loss(model, x, y)
    v = torch.randn(theta.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    h = 1e-5
    grad = lambda t: torch.autograd.functional.jacobian(loss_fn, t)  # noqa: E731
    fd = (grad(theta + h * v) - grad(theta - h * v)) / (2 * h)

    params = list(model.parameters())
    vs, i = [], 0
    for p in params:
        vs.append(v[i:i + p.numel()].reshape(p.shape))
        i += p.numel()
    hvp = method.hessian_vector_product(nn.functional.cross_entropy(model(x), y), params, vs)
    torch.testing.assert_close(torch.cat([t.reshape(-1) for t in hvp]), fd, rtol=1e-7, atol=1e-10)


def _plain_conv() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))


@pytest.mark.parametrize(
    "build, steps",
    [
        (lambda: models.plain_mlp((1, 6, 6), 5, 6, 32, "relu"), 60),
        (_plain_conv, 120),  # not an MLP: MetaInit takes any nn.Module
    ],
    ids=["relu-mlp", "relu-conv"],
)
def test_metainit_lowers_the_gradient_quotient_of_a_badly_scaled_model(build, steps):
    """Weights twice the standard (He) scale make ReLU signals explode with depth and GQ huge; MetaInit
    brings it down by orders of magnitude by changing only the weight norms."""
    input_shape = (1, 6, 6)
    model = build()
    models.scaled_fan_in_init_(model, "relu", 2.0, torch.Generator().manual_seed(0))
    with torch.no_grad():  # non-zero biases, to check MetaInit leaves them alone
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.bias.uniform_(-0.1, 0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(7)
    x, y = method.random_batch(input_shape, 5, 128, gen)
    gq_before = method.model_gradient_quotient(model, x, y)

    result = method.metainit(model, input_shape, 5, steps=steps, batch_size=32)

    gq_after = method.model_gradient_quotient(model, x, y)
    assert gq_before > 50 and gq_after < gq_before / 50, (gq_before, gq_after)
    assert result.after < 0.5 * result.before
    assert len(result.gq) == steps + 1
    for name, p in model.named_parameters():
        if p.dim() < 2:  # biases are not tuned
            assert torch.equal(p, before[name]), name
        else:  # only the norm changes: the direction is kept
            cos = nn.functional.cosine_similarity(p.detach().reshape(-1), before[name].reshape(-1), dim=0)
            assert float(cos) == pytest.approx(1.0, abs=1e-5)
            assert result.norms[name][-1] == pytest.approx(float(p.detach().norm()), rel=1e-5)
    assert model.training  # nn.Module starts in train mode and MetaInit restores it


def test_metainit_refuses_a_model_without_weight_tensors():
    with pytest.raises(ValueError, match="no parameter with two or more dimensions"):
        method.metainit(nn.Sequential(nn.Flatten()), (3,), 2, steps=1)


@pytest.mark.parametrize("device", ["cpu", "cuda", "mps"])
def test_metainit_smoke_on_every_device(device):
    if device not in available_devices():
        pytest.skip(f"torch sees no {device.upper()} device on this machine; the same smoke test runs on the CPU")
    model = models.plain_mlp((1, 6, 6), 4, 4, 16, "tanh").to(device)
    models.scaled_fan_in_init_(model, "tanh", 0.3)
    result = method.metainit(model, (1, 6, 6), 4, steps=5, batch_size=8)
    assert len(result.gq) == 6 and all(torch.isfinite(torch.tensor(result.gq)))
    assert all(p.device.type == device for p in model.parameters())
