"""Many tasks in one forward pass, without ``vmap``, for stacks of linear layers and element-wise activations.

``torch.func.vmap`` maps a one-task function over the tasks by rewriting every operation through its batching
rules, and nested in ``torch.func.grad`` it does so for every operation of the inner gradients too. On small
networks like the sinusoid MLP that per-operation work, not arithmetic, is most of the time (issue 8 profiled
thousands of operator calls per meta-iteration, mostly transposes, views and reshapes of the rules). A
``nn.Sequential`` of ``nn.Linear`` layers and element-wise activations can take the tasks as a leading dimension
instead: each linear layer becomes one batched matrix product with every task's own weights (``torch.baddbmm``),
and plain autograd differentiates it. Because task ``t``'s loss depends only on task ``t``'s weights, the gradient
of the summed task losses with respect to the stacked weights is every task's own gradient, and, with
``create_graph``, so are the second-order terms: the result equals the per-task loop up to float rounding (tests
check it, and against finite differences).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import vmap

# Parameter-free modules that act on each element alone, so a leading task dimension changes nothing for them.
ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.ELU, nn.SiLU, nn.Softplus, nn.Identity)


def supports(model: nn.Module) -> bool:
    """Whether :func:`forward` can run ``model``: an ``nn.Sequential`` of ``nn.Linear`` layers and the
    element-wise activations above (exact types, so a subclass with other behaviour falls back to ``vmap``)."""
    return isinstance(model, nn.Sequential) and all(
        type(layer) is nn.Linear or type(layer) in ELEMENTWISE for layer in model
    )


def forward(model: nn.Sequential, params: dict[str, Tensor], x: Tensor) -> Tensor:
    """``model`` on inputs ``x`` of shape ``[tasks, points, features]`` (or ``[tasks, ..., features]``), task
    ``t`` with its own weights.

    A parameter in ``params`` is either per task (a leading task dimension: ``[tasks, *shape]``) or shared by all
    tasks (its own shape), as when ANIL adapts only the head.
    """
    for name, layer in model.named_children():
        if type(layer) is nn.Linear:
            x = _linear(x, params[f"{name}.weight"], params.get(f"{name}.bias"))
        else:
            x = layer(x)
    return x


def _linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    per_task = weight.dim() == 3 or (bias is not None and bias.dim() == 2)
    if per_task and x.dim() != 3:  # inputs [tasks, ..., features]: fold the middle dimensions into one
        out = _linear(x.reshape(x.shape[0], -1, x.shape[-1]), weight, bias)
        return out.reshape(*x.shape[:-1], out.shape[-1])
    if weight.dim() == 2:  # shared by all tasks
        out = torch.nn.functional.linear(x, weight, bias if bias is None or bias.dim() == 1 else None)
        return out if bias is None or bias.dim() == 1 else out + bias.unsqueeze(1)
    if bias is None:
        return torch.bmm(x, weight.transpose(1, 2))
    return torch.baddbmm(bias.unsqueeze(1) if bias.dim() == 2 else bias, x, weight.transpose(1, 2))


def task_losses(
    model: nn.Sequential, params: dict[str, Tensor], x: Tensor, y: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor]
) -> Tensor:
    """Each task's loss, shape ``[tasks]``. The loss function is written for one task, so it is mapped with
    ``vmap``: a handful of operations, unlike the network and its gradients."""
    return vmap(loss_fn)(forward(model, params, x), y)
