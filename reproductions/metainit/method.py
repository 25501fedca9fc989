"""MetaInit (Dauphin & Schoenholz, NeurIPS 2019) for any ``nn.Module``.

The gradient quotient of a loss L at parameters θ, with g = ∇L(θ) and H = ∇²L(θ), is

    GQ(L, θ) = 1/N · Σ_i | (g_i − (Hg)_i) / (g_i + ε·s_i) − 1 |,    s_i = +1 if g_i ≥ 0 else −1,

i.e. how far the gradient after one unit gradient step, g(θ − g) ≈ g − Hg, is from the gradient before it,
relative to that gradient, averaged over all N parameters. ε keeps the quotient finite where g_i ≈ 0 (the sign
s_i keeps ε from cancelling g_i). GQ is 0 when the loss is locally linear.

MetaInit lowers GQ by changing only the norms of the weight tensors that have two or more dimensions (weight
matrices and convolution kernels; biases and other vectors keep their values), with signed gradient descent
with momentum on each norm. The loss is computed on random standard-normal inputs with random labels, so no
data is needed. Defaults follow the paper's Figure 2: ε = 1e-5, learning rate 0.1, momentum 0.9, 500 steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from tqdm import tqdm

LossFn = Callable[[Tensor, Tensor], Tensor]


def hessian_vector_product(loss: Tensor, params: Sequence[Tensor], vectors: Sequence[Tensor],
                           create_graph: bool = False) -> tuple[Tensor, ...]:
    """H·v for the Hessian of ``loss`` in ``params`` (double backward; no Hessian is formed)."""
    grads = torch.autograd.grad(loss, params, create_graph=True)
    dot = sum((g * v).sum() for g, v in zip(grads, vectors))
    return torch.autograd.grad(dot, params, create_graph=create_graph)


def quotient_terms(grads: Sequence[Tensor], hvps: Sequence[Tensor], eps: float) -> Tensor:
    """Σ_i |(g_i − (Hg)_i) / (g_i + ε·s_i) − 1| over every element (not yet divided by N)."""
    total = grads[0].new_zeros(())
    for g, hg in zip(grads, hvps):
        safe = g + eps * (2 * (g >= 0).to(g.dtype) - 1).detach()
        total = total + ((g - hg) / safe - 1).abs().sum()
    return total


def gradient_quotient(loss: Tensor, params: Sequence[Tensor], eps: float = 1e-5,
                      create_graph: bool = False) -> Tensor:
    """GQ(L, θ) for a scalar ``loss`` built from ``params``.

    ``create_graph=True`` keeps the graph so that GQ itself can be differentiated (what MetaInit does).
    Hg is obtained as the gradient of ½‖g‖², which equals H·g because H is symmetric.
    """
    params = list(params)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    half_sq = sum((g * g).sum() for g in grads) / 2
    hvps = torch.autograd.grad(half_sq, params, create_graph=create_graph)
    if not create_graph:
        grads = [g.detach() for g in grads]
    n = sum(p.numel() for p in params)
    return quotient_terms(grads, hvps, eps) / n


def tuned_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The tensors whose norm MetaInit tunes: trainable parameters with at least two dimensions."""
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad and p.dim() >= 2]


def random_batch(input_shape: Sequence[int], n_classes: int, batch_size: int, generator: torch.Generator,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """Standard-normal inputs of shape ``[batch_size, *input_shape]`` and uniformly random class labels."""
    x = torch.randn((batch_size, *input_shape), generator=generator, dtype=dtype).to(device)
    y = torch.randint(0, n_classes, (batch_size,), generator=generator).to(device)
    return x, y


def model_gradient_quotient(model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn | None = None,
                            eps: float = 1e-5) -> float:
    """GQ of ``model`` on one batch, as a number (for reporting before/after MetaInit or training)."""
    loss_fn = loss_fn or nn.functional.cross_entropy
    params = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    model.eval()
    try:
        return float(gradient_quotient(loss_fn(model(x), y), params, eps))
    finally:
        model.train(was_training)


@dataclass
class MetaInitResult:
    gq: list[float] = field(default_factory=list)  # GQ at each step, before that step's norm update
    norms: dict[str, list[float]] = field(default_factory=dict)  # norm of each tuned tensor after each step

    @property
    def before(self) -> float:
        return self.gq[0]

    @property
    def after(self) -> float:
        return self.gq[-1]


def metainit(model: nn.Module, input_shape: Sequence[int], n_classes: int, *, steps: int = 500, lr: float = 0.1,
             momentum: float = 0.9, eps: float = 1e-5, batch_size: int = 64, loss_fn: LossFn | None = None,
             generator: torch.Generator | None = None, min_norm_fraction: float = 1e-3,
             progress: bool = False) -> MetaInitResult:
    """Tune the norms of ``model``'s weight tensors in place to lower the gradient quotient.

    Each step draws a fresh random batch, computes GQ and its gradient with respect to the tuned tensors, and
    moves each tensor's norm by signed gradient descent with momentum: the derivative of GQ along the
    tensor's own direction is ⟨∂GQ/∂W, W/‖W‖⟩, and only its sign is used. The model is in eval mode while
    MetaInit runs and is returned to its previous mode. ``min_norm_fraction`` stops a norm from reaching zero
    or flipping sign (our safeguard; the paper's code has none): a norm never falls below that fraction of its
    value at the start.

    The returned :class:`MetaInitResult` holds GQ at every step; GQ after the last update is measured on one
    more random batch and appended, so ``result.after`` is the quotient of the returned model.
    """
    loss_fn = loss_fn or nn.functional.cross_entropy
    generator = generator or torch.Generator().manual_seed(0)
    tuned = tuned_parameters(model)
    if not tuned:
        raise ValueError("MetaInit found no parameter with two or more dimensions to tune")
    device, dtype = tuned[0][1].device, tuned[0][1].dtype
    all_params = [p for p in model.parameters() if p.requires_grad]
    floor = {name: float(p.detach().norm()) * min_norm_fraction for name, p in tuned}
    velocity = {name: 0.0 for name, _ in tuned}
    result = MetaInitResult(norms={name: [] for name, _ in tuned})
    was_training = model.training
    model.eval()
    try:
        for _ in tqdm(range(steps), desc="MetaInit", unit="step", disable=not progress, leave=False):
            x, y = random_batch(input_shape, n_classes, batch_size, generator, device, dtype)
            gq = gradient_quotient(loss_fn(model(x), y), all_params, eps, create_graph=True)
            grads = torch.autograd.grad(gq, [p for _, p in tuned])
            result.gq.append(float(gq.detach()))
            with torch.no_grad():
                for (name, p), grad in zip(tuned, grads):
                    norm = p.norm()
                    direction = torch.sign((grad * p).sum() / norm)
                    velocity[name] = momentum * velocity[name] - lr * float(direction)
                    new_norm = max(float(norm) + velocity[name], floor[name])
                    p.mul_(new_norm / float(norm))
                    result.norms[name].append(new_norm)
        x, y = random_batch(input_shape, n_classes, batch_size, generator, device, dtype)
        result.gq.append(model_gradient_quotient(model, x, y, loss_fn, eps))
    finally:
        model.train(was_training)
    return result
