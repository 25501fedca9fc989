"""Inner SGD steps that keep only their parameters for the backward pass, and recompute the rest.

A second-order meta-gradient back-propagates through every inner step, so autograd normally keeps each step's
whole graph (activations, the inner gradient and its own graph) until the outer ``backward()``. :func:`sgd_step`
keeps only the step's input parameters instead; the backward pass recomputes that step's gradient graph from them
when it reaches the step and back-propagates through it at once. Memory then grows with the number of inner steps
by one copy of the adapted parameters per step, at the price of computing each inner gradient twice. The result
equals the stored graph's up to float rounding (tests check it against the plain loop and finite
differences).

For one step ``θ' = θ - lr ⊙ g(θ, φ)``, where ``g`` is the gradient of the support loss with respect to the adapted
parameters ``θ`` and ``φ`` are the parameters that stay fixed in the inner loop (ANIL's body), the backward pass
maps the incoming gradient ``v`` of ``θ'`` to ``θ: v - H_θθ (lr ⊙ v)``, ``φ: -H_φθ (lr ⊙ v)`` and, for learned step
sizes, ``lr: -g ⊙ v``, with the Hessian products computed by differentiating ``g`` (recomputed with
``create_graph``) in the direction ``lr ⊙ v``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

Params = dict[str, Tensor]
LossOfParams = Callable[[Params], Tensor]


def sgd_steps(loss_of: LossOfParams, fast: Params, frozen: Params, lr: float | Params, steps: int) -> Params:
    """``steps`` calls of :func:`sgd_step`: the parameters in ``fast`` after that many SGD steps."""
    for _ in range(steps):
        fast = sgd_step(loss_of, fast, frozen, lr)
    return fast


def sgd_step(loss_of: LossOfParams, fast: Params, frozen: Params, lr: float | Params) -> Params:
    """One SGD step of the parameters in ``fast`` on ``loss_of({**frozen, **fast})`` (a scalar), differentiable
    with respect to ``fast``, ``frozen`` and (a dict of tensors) ``lr`` by recomputation; see the module text.

    ``loss_of`` must reach every tensor it depends on through its argument (or be constant in them): the
    recomputation sees only what is passed here.
    """
    names, frozen_names = list(fast), list(frozen)
    rates = [] if isinstance(lr, float | int) else [lr[n] for n in names]
    scalar = float(lr) if not rates else None
    out = _RecomputedStep.apply(loss_of, names, frozen_names, scalar, *fast.values(), *frozen.values(), *rates)
    return dict(zip(names, out))


class _RecomputedStep(torch.autograd.Function):
    # apply()'s inputs: loss_of, names, frozen_names, scalar, then the tensors (fast, frozen, rates)
    TENSORS_FROM = 4

    @staticmethod
    def forward(ctx: Any, loss_of: LossOfParams, names: list[str], frozen_names: list[str], scalar: float | None,
                *tensors: Tensor) -> tuple[Tensor, ...]:
        ctx.loss_of, ctx.names, ctx.frozen_names, ctx.scalar = loss_of, names, frozen_names, scalar
        ctx.save_for_backward(*tensors)
        fast, _, rates = _split(ctx, tensors)
        grads = _support_grads(ctx, tensors, create_graph=False)[0]
        return tuple(p - (scalar if scalar is not None else r) * g
                     for p, r, g in zip(fast, rates or [None] * len(fast), grads))

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *incoming: Tensor | None) -> tuple[Tensor | None, ...]:
        tensors = ctx.saved_tensors
        k, m = len(ctx.names), len(ctx.frozen_names)
        needs = ctx.needs_input_grad[_RecomputedStep.TENSORS_FROM:]
        _, _, rates = _split(ctx, tensors)
        grads, fast_leaves, frozen_leaves = _support_grads(ctx, tensors, create_graph=True)
        incoming = tuple(torch.zeros_like(g) if v is None else v for v, g in zip(incoming, grads))
        direction = [(ctx.scalar if ctx.scalar is not None else r) * v
                     for v, r in zip(incoming, rates or [None] * k)]
        frozen_wanted = [i for i in range(m) if needs[k + i]]
        products = torch.autograd.grad(grads, fast_leaves + [frozen_leaves[i] for i in frozen_wanted], direction,
                                       materialize_grads=True)
        fast_grads = [v - h for v, h in zip(incoming, products[:k])]
        frozen_grads: list[Tensor | None] = [None] * m
        for i, h in zip(frozen_wanted, products[k:]):
            frozen_grads[i] = -h
        # learned step sizes are shared by the tasks: sum over any leading task dimension
        rate_grads = [(-(g * v)).sum_to_size(r.shape) if needs[k + m + j] else None
                      for j, (g, v, r) in enumerate(zip(grads, incoming, rates))]
        return (None,) * _RecomputedStep.TENSORS_FROM + (*fast_grads, *frozen_grads, *rate_grads)


def _split(ctx: Any, tensors: tuple[Tensor, ...]) -> tuple[tuple, tuple, tuple]:
    """The saved tensors as (adapted parameters, fixed parameters, step sizes)."""
    k, m = len(ctx.names), len(ctx.frozen_names)
    return tensors[:k], tensors[k:k + m], tensors[k + m:]


def _support_grads(ctx: Any, tensors: tuple[Tensor, ...], create_graph: bool):
    """The support-loss gradient at the saved parameters, taken on fresh leaves so that its graph (kept only with
    ``create_graph``) belongs to this call and is freed with it."""
    fast, frozen, _ = _split(ctx, tensors)
    with torch.enable_grad():
        fast_leaves = [p.detach().requires_grad_() for p in fast]
        frozen_leaves = [p.detach().requires_grad_(create_graph) for p in frozen]
        loss = ctx.loss_of({**dict(zip(ctx.frozen_names, frozen_leaves)), **dict(zip(ctx.names, fast_leaves))})
        grads = torch.autograd.grad(loss, fast_leaves, create_graph=create_graph, materialize_grads=True)
    return list(grads), fast_leaves, frozen_leaves
