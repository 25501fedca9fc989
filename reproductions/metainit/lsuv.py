"""Layer-sequential unit-variance initialisation (LSUV; Mishkin & Matas, "All you need is a good init", ICLR 2016),
the data-dependent baseline of our MNIST comparison.

1. Every linear and convolution layer gets an orthonormal weight matrix (biases 0).
2. From the first layer to the last, each layer's weights are divided by the standard deviation of that layer's
   output (its pre-activation) on a batch of real training data, until the variance is within ``tol`` of 1 or
   ``max_iter`` rounds have passed. Earlier layers are already fixed, so each layer sees the inputs it will start
   training with.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

LAYERS = (nn.Linear, nn.Conv2d)


def layers(model: nn.Module) -> list[nn.Module]:
    """The layers LSUV scales, in the order the forward pass meets them (module registration order)."""
    return [m for m in model.modules() if isinstance(m, LAYERS)]


@torch.no_grad()
def output_variances(model: nn.Module, x: Tensor) -> list[float]:
    """Variance of every linear/convolution layer's output (pre-activation) on the batch ``x``."""
    seen: list[float] = []
    hooks = [layer.register_forward_hook(lambda _m, _i, out: seen.append(float(out.var()))) for layer in layers(model)]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


@torch.no_grad()
def lsuv_(model: nn.Module, x: Tensor, tol: float = 0.05, max_iter: int = 10,
          generator: torch.Generator | None = None) -> list[float]:
    """LSUV in place on ``model`` with the data batch ``x``; returns each layer's output variance afterwards."""
    targets = layers(model)
    if not targets:
        raise ValueError("LSUV found no linear or convolution layer to initialise")
    for layer in targets:
        nn.init.orthogonal_(layer.weight, generator=generator)
        if layer.bias is not None:
            layer.bias.zero_()
    was_training = model.training
    model.eval()
    try:
        for layer in targets:
            out: dict[str, Tensor] = {}
            hook = layer.register_forward_hook(lambda _m, _i, o: out.__setitem__("y", o))
            try:
                for _ in range(max_iter):
                    model(x)
                    var = float(out["y"].var())
                    if abs(var - 1.0) < tol or var == 0.0:
                        break
                    layer.weight.div_(var ** 0.5)
            finally:
                hook.remove()
    finally:
        model.train(was_training)
    return output_variances(model, x)
