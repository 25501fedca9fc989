"""Sinusoid tasks inside and outside the meta-training distribution.

Meta-training uses the MAML paper's family (amplitude U[0.1, 5], phase U[0, pi], x U[-5, 5]). A *shift*
moves one task parameter out of that range: ``("amplitude", 8.0)`` gives tasks of amplitude exactly 8 with
phases still drawn from the training range, ``("phase", 4.0)`` the reverse.
"""

from __future__ import annotations

import numpy as np
import torch

from reproductions.core.tasks import SinusoidFamily, TaskBatch

TRAINING = SinusoidFamily()
SHIFTS = ("amplitude", "phase")


def shifted(kind: str, value: float) -> SinusoidFamily:
    """The family whose ``kind`` (amplitude or phase) is fixed at ``value``; the other parameter and x keep the
    training ranges."""
    if kind == "amplitude":
        return SinusoidFamily(amplitude=(value, value))
    if kind == "phase":
        return SinusoidFamily(phase=(value, value))
    raise ValueError(f"unknown shift {kind!r}; choose one of {', '.join(SHIFTS)}")


def sample_conditioned(family: SinusoidFamily, rng: np.random.Generator, n_tasks: int, k_shot: int,
                       n_query: int) -> TaskBatch:
    """The tasks ``family.sample`` draws from the same generator state, with each task's amplitude and phase
    appended to every input: ``x`` becomes ``[x, A, phase]``. Inputs of the task-conditioned model, which is told
    the task instead of learning it."""
    state = rng.bit_generator.state
    amp = rng.uniform(*family.amplitude, size=(n_tasks, 1, 1))
    phase = rng.uniform(*family.phase, size=(n_tasks, 1, 1))
    rng.bit_generator.state = state
    tasks = family.sample(rng, n_tasks, k_shot, n_query)
    params = torch.from_numpy(np.concatenate([amp, phase], axis=-1)).float()  # [tasks, 1, 2]

    def condition(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, params.expand(-1, x.shape[1], -1)], dim=-1)

    return TaskBatch(condition(tasks.support_x), tasks.support_y, condition(tasks.query_x), tasks.query_y)
