"""Functional adaptation: inner loops of any length, first- or second-order, one task at a time or many at once.

Parameters travel as plain ``{name: tensor}`` dicts, so the same code adapts a whole network (MAML), only its
head (ANIL), or uses a learned learning rate per parameter (Meta-SGD). Second-order meta-gradients come for free:
the inner gradients are computed with ``create_graph`` (``torch.func.grad`` under vmap), so they stay
differentiable for the outer ``backward()``. First-order drops that dependency by detaching the inner gradients.
Many tasks at once run natively batched (:mod:`reproductions.core.batched`) where the model allows, else under
``vmap``; :mod:`reproductions.core.recompute` trades time for the memory of long inner loops.

Image models run their query pass in the ``channels_last`` memory layout on the CPU: the adapted 4-D kernels
come out of :func:`adapt` in it, and :func:`task_loss` lays out the query images so. On a batch of 75 images
oneDNN's convolutions and max-pooling are several times faster in it than in the default layout; the inner steps
on a handful of support images were slower in it (batch norm's double backward mixes layouts), so they keep the
default (issue 8 measured both). The layout changes no value beyond float rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from reproductions.core import batched, distributed, recompute as recomputing
from reproductions.core.tasks import TaskBatch

Params = dict[str, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]
LearningRate = float | Mapping[str, Tensor]


def parameters_of(model: nn.Module) -> Params:
    """The model's parameters as a dict (the same tensors, so gradients reach the module)."""
    return dict(model.named_parameters())


def _in_transform() -> bool:
    """Whether we run inside a ``torch.func`` transform (``vmap``, ``grad``)."""
    return torch._C._functorch.peek_interpreter_stack() is not None


def channels_last(t: Tensor) -> Tensor:
    """A channels_last copy of ``t`` when it is a 4-D CPU tensor outside ``torch.func`` transforms, else ``t``.

    One-channel images and first-layer kernels count as contiguous in either layout, so
    ``contiguous(memory_format=...)`` would leave their strides alone and the first convolution would pick the slow
    layout; copying into freshly laid-out memory sets the strides the convolution looks at. The copy is
    differentiable: gradients reach ``t``.
    """
    if t.dim() != 4 or t.device.type != "cpu" or _in_transform():
        return t
    return torch.empty_like(t, memory_format=torch.channels_last).copy_(t)


def adapt(
    model: nn.Module,
    params: Params,
    support: tuple[Tensor, Tensor],
    loss_fn: LossFn,
    steps: int,
    lr: LearningRate,
    first_order: bool = False,
    only: Collection[str] | None = None,
    *,
    recompute: bool = False,
) -> Params:
    """``steps`` plain gradient steps on the support set, starting from ``params``.

    ``lr`` is a float or, for Meta-SGD, a dict of per-parameter learning-rate tensors. ``only`` names the
    parameters to adapt (ANIL adapts only the head); the others stay as given (4-D ones, like the adapted ones,
    as channels_last copies on the CPU, for the query pass). ``recompute`` (second order) keeps only each step's
    parameters for the backward pass and recomputes its graph there (:mod:`recompute`): less memory, more time.
    """
    x, y = support
    names = [n for n in params if only is None or n in only]
    if recompute and not first_order:
        if _in_transform():
            raise ValueError("recompute=True needs tasks in a loop or batched natively, not mapped with vmap")
        frozen = {n: p for n, p in params.items() if n not in names}

        def support_loss(p: Params) -> Tensor:
            return loss_fn(functional_call(model, p, (x,)), y)

        params = {**params, **recomputing.sgd_steps(support_loss, {n: params[n] for n in names}, frozen, lr, steps)}
        return {n: channels_last(p) for n, p in params.items()}
    for _ in range(steps):
        grads = support_grads(model, params, names, x, y, loss_fn, create_graph=not first_order)
        updated = {n: params[n] - scaled_step(lr, n, grads[n].detach() if first_order else grads[n]) for n in names}
        params = {**params, **updated}
    return {n: channels_last(p) for n, p in params.items()}


def scaled_step(lr: LearningRate, name: str, grad: Tensor) -> Tensor:
    """The SGD step of parameter ``name``: ``lr`` times its gradient (``lr[name]`` for Meta-SGD)."""
    return lr * grad if isinstance(lr, float | int) else lr[name] * grad


def per_task(params: Params, tasks: int, only: Collection[str] | None = None) -> Params:
    """The parameters to adapt (all, or those in ``only``) repeated for ``tasks`` tasks along a new leading
    dimension, as views (no copy): the starting point of :func:`task_sgd`."""
    return {n: p.expand(tasks, *p.shape) for n, p in params.items() if only is None or n in only}


def task_sgd(
    model: nn.Module,
    params: Params,
    fast: Params,
    support: tuple[Tensor, Tensor],
    loss_fn: LossFn,
    steps: int,
    lr: LearningRate,
    first_order: bool,
    *,
    recompute: bool = False,
) -> Params:
    """``steps`` SGD steps of the per-task parameters ``fast`` (leading task dimension; the parameters not in
    ``fast`` come from ``params``, shared). One ``autograd.grad`` of the summed task losses gives every task's own
    gradient, since each task's loss depends on its own parameters only."""
    x, y = support
    if recompute and not first_order:
        frozen = {n: p for n, p in params.items() if n not in fast}

        def support_loss(p: Params) -> Tensor:
            return batched.task_losses(model, p, x, y, loss_fn).sum()

        return recomputing.sgd_steps(support_loss, fast, frozen, lr, steps)
    with torch.enable_grad():  # like support_grads, also under the caller's no_grad (evaluation)
        fast = {n: f if f.requires_grad else f.detach().requires_grad_() for n, f in fast.items()}
        for _ in range(steps):
            loss = batched.task_losses(model, {**params, **fast}, x, y, loss_fn).sum()
            grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order)
            fast = {n: f - scaled_step(lr, n, g.detach() if first_order else g)
                    for (n, f), g in zip(fast.items(), grads)}
    return fast


def support_grads(
    model: nn.Module, params: Params, names: list[str], x: Tensor, y: Tensor, loss_fn: LossFn, create_graph: bool
) -> Params:
    """Gradient of the support loss with respect to the parameters in ``names``.

    Inside a ``torch.func`` transform (``vmap`` over tasks) only ``torch.func.grad`` sees the transformed
    tensors. Outside one, plain ``torch.autograd.grad`` is cheaper: it skips functorch's per-operation wrapping,
    and for first order (``create_graph=False``) it does not build the graph of the gradient at all, which
    ``torch.func.grad`` always does.
    """
    if _in_transform():
        frozen = {n: p for n, p in params.items() if n not in names}

        def support_loss(fast: Params) -> Tensor:
            return loss_fn(functional_call(model, {**frozen, **fast}, (x,)), y)

        return grad(support_loss)({n: params[n] for n in names})
    with torch.enable_grad():  # like torch.func.grad, also under the caller's no_grad (evaluation)
        # A parameter that does not require grad (detached for evaluation) gets a leaf that does.
        fast = {n: params[n] if params[n].requires_grad else params[n].detach().requires_grad_() for n in names}
        loss = loss_fn(functional_call(model, {**params, **fast}, (x,)), y)
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=create_graph)
    return dict(zip(names, grads))


def task_loss(
    model: nn.Module,
    params: Params,
    support: tuple[Tensor, Tensor],
    query: tuple[Tensor, Tensor],
    loss_fn: LossFn,
    steps: int,
    lr: LearningRate,
    first_order: bool = False,
    only: Collection[str] | None = None,
    *,
    recompute: bool = False,
) -> Tensor:
    """Query loss of one task after adapting on its support set."""
    fast = adapt(model, params, support, loss_fn, steps, lr, first_order, only, recompute=recompute)
    return loss_fn(functional_call(model, fast, (channels_last(query[0]),)), query[1])


def meta_loss(
    model: nn.Module,
    params: Params,
    tasks: TaskBatch,
    loss_fn: LossFn,
    steps: int,
    lr: LearningRate,
    first_order: bool = False,
    only: Collection[str] | None = None,
    vectorize: bool = False,
    *,
    recompute: bool = False,
) -> Tensor:
    """Mean query loss over a batch of tasks; ``backward()`` on it gives the (first- or second-order) meta-gradient.

    ``vectorize=True`` runs all tasks together instead of in a Python loop: natively batched (:mod:`batched`) when
    the model is a stack of linear layers and element-wise activations, else mapped with ``torch.func.vmap``. It
    is only correct for models without cross-example state such as BatchNorm statistics; tests check it against
    the loop. ``recompute``: see :func:`adapt` (not with vmap).
    """
    if vectorize and batched.supports(model):
        fast = task_sgd(model, params, per_task(params, len(tasks), only), (tasks.support_x, tasks.support_y),
                        loss_fn, steps, lr, first_order, recompute=recompute)
        return batched.task_losses(model, {**params, **fast}, tasks.query_x, tasks.query_y, loss_fn).mean()

    def one(sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor) -> Tensor:
        return task_loss(model, params, (sx, sy), (qx, qy), loss_fn, steps, lr, first_order, only, recompute=recompute)

    if vectorize:
        losses = vmap(one)(tasks.support_x, tasks.support_y, tasks.query_x, tasks.query_y)
        return losses.mean()
    losses = [
        one(tasks.support_x[i], tasks.support_y[i], tasks.query_x[i], tasks.query_y[i]) for i in range(len(tasks))
    ]
    return torch.stack(losses).mean()


def meta_gradient(
    model: nn.Module,
    params: Params,
    tasks: TaskBatch,
    loss_fn: LossFn,
    steps: int,
    lr: LearningRate,
    first_order: bool = False,
    only: Collection[str] | None = None,
    vectorize: bool = False,
    chunk: int | None = None,
    *,
    recompute: bool = False,
) -> Tensor:
    """Add the meta-gradient of :func:`meta_loss` to the ``.grad`` of the leaves behind ``params`` (and ``lr``);
    return the meta-loss, detached.

    Without ``vectorize`` each task's query loss is back-propagated on its own, so its graph (inner steps and
    query activations) is freed before the next task is adapted: peak memory holds one task's graph instead
    of the whole batch's. The gradient equals ``meta_loss(...).backward()`` up to float rounding. ``params``
    must be leaves (or tensors whose graph may be freed after the first task).

    With ``vectorize``, ``chunk`` tasks at a time are mapped with ``vmap`` and back-propagated together (all of
    them when ``None``): peak memory grows with ``chunk`` and time falls with it, so it trades one for the other.
    ``recompute`` (second order) saves memory in the inner steps at the price of time: see :func:`adapt`.
    Under ``torchrun`` only this process's share of the tasks is computed (:mod:`distributed`); the training loop
    sums the shares.
    """
    n = len(tasks)
    if not vectorize:
        chunk = 1
    elif chunk is None or chunk > n:
        chunk = n
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, not {chunk}")
    mine = distributed.task_share(n)  # all tasks in one process; a block of them under torchrun
    total = 0.0
    for start in range(mine.start, mine.stop, chunk):
        stop = min(start + chunk, mine.stop)
        part = TaskBatch(*(t[start:stop] for t in (tasks.support_x, tasks.support_y, tasks.query_x, tasks.query_y)))
        if vectorize:
            loss = meta_loss(model, params, part, loss_fn, steps, lr, first_order, only, vectorize=True,
                             recompute=recompute)
        else:
            support, query = (part.support_x[0], part.support_y[0]), (part.query_x[0], part.query_y[0])
            loss = task_loss(model, params, support, query, loss_fn, steps, lr, first_order, only, recompute=recompute)
        loss = loss * (len(part) / n)
        loss.backward()
        total = total + loss.detach()
    return torch.as_tensor(total)


def losses_after_steps(
    model: nn.Module,
    params: Params,
    tasks: TaskBatch,
    loss_fn: LossFn,
    steps: Collection[int],
    lr: LearningRate,
    only: Collection[str] | None = None,
) -> dict[int, Tensor]:
    """Per-task query loss after each number of adaptation steps in ``steps`` (0 = no adaptation).

    Evaluation only: parameters are detached and the result carries no graph.
    """
    params = {n: p.detach() for n, p in params.items()}
    if not isinstance(lr, float | int):
        lr = {n: v.detach() for n, v in lr.items()}
    wanted = sorted(set(steps))
    if batched.supports(model):
        fast, out, done = per_task(params, len(tasks), only), [], 0
        for target in wanted:
            fast = task_sgd(model, params, fast, (tasks.support_x, tasks.support_y), loss_fn, target - done, lr, True)
            fast, done = {n: f.detach() for n, f in fast.items()}, target
            out.append(batched.task_losses(model, {**params, **fast}, tasks.query_x, tasks.query_y, loss_fn).detach())
        return {s: out[i] for i, s in enumerate(wanted)}

    def one(sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor) -> Tensor:
        fast, out, done = params, [], 0
        for target in wanted:
            fast = adapt(model, fast, (sx, sy), loss_fn, target - done, lr, first_order=True, only=only)
            done = target
            out.append(loss_fn(functional_call(model, fast, (qx,)), qy))
        return torch.stack(out)

    losses = vmap(one)(tasks.support_x, tasks.support_y, tasks.query_x, tasks.query_y).detach()
    return {s: losses[:, i] for i, s in enumerate(wanted)}
