"""Runge-Kutta MAML (Im, Jiang & Verma 2019, arXiv 1910.07368), as we reconstruct it (see the package README).

Both levels of MAML are read as explicit Runge-Kutta steps of gradient flow:

- **inner** (adaptation): each of the ``inner_steps`` steps is one step of the ``inner`` tableau, with step size
  ``inner_lr``, along the flow of the task's support loss. The one-stage Euler tableau is MAML's SGD step.
- **outer** (meta-update): a two-stage step whose first stage is the initialisation ``θ`` and whose second stage
  is the adapted point ``Y(θ)`` (the inner loop). The meta-objective of a task is the ``b``-weighted query loss at
  the stages, ``J(θ) = b_1 L_Q(θ) + b_2 L_Q(Y(θ))``, so its gradient is ``b_1 k_1 + b_2 k_2`` with
  ``k_1 = ∇L_Q(θ)`` (the shared, unadapted initialisation: "representation") and ``k_2 = ∇_θ L_Q(Y(θ))``
  (through the adaptation: "fast adaptation"). MAML is ``b = (0, 1)``, the weights of the explicit midpoint rule;
  Heun's and Ralston's tableaus put weight on ``k_1`` too.

The outer optimiser (Adam in the sinusoid protocol) then steps along this direction. With plain SGD of step
``h = inner_steps * inner_lr / c_2`` and ``first_order``, support = query, the outer update *is* the tableau's
Runge-Kutta step of the loss's gradient flow (tests check it); MAML's second-order gradient adds the Jacobian of
the stage, ``(I - αH)``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import torch
from torch import Tensor, nn
from torch.func import functional_call

from reproductions.core import batched
from reproductions.core.functional import Params, parameters_of, per_task, support_grads
from reproductions.core.tasks import TaskBatch
from reproductions.runge_kutta_maml import tableaus
from reproductions.runge_kutta_maml.tableaus import Tableau

LossFn = Callable[[Tensor, Tensor], Tensor]


def mse(prediction: Tensor, target: Tensor) -> Tensor:
    return ((prediction - target) ** 2).mean()


def outer_tableau(name: str) -> Tableau:
    """A two-stage tableau for the outer step (``midpoint`` = MAML, ``heun``, ``ralston``)."""
    tableau = tableaus.get(name)
    if tableau.stages != 2:
        raise ValueError(
            f"outer tableau {name!r} has {tableau.stages} stages; the outer step is two-stage "
            "(initialisation and adapted point): use midpoint, heun or ralston"
        )
    return tableau


def weighted(weights: tuple[float, ...], losses: list[Callable[[], Tensor]]) -> Tensor:
    """``Σ w_i losses[i]()`` computing only the terms with non-zero weight; a lone weight of 1 is not multiplied."""
    terms = [(w, f) for w, f in zip(weights, losses) if w != 0]
    if len(terms) == 1 and terms[0][0] == 1:
        return terms[0][1]()
    total = terms[0][0] * terms[0][1]()
    for w, f in terms[1:]:
        total = total + w * f()
    return total


def batched_grad_of(model: nn.Module, shared: Params, x: Tensor, y: Tensor, loss_fn: LossFn, create_graph: bool):
    """``grad_of(fast)`` for per-task parameters ``fast`` (leading task dimension; the rest from ``shared``): one
    ``autograd.grad`` of the summed task losses gives every task's own support gradient."""

    def grad_of(fast: Params) -> Params:
        with torch.enable_grad():  # also under the caller's no_grad (evaluation)
            fast = {n: f if f.requires_grad else f.detach().requires_grad_() for n, f in fast.items()}
            loss = batched.task_losses(model, {**shared, **fast}, x, y, loss_fn).sum()
            grads = torch.autograd.grad(loss, list(fast.values()), create_graph=create_graph)
        return {n: g if create_graph else g.detach() for n, g in zip(fast, grads)}

    return grad_of


def task_grad_of(model: nn.Module, shared: Params, x: Tensor, y: Tensor, loss_fn: LossFn, create_graph: bool):
    """``grad_of(fast)`` for one task (any model, the core's ``support_grads``)."""

    def grad_of(fast: Params) -> Params:
        grads = support_grads(model, {**shared, **fast}, list(fast), x, y, loss_fn, create_graph)
        return grads if create_graph else {n: g.detach() for n, g in grads.items()}

    return grad_of


def integrate(tableau: Tableau, fast: Params, grad_of, lr: float, steps: int) -> Params:
    """``steps`` Runge-Kutta steps of ``tableau`` (step ``lr``) along the support loss's gradient flow."""
    for _ in range(steps):
        fast = tableaus.descent_step(tableau, fast, grad_of, lr)
    return fast


class RungeKuttaMAML(nn.Module):
    """Meta-learner around ``model`` with an ``inner`` tableau for adaptation and a two-stage ``outer`` tableau
    for the meta-gradient (see the module docstring). ``inner="euler", outer="midpoint"`` is MAML.

    ``vectorize`` runs the tasks of a batch together when the model is a stack of linear layers and element-wise
    activations (:mod:`reproductions.core.batched`), else one task at a time (any model, e.g. with batch norm).
    """

    def __init__(
        self,
        model: nn.Module,
        inner_lr: float,
        inner_steps: int,
        inner: str = "euler",
        outer: str = "midpoint",
        first_order: bool = False,
        vectorize: bool = True,
        loss_fn: LossFn = mse,
    ):
        super().__init__()
        if inner_steps < 1:
            raise ValueError(f"inner_steps must be at least 1, not {inner_steps}")
        self.model = model
        self.inner_lr, self.inner_steps, self.first_order = float(inner_lr), int(inner_steps), first_order
        try:
            self.inner = tableaus.get(inner)
        except ValueError as e:
            raise ValueError(f"method.inner: {e}") from None
        try:
            self.outer = outer_tableau(outer)
        except ValueError as e:
            raise ValueError(f"method.outer: {e}") from None
        self.vectorize, self.loss_fn = vectorize, loss_fn

    def _batched(self) -> bool:
        return self.vectorize and batched.supports(self.model)

    def outer_step_size(self) -> float:
        """``h`` of the outer step whose second stage (at ``c_2 h``) is the adapted point: ``steps * lr / c_2``."""
        return self.inner_steps * self.inner_lr / self.outer.c[1]

    def meta_loss(self, tasks: TaskBatch) -> Tensor:
        """Mean over tasks of ``b_1 L_Q(θ) + b_2 L_Q(Y(θ))``; ``backward()`` gives the Runge-Kutta meta-gradient."""
        params = parameters_of(self.model)
        create_graph = not self.first_order
        if self._batched():
            def at_init() -> Tensor:
                return batched.task_losses(self.model, params, tasks.query_x, tasks.query_y, self.loss_fn).mean()

            def adapted() -> Tensor:
                grad_of = batched_grad_of(self.model, params, tasks.support_x, tasks.support_y, self.loss_fn,
                                          create_graph)
                fast = integrate(self.inner, per_task(params, len(tasks)), grad_of, self.inner_lr, self.inner_steps)
                return batched.task_losses(self.model, {**params, **fast}, tasks.query_x, tasks.query_y,
                                           self.loss_fn).mean()

            return weighted(self.outer.b, [at_init, adapted])

        losses = []
        for i in range(len(tasks)):
            sx, sy, qx, qy = tasks.support_x[i], tasks.support_y[i], tasks.query_x[i], tasks.query_y[i]
            losses.append(self.task_objective(params, (sx, sy), (qx, qy)))
        return torch.stack(losses).mean()

    def task_objective(self, params: Params, support: tuple[Tensor, Tensor], query: tuple[Tensor, Tensor]) -> Tensor:
        """One task's ``b_1 L_Q(θ) + b_2 L_Q(Y(θ))`` for any model (no task dimension)."""

        def at_init() -> Tensor:
            return self.loss_fn(functional_call(self.model, params, (query[0],)), query[1])

        def adapted() -> Tensor:
            fast = self.adapt(params, support, self.inner_steps, create_graph=not self.first_order)
            return self.loss_fn(functional_call(self.model, fast, (query[0],)), query[1])

        return weighted(self.outer.b, [at_init, adapted])

    def adapt(self, params: Params, support: tuple[Tensor, Tensor], steps: int, create_graph: bool) -> Params:
        """One task's parameters after ``steps`` inner steps (any model)."""
        grad_of = task_grad_of(self.model, params, support[0], support[1], self.loss_fn, create_graph)
        return integrate(self.inner, dict(params), grad_of, self.inner_lr, steps)

    def meta_step(self, tasks: TaskBatch) -> float:
        loss = self.meta_loss(tasks)
        loss.backward()
        return loss.item()

    def eval_losses(self, tasks: TaskBatch, steps: Collection[int]) -> dict[int, Tensor]:
        """Per-task query loss after each number of inner steps in ``steps`` (0 = none), the inner tableau's steps
        as in training. Evaluation only: no graph is kept."""
        params = {n: p.detach() for n, p in parameters_of(self.model).items()}
        wanted = sorted(set(steps))
        if self._batched():
            grad_of = batched_grad_of(self.model, params, tasks.support_x, tasks.support_y, self.loss_fn, False)
            fast, out, done = per_task(params, len(tasks)), {}, 0
            for target in wanted:
                fast = {n: f.detach() for n, f in integrate(self.inner, fast, grad_of, self.inner_lr,
                                                            target - done).items()}
                done = target
                with torch.no_grad():
                    out[target] = batched.task_losses(self.model, {**params, **fast}, tasks.query_x, tasks.query_y,
                                                      self.loss_fn)
            return out
        out = {s: [] for s in wanted}
        for i in range(len(tasks)):
            fast, done = params, 0
            for target in wanted:
                fast = {n: f.detach() for n, f in self.adapt(fast, (tasks.support_x[i], tasks.support_y[i]),
                                                             target - done, create_graph=False).items()}
                done = target
                with torch.no_grad():
                    out[target].append(self.loss_fn(functional_call(self.model, fast, (tasks.query_x[i],)),
                                                    tasks.query_y[i]))
        return {s: torch.stack(v) for s, v in out.items()}
