"""The one meta-training loop: progress bar, periodic evaluation, atomic checkpoints and exact resume.

A method supplies ``step(rng) -> loss``: it samples its task batch from ``rng`` and leaves the meta-gradient in
the ``.grad`` of the learner's parameters. The loop owns everything else. Everything that influences later
iterations (learner, optimizer, scheduler, the task generator's state, the running loss) is in the checkpoint,
so a run killed at any point and resumed from its last checkpoint ends bit-for-bit where an uninterrupted run
with the same seed ends. Under ``torchrun`` (:mod:`reproductions.core.distributed`) each process computes its
share of the meta-batch, the loop sums the shares, and rank 0 alone writes the checkpoint.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
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

from reproductions.core import distributed
from reproductions.core.runtime import NonFiniteError, check_finite, device_rng_states, set_device_rng_states

CHECKPOINT_VERSION = 2  # 2: digest header, weights-only content


@dataclass
class LoopState:
    """What the loop has done so far: the iteration reached and one curve row per evaluation."""

    iteration: int = 0
    curve: list[dict[str, float]] = field(default_factory=list)
    loss_sum: float = 0.0  # training loss summed since the last curve row
    loss_count: int = 0
    seconds: float = 0.0  # training wall time accumulated over every (resumed) session
    sessions: list[dict] = field(default_factory=list)  # `session_info` of every session that trained


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted (damaged, truncated, foreign); the message names the file and --fresh."""


_MAGIC = b"MLATLAS-CHECKPOINT sha256="
_DIGEST_LEN = 64


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some systems cannot open a folder; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_orphans(path: Path) -> None:
    """Delete temporary files a killed save of ``path`` left behind (``<name>*.tmp`` next to it)."""
    for orphan in path.parent.glob(f"{glob.escape(path.name)}*.tmp"):
        try:
            if orphan.is_file() and not orphan.is_symlink():
                orphan.unlink()
        except OSError:
            pass


def save_checkpoint(path: Path, payload: dict) -> None:
    """Write atomically: the payload with a SHA-256 digest of its bytes goes to a temp file in the same folder,
    flushed to disk, then renamed over ``path``, so a kill never leaves half a checkpoint. ``payload`` must hold
    only tensors and plain Python values (it is read back with ``torch.load(weights_only=True)``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(path)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    body = buffer.getvalue()
    digest = hashlib.sha256(body).hexdigest().encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(_MAGIC + digest + b"\n" + body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_checkpoint(path: Path, version: int | None = CHECKPOINT_VERSION) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`: the digest must match and only tensors and plain
    values are unpickled (no code runs). Anything else is a :class:`CheckpointError` naming the file."""
    remove_orphans(path)
    advice = "delete it or start afresh (--fresh)"
    try:
        if path.is_symlink() or not path.is_file():
            raise CheckpointError(f"{path}: not a regular file; {advice}")
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc}); {advice}") from exc
    head = len(_MAGIC) + _DIGEST_LEN + 1
    if not data:
        raise CheckpointError(f"{path}: the checkpoint is empty; {advice}")
    if not data.startswith(_MAGIC) or len(data) < head or data[head - 1:head] != b"\n":
        raise CheckpointError(f"{path}: not a checkpoint of this project (or an older format); {advice}")
    digest, body = data[len(_MAGIC):head - 1], data[head:]
    if hashlib.sha256(body).hexdigest().encode() != digest:
        raise CheckpointError(f"{path}: the checkpoint is damaged or truncated (its digest does not match); {advice}")
    try:
        payload = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except Exception as exc:  # a well-formed digest over content that is not a plain checkpoint
        raise CheckpointError(f"{path}: the checkpoint cannot be loaded safely ({_first_line(exc)}); {advice}") from exc
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: the checkpoint holds no mapping; {advice}")
    if version is not None and payload.get("version") != version:
        raise CheckpointError(f"{path}: checkpoint format {payload.get('version')} is not {version}; {advice}")
    return payload


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def rng_state(rng: np.random.Generator) -> str:
    """A NumPy generator's state as plain text (its integers exceed 64 bits), for a checkpoint."""
    return json.dumps(rng.bit_generator.state)


def set_rng_state(rng: np.random.Generator, state: str) -> None:
    rng.bit_generator.state = json.loads(state)


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
        if payload.get("fingerprint") != fingerprint:
            raise ValueError(
                f"{checkpoint} was written by a different configuration; delete it or start afresh (--fresh)"
            )
        try:
            learner.load_state_dict(payload["learner"])
            optimizer.load_state_dict(payload["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(payload["scheduler"])
            set_rng_state(rng, payload["rng"])
            torch.set_rng_state(payload["torch_rng"])
            set_device_rng_states(payload.get("device_rng", {}))
            state = LoopState(**payload["state"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(
                f"{checkpoint}: the checkpoint does not fit this run ({_first_line(exc)}); "
                "delete it or start afresh (--fresh)"
            ) from exc

    def write_checkpoint() -> None:
        if checkpoint is None or not distributed.is_main():  # every process holds the same state; one writes it
            return
        save_checkpoint(
            checkpoint,
            {
                "version": CHECKPOINT_VERSION,
                "fingerprint": fingerprint,
                "learner": learner.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "rng": rng_state(rng),
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

    distributed.check_same(state.iteration, "the iteration to resume from")
    if state.iteration < iterations and session_info is not None:
        state.sessions.append(dict(session_info))
    params = [p for p in learner.parameters() if p.requires_grad]
    session_start, done_this_session = time.perf_counter(), 0
    bar = tqdm(
        total=iterations, initial=state.iteration, desc=description,
        disable=not progress or not distributed.is_main(), dynamic_ncols=True,
    )
    try:
        while state.iteration < iterations:
            if stop_after is not None and done_this_session >= stop_after:
                break
            optimizer.zero_grad(set_to_none=True)
            loss = distributed.reduce_step(params, step(rng))  # under torchrun: the sum of the processes' shares
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
