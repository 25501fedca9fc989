"""Seconds per meta-iteration of second-order MAML on Omniglot with 1 and 2 processes (``--nproc``), and the bytes
each process sends per iteration.

Each run is the reproduction's own command, ``mlatlas repro run omniglot_maml --config standard_5way1shot`` (the
papers' protocol: 5-way 1-shot, 32 tasks per meta-batch, strided 4-block network), cut to ``--iterations`` with no
validation in between. The time is the training loop's own clock (``state.seconds`` in the checkpoint: training
only, not start-up, data decoding or evaluation), divided by the iterations. Communication: every process puts its
gradient share, one flag per parameter and the loss into one float32 buffer and all-reduces it; a ring all-reduce
(gloo's and NCCL's algorithm for large buffers) sends and receives 2 (N - 1) / N times the buffer per process.

    MLATLAS_DATA_DIR=FOLDER python benchmarks/distributed_scaling.py    # writes benchmarks/results/
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def seconds_per_iteration(nproc: int, iterations: int) -> float:
    from reproductions.core.training import load_checkpoint

    with tempfile.TemporaryDirectory() as work:
        command = [sys.executable, "-m", "mlatlas.cli", "repro", "run", "omniglot_maml", "--config",
                   "standard_5way1shot", "--no-progress", "--no-record", "--work-dir", work,
                   "--set", f"train.iterations={iterations}", "--set", f"train.eval_every={iterations}",
                   "--set", f"train.checkpoint_every={iterations}", "--set", "eval.episodes=1",
                   "--nproc", str(nproc)]
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        found = list(Path(work).rglob("*.pt"))
        state = load_checkpoint(found[0])["state"]
        return state["seconds"] / state["iteration"]


def communication(nproc: int) -> dict:
    from reproductions.core import distributed, registry

    repro = registry.get("omniglot_maml")
    _, config = registry.load_config(repro, "standard_5way1shot")
    from reproductions.omniglot_maml.method import OmniglotMAML

    params = [p for p in OmniglotMAML(first_order=False).build(config).parameters()]
    buffer = distributed.communication_bytes(params)
    return {"buffer_bytes": buffer, "ring_bytes_per_process": round(2 * (nproc - 1) / nproc * buffer)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "distributed_scaling.json")
    args = parser.parse_args()
    rows = []
    for nproc in (1, 2):
        s = seconds_per_iteration(nproc, args.iterations)
        rows.append({"processes": nproc, "seconds_per_iteration": round(s, 3), **communication(nproc)})
        print(f"{nproc} process{'es' if nproc > 1 else ''}: {s:.3f} s per meta-iteration", flush=True)
    result = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/distributed_scaling.py --iterations " + str(args.iterations),
        "workload": "second-order MAML, Omniglot 5-way 1-shot, 32 tasks per meta-batch (standard_5way1shot)",
        "machine": f"{os.cpu_count()}-core {platform.machine()} CPU, one torch thread per process",
        "load_average_after": round(os.getloadavg()[0], 2),
        "iterations": args.iterations,
        "rows": rows,
        "speedup": round(rows[0]["seconds_per_iteration"] / rows[1]["seconds_per_iteration"], 2),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"speed-up with 2 processes: {result['speedup']}x; written to {args.out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
