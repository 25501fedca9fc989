"""``mlatlas repro run NAME --nproc N``: start N local worker processes and watch them.

Workers get the environment ``torchrun`` gives its workers (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``), so on several machines the same run is started with ``torchrun`` itself (see
reproductions/README.md). We start local workers ourselves rather than through ``torchrun`` so that a failure
reaches the user as one line naming the rank, not as the launcher's traceback. A worker that dies makes the
others fail their next collective (:mod:`reproductions.core.distributed`); whatever still runs after the
collective timeout is stopped.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

from reproductions.core.recording import COMMAND_ENV, without_options  # COMMAND_ENV: the command typed, for records

# The options that only the launching process reads, each with one value.
LAUNCH_OPTIONS = ("--nproc", "--split")


def worker_argv(argv: Sequence[str], extra: Sequence[str] = ()) -> list[str]:
    """``argv`` (without the program name) minus the launch options, plus ``extra``."""
    return [sys.executable, "-m", "mlatlas.cli", *without_options(argv, LAUNCH_OPTIONS), *extra]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def run_workers(commands: list[list[str]], envs: list[dict[str, str]], grace_s: float) -> tuple[int, str]:
    """Run the workers to the end. Returns ``(0, "")``, or the failure's status and a line describing it; after a
    failure the others get ``grace_s`` seconds to end on their own (they fail their next collective), then are
    stopped."""
    procs = [subprocess.Popen(cmd, env=env) for cmd, env in zip(commands, envs)]
    deadline, stopped = None, set()
    try:
        while any(p.poll() is None for p in procs):
            if deadline is None and any(p.returncode not in (None, 0) for p in procs):
                deadline = time.monotonic() + grace_s
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        for rank, p in enumerate(procs):
            if p.poll() is None:
                p.terminate()
                stopped.add(rank)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return describe_failure([p.returncode for p in procs], stopped)


def describe_failure(codes: list[int], stopped: set[int] = frozenset()) -> tuple[int, str]:
    """The cause first: a worker killed by a signal (not one we stopped), else the lowest failed rank that ended
    on its own; the others after it. ``stopped``: the ranks the launcher had to stop."""
    failed = [rank for rank, code in enumerate(codes) if code != 0]
    if not failed:
        return 0, ""
    own = [rank for rank in failed if rank not in stopped] or failed
    cause = next((rank for rank in own if codes[rank] < 0), own[0])
    line = f"worker {cause} of {len(codes)} {describe_exit(codes[cause])}"
    others = [f"worker {rank} " + ("was stopped by the launcher" if rank in stopped else describe_exit(codes[rank]))
              for rank in failed if rank != cause]
    if others:
        line += f" (then {', '.join(others)})"
    return codes[cause], line


def task_workers(argv: Sequence[str], nproc: int, command: str, timeout_s: float) -> tuple[int, str]:
    """N processes in one process group, splitting every meta-batch."""
    port = free_port()
    envs = [{**group_env(rank, nproc, port), COMMAND_ENV: command} for rank in range(nproc)]
    return run_workers([worker_argv(argv)] * nproc, envs, grace_s=timeout_s + 5)


def group_env(rank: int, nproc: int, port: int) -> dict[str, str]:
    """This environment plus what ``torchrun`` tells worker ``rank`` of ``nproc`` on this machine."""
    return dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc),
                MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def seed_workers(argv: Sequence[str], seed_groups: list[list[int]], command: str) -> tuple[int, str]:
    """One independent process per group of seeds: each trains its seeds only (no record)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env[COMMAND_ENV] = command
    commands = [worker_argv(argv, ["--seeds", ",".join(map(str, group))]) for group in seed_groups]
    return run_workers(commands, [env] * len(commands), grace_s=5)
