"""Plain networks (no normalisation layers, no skip connections) and the initialisations we compare."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
GAINS = {"relu": math.sqrt(2.0), "tanh": 5.0 / 3.0}  # nn.init.calculate_gain for each nonlinearity


def plain_mlp(input_shape: Sequence[int], n_classes: int, depth: int, width: int, activation: str) -> nn.Sequential:
    """``depth`` linear layers (``depth - 1`` hidden layers of ``width`` units), no normalisation, no skips."""
    if depth < 1:
        raise ValueError(f"model.depth must be at least 1, not {depth}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"model.activation must be one of {', '.join(ACTIVATIONS)}, not {activation!r}")
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = math.prod(input_shape)
    for _ in range(depth - 1):
        layers += [nn.Linear(fan_in, width), ACTIVATIONS[activation]()]
        fan_in = width
    layers.append(nn.Linear(fan_in, n_classes))
    return nn.Sequential(*layers)


def scaled_fan_in_init_(model: nn.Module, activation: str, scale: float = 1.0, generator: torch.Generator | None = None) -> None:
    """Weights ~ N(0, (scale · gain)² / fan_in), biases 0. ``scale = 1`` is the standard initialisation (He et
    al. 2015 for ReLU, LeCun with the tanh gain for tanh); any other ``scale`` multiplies every layer's weights,
    which is the badly scaled initialisation of our experiments (``scale < 1`` makes signals and gradients vanish
    geometrically with depth)."""
    gain = GAINS[activation] * scale
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0.0, gain / math.sqrt(fan_in), generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
