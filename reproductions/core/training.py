"""The one meta-training loop: progress bar, periodic evaluation, atomic checkpoints and exact resume.

A method supplies ``step(rng) -> loss``: it samples its task batch from ``rng`` and leaves the meta-gradient in
the ``.grad`` of the learner's parameters. The loop owns everything else. Everything that influences later
iterations (learner, optimizer, scheduler, the task generator's state, the running loss) is in the checkpoint,
so a run killed at any point and resumed from its last checkpoint ends bit-for-bit where an uninterrupted run
with the same seed ends.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from reproductions.core.runtime import NonFiniteError, check_finite, device_rng_states, set_device_rng_states

CHECKPOINT_VERSION = 1


@dataclass
class LoopState:
    """What the loop has done so far: the iteration reached and one curve row per evaluation."""

    iteration: int = 0
    curve: list[dict[str, float]] = field(default_factory=list)
    loss_sum: float = 0.0  # training loss summed since the last curve row
    loss_count: int = 0
    seconds: float = 0.0  # training wall time accumulated over every (resumed) session
    sessions: list[dict] = field(default_factory=list)  # `session_info` of every session that trained


def save_checkpoint(path: Path, payload: dict) -> None:
    """Write atomically: a temp file in the same folder, then rename, so a kill never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_checkpoint(path: Path) -> dict:
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if payload.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint format {payload.get('version')} is not {CHECKPOINT_VERSION}")
    return payload


def meta_train(
    learner: nn.Module,
    optimizer: torch.optim.Optimizer,
    step: Callable[[np.random.Generator], float],
    rng: np.random.Generator,
    iterations: int,
    evaluate: Callable[[], dict[str, float]] | None = None,
    eval_every: int = 1000,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    checkpoint: Path | None = None,
    checkpoint_every: int = 1000,
    fingerprint: str = "",
    progress: bool = True,
    description: str = "meta-training",
    stop_after: int | None = None,
    session_info: dict | None = None,
) -> LoopState:
    """Train ``learner`` for ``iterations`` meta-iterations, resuming from ``checkpoint`` when it exists.

    ``fingerprint`` identifies the configuration; resuming a checkpoint written under another one is an error.
    ``stop_after`` ends the session early after that many iterations of *this* session (used by tests to
    simulate a kill); the checkpoint is written at that point only if it falls on ``checkpoint_every``.
    ``session_info`` (e.g. the code commit) is kept in the state for every session that trains.
    """
    state = LoopState()
    if checkpoint is not None and checkpoint.exists():
        payload = load_checkpoint(checkpoint)
        if payload["fingerprint"] != fingerprint:
            raise ValueError(
                f"{checkpoint} was written by a different configuration; delete it or start afresh (--fresh)"
            )
        learner.load_state_dict(payload["learner"])
        optimizer.load_state_dict(payload["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(payload["scheduler"])
        rng.bit_generator.state = payload["rng"]
        torch.set_rng_state(payload["torch_rng"])
        set_device_rng_states(payload.get("device_rng", {}))
        state = LoopState(**payload["state"])

    def write_checkpoint() -> None:
        if checkpoint is None:
            return
        save_checkpoint(
            checkpoint,
            {
                "version": CHECKPOINT_VERSION,
                "fingerprint": fingerprint,
                "learner": learner.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "device_rng": device_rng_states(),  # CUDA/MPS generators (dropout, augmentation on the device)
                "state": vars(state).copy(),
            },
        )

    def record_row() -> dict[str, float]:
        row = {"iteration": float(state.iteration)}
        row["train_loss"] = state.loss_sum / state.loss_count if state.loss_count else float("nan")
        if evaluate is not None:
            row.update(evaluate())
        state.curve.append(row)
        state.loss_sum, state.loss_count = 0.0, 0
        return row

    if state.iteration < iterations and session_info is not None:
        state.sessions.append(dict(session_info))
    params = [p for p in learner.parameters() if p.requires_grad]
    session_start, done_this_session = time.perf_counter(), 0
    bar = tqdm(
        total=iterations, initial=state.iteration, desc=description, disable=not progress, dynamic_ncols=True
    )
    try:
        while state.iteration < iterations:
            if stop_after is not None and done_this_session >= stop_after:
                break
            optimizer.zero_grad(set_to_none=True)
            loss = step(rng)
            check_finite(loss, "training loss", state.iteration)
            for p in params:
                if p.grad is not None and not torch.isfinite(p.grad).all():
                    raise NonFiniteError(f"a meta-gradient became NaN/inf at meta-iteration {state.iteration}")
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            state.iteration += 1
            done_this_session += 1
            state.loss_sum += loss
            state.loss_count += 1
            bar.update(1)
            if state.iteration % eval_every == 0 or state.iteration == iterations:
                row = record_row()
                bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k != "iteration"})
            elif state.iteration % 50 == 0:
                bar.set_postfix(loss=f"{loss:.4g}")
            if state.iteration % checkpoint_every == 0 or state.iteration == iterations:
                state.seconds += time.perf_counter() - session_start
                session_start = time.perf_counter()
                write_checkpoint()
    finally:
        bar.close()
    return state
