"""The benchmark's configurations and the meta-gradient of each implementation on them.

Every implementation receives the same model (same initial weights) and the same task batch and leaves the
mean-over-tasks meta-gradient in the ``.grad`` of the model's parameters. Nothing else (no outer optimiser
step, no data loading) is part of a meta-iteration, so the timings compare the meta-learning machinery only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reproductions.core.functional import meta_gradient, parameters_of
from reproductions.core.sinusoid import mlp
from reproductions.core.tasks import SinusoidFamily, TaskBatch
from reproductions.datasets.omniglot_benchmark import conv4


@dataclass(frozen=True)
class Config:
    key: str
    family: str  # "sinusoid" (MLP 1-40-40-1, MSE) or "conv" (4-block conv net with batch norm, cross-entropy)
    inner_steps: int
    first_order: bool
    meta_batch: int
    inner_lr: float
    shots: int = 10  # sinusoid: K support and K query points; conv: N-way 1-shot
    ways: int = 5
    queries: int = 15  # conv: query images per class
    channels: int = 64
    chunk: int | None = None  # tasks per call of "ours-lean" (None: that variant does not apply)
    recompute: bool = False  # "ours-lean" recomputes the inner steps in the backward pass
    extra: str = ""  # why a configuration beyond issue 8's list is here

    @property
    def order(self) -> str:
        return "first order" if self.first_order else "second order"

    @property
    def description(self) -> str:
        steps = f"{self.inner_steps} inner step{'s' if self.inner_steps != 1 else ''}"
        if self.family == "sinusoid":
            what = f"sinusoid MLP 2x40, K={self.shots}"
        else:
            what = (f"conv net 4x{self.channels} + batch norm, 28x28, {self.ways}-way 1-shot, "
                    f"{self.queries} queries/class")
        extra = f" ({self.extra})" if self.extra else ""
        return f"{what}, meta-batch {self.meta_batch}, {steps}, {self.order}{extra}"

    @property
    def vectorize(self) -> bool:
        """Our core runs the MLP's tasks together (batched natively, :mod:`reproductions.core.batched`). Not
        the conv net's: vmapped second-order meta-gradients through affine batch norm are not exact (about 1%
        off float64 finite differences, where a per-task loop agrees; issue 8), so there it loops over the
        tasks."""
        return self.family == "sinusoid"


# "ours-lean" on the sinusoid: 3 tasks per call. More tasks per call run faster and hold more; with 3, peak memory
# stayed below higher's on the four sinusoid configurations of issue 8 in our measurements while the time stayed
# under half of higher's. Recomputing the inner steps cost more time than it saved memory at 5 steps (about 1.7x
# the time for 0.76x the memory with 3 tasks per call); it pays on long inner loops, hence the 20-step
# configuration, where "ours-lean" recomputes with 5 tasks per call.
SINUSOID_CHUNK = 3


def _sinusoid(key: str, steps: int, first_order: bool, meta_batch: int = 25, chunk: int = SINUSOID_CHUNK,
              recompute: bool = False, extra: str = "") -> Config:
    return Config(key, "sinusoid", steps, first_order, meta_batch, inner_lr=0.01, chunk=chunk, recompute=recompute,
                  extra=extra)


def _conv(key: str, steps: int, meta_batch: int = 8, channels: int = 64, queries: int = 15) -> Config:
    return Config(key, "conv", steps, False, meta_batch, inner_lr=0.4, shots=1, channels=channels, queries=queries)


CONFIGS = [
    _sinusoid("sinusoid-1step-2nd", 1, False),
    _sinusoid("sinusoid-5step-2nd", 5, False),
    _sinusoid("sinusoid-1step-1st", 1, True),
    _sinusoid("sinusoid-5step-1st", 5, True),
    _sinusoid("sinusoid-20step-2nd", 20, False, chunk=5, recompute=True,
              extra="a long inner loop, added to measure recomputation"),
    _conv("conv-1step-2nd", 1),
    _conv("conv-5step-2nd", 5),
]

# --quick: the same kinds of work, small enough for a smoke test.
QUICK_CONFIGS = [
    _sinusoid("sinusoid-2step-1st-quick", 2, True, meta_batch=4, chunk=3),
    _conv("conv-2step-2nd-quick", 2, meta_batch=2, channels=8, queries=2),
]


def config_named(key: str) -> Config:
    for config in CONFIGS + QUICK_CONFIGS:
        if config.key == key:
            return config
    raise KeyError(f"no benchmark configuration {key!r}")


@dataclass
class Workload:
    model: nn.Module
    tasks: TaskBatch
    loss_fn: Callable[[Tensor, Tensor], Tensor]


def mse(prediction: Tensor, target: Tensor) -> Tensor:
    return ((prediction - target) ** 2).mean()


def build(config: Config, dtype: torch.dtype = torch.float32, seed: int = 0) -> Workload:
    """The model (fixed initial weights) and one task batch. Conv images are uniform noise: the cost of a
    meta-iteration does not depend on pixel values, and the benchmark must not need a dataset."""
    torch.manual_seed(seed)
    if config.family == "sinusoid":
        model = mlp()
        tasks = SinusoidFamily().sample(np.random.default_rng(seed), config.meta_batch, config.shots, config.shots)
        loss_fn = mse
    else:
        model = nn.Sequential(conv4(config.channels, batch_stats=True), nn.Linear(config.channels, config.ways))
        gen = torch.Generator().manual_seed(seed)
        n_support, n_query = config.ways * config.shots, config.ways * config.queries
        tasks = TaskBatch(
            torch.rand(config.meta_batch, n_support, 1, 28, 28, generator=gen),
            torch.arange(config.ways).repeat_interleave(config.shots).repeat(config.meta_batch, 1),
            torch.rand(config.meta_batch, n_query, 1, 28, 28, generator=gen),
            torch.arange(config.ways).repeat_interleave(config.queries).repeat(config.meta_batch, 1),
        )
        loss_fn = F.cross_entropy
    return Workload(model.to(dtype), tasks.to("cpu", dtype), loss_fn)


# --------------------------------------------------------------------------------------------------
# Implementations: each leaves the meta-gradient (mean over tasks) in the model's .grad
# --------------------------------------------------------------------------------------------------


def ours(config: Config, work: Workload) -> None:
    """What the reproductions run: the sinusoid methods batch the whole meta-batch in one call
    (``MAML.meta_step``), the conv net adapts one task at a time (``adapt`` as in ``omniglot_maml``), query pass
    in channels_last."""
    meta_gradient(work.model, parameters_of(work.model), work.tasks, work.loss_fn, config.inner_steps,
                  config.inner_lr, config.first_order, vectorize=config.vectorize)


def ours_lean(config: Config, work: Workload) -> None:
    """The memory-lean options of the core: ``config.chunk`` tasks per call, each group back-propagated before
    the next is adapted (``meta_gradient(..., chunk=...)``), and where ``config.recompute`` says so, inner steps
    recomputed in the backward pass instead of kept (``recompute=True``)."""
    meta_gradient(work.model, parameters_of(work.model), work.tasks, work.loss_fn, config.inner_steps,
                  config.inner_lr, config.first_order, vectorize=True, chunk=config.chunk,
                  recompute=config.recompute)


def with_higher(config: Config, work: Workload) -> None:
    """The idiom of higher's own MAML example: one ``innerloop_ctx`` per task, a differentiable SGD inner
    optimiser, and the query loss back-propagated task by task. First order turns off
    ``track_higher_grads`` (the fast weights are then detached), so the query gradient with respect to the
    adapted weights is added to the initial weights' ``.grad`` by hand: that is first-order MAML."""
    import higher

    model, tasks, n = work.model, work.tasks, len(work.tasks)
    inner_opt = torch.optim.SGD(model.parameters(), lr=config.inner_lr)
    for i in range(n):
        with higher.innerloop_ctx(model, inner_opt, copy_initial_weights=False,
                                  track_higher_grads=not config.first_order) as (fmodel, diffopt):
            for _ in range(config.inner_steps):
                diffopt.step(work.loss_fn(fmodel(tasks.support_x[i]), tasks.support_y[i]))
            query_loss = work.loss_fn(fmodel(tasks.query_x[i]), tasks.query_y[i]) / n
            if config.first_order:
                grads = torch.autograd.grad(query_loss, list(fmodel.parameters()))
                for p, g in zip(model.parameters(), grads):
                    p.grad = g if p.grad is None else p.grad + g
            else:
                query_loss.backward()


def learn2learn_unavailable() -> str | None:
    """``None`` when learn2learn imports, else the reason it does not."""
    try:
        import learn2learn  # noqa: F401
    except Exception as exc:  # ImportError, or a broken build raising anything at import
        return f"{type(exc).__name__}: {exc}"
    return None


def with_learn2learn(config: Config, work: Workload) -> None:
    """learn2learn's MAML wrapper: ``clone()`` per task, ``adapt()`` per inner step, backward per task."""
    import learn2learn

    maml = learn2learn.algorithms.MAML(work.model, lr=config.inner_lr, first_order=config.first_order)
    tasks, n = work.tasks, len(work.tasks)
    for i in range(n):
        learner = maml.clone()
        for _ in range(config.inner_steps):
            learner.adapt(work.loss_fn(learner(tasks.support_x[i]), tasks.support_y[i]))
        (work.loss_fn(learner(tasks.query_x[i]), tasks.query_y[i]) / n).backward()


IMPLEMENTATIONS: dict[str, Callable[[Config, Workload], None]] = {
    "ours": ours,
    "ours-lean": ours_lean,
    "higher": with_higher,
    "learn2learn": with_learn2learn,
}


def unavailable(impl: str, config: Config | None = None) -> str | None:
    """Why ``impl`` cannot run here (on ``config``), or ``None``."""
    if impl == "ours-lean" and config is not None and (config.chunk is None or not config.vectorize):
        return ("not applicable: ours already adapts one task at a time here (batch norm rules out running tasks "
                "together)")
    if impl == "higher":
        try:
            import higher  # noqa: F401
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
    if impl == "learn2learn":
        return learn2learn_unavailable()
    return None


def meta_grad(impl: str, config: Config, work: Workload) -> Tensor:
    """One meta-iteration of ``impl``; the flattened meta-gradient."""
    work.model.zero_grad(set_to_none=True)
    IMPLEMENTATIONS[impl](config, work)
    return torch.cat([p.grad.reshape(-1) for p in work.model.parameters()])
