"""Meta-training on torch.distributed: real worker processes on the gloo backend, compared with one process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from conftest import PROJECT_ROOT
from mlatlas.commands import launch
from reproductions.core.training import load_checkpoint

WORKER = textwrap.dedent("""
    import sys
    import numpy as np
    import torch
    from torch import nn
    from reproductions.core import distributed
    from reproductions.core.functional import meta_gradient, parameters_of
    from reproductions.core.tasks import SinusoidFamily

    n_tasks, out = int(sys.argv[1]), sys.argv[2]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1)).double()
    tasks = SinusoidFamily().sample(np.random.default_rng(1), n_tasks, 5, 7).to("cpu", torch.float64)
    distributed.start(torch.device("cpu"), 60)
    loss = meta_gradient(model, parameters_of(model), tasks, nn.functional.mse_loss, 2, 0.01)
    total = distributed.reduce_step(list(model.parameters()), float(loss))
    if distributed.is_main():
        torch.save({"grads": [p.grad for p in model.parameters()], "loss": total}, out)
    distributed.stop()
""")


def single_process_meta_gradient(n_tasks: int):
    import numpy as np
    from torch import nn

    from reproductions.core.functional import meta_gradient, parameters_of
    from reproductions.core.tasks import SinusoidFamily

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1)).double()
    tasks = SinusoidFamily().sample(np.random.default_rng(1), n_tasks, 5, 7).to("cpu", torch.float64)
    loss = meta_gradient(model, parameters_of(model), tasks, nn.functional.mse_loss, 2, 0.01)
    return [p.grad.clone() for p in model.parameters()], float(loss)


def run_gloo_workers(script: Path, args: list[str], nproc: int = 2) -> tuple[int, str]:
    port = launch.free_port()
    envs = [{**launch.group_env(r, nproc, port), "PYTHONPATH": str(PROJECT_ROOT)} for r in range(nproc)]
    return launch.run_workers([[sys.executable, str(script), *args]] * nproc, envs, grace_s=30)


@pytest.mark.parametrize("n_tasks", [5, 1])  # 5: shares of 2 and 3 tasks; 1: one process has no task at all
def test_two_gloo_processes_give_the_single_process_meta_gradient(tmp_path, n_tasks):
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    status, failure = run_gloo_workers(script, [str(n_tasks), str(tmp_path / "out.pt")])
    assert status == 0, failure
    got = torch.load(tmp_path / "out.pt")
    want, want_loss = single_process_meta_gradient(n_tasks)
    assert got["loss"] == pytest.approx(want_loss, rel=1e-12)
    for g, w in zip(got["grads"], want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def mlatlas(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlatlas.cli", *args], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=timeout)


def checkpoint(work: Path, name: str = "checkpoint.pt") -> dict:
    return load_checkpoint(work / "maml" / "sinusoid_5shot" / name)


SHORT = ["--config", "sinusoid_5shot", "--no-progress", "--set", "eval.tasks=50", "--set", "eval.val_tasks=20",
         "--set", "train.eval_every=10", "--set", "train.checkpoint_every=10"]


def test_two_processes_train_like_one_and_resume_with_either(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run = mlatlas("repro", "run", "maml", *SHORT, "--set", "train.iterations=20", "--work-dir", str(one))
    assert run.returncode == 0, run.stderr
    # Two processes for the first half, then one process resumes the same checkpoint for the second half.
    run = mlatlas("repro", "run", "maml", *SHORT, "--set", "train.iterations=10", "--work-dir", str(two),
                  "--nproc", "2")
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    run = mlatlas("repro", "run", "maml", *SHORT, "--set", "train.iterations=20", "--work-dir", str(two))
    assert run.returncode == 0, run.stderr
    a, b = checkpoint(one), checkpoint(two)
    assert a["state"]["iteration"] == b["state"]["iteration"] == 20
    for key, value in a["learner"].items():
        torch.testing.assert_close(b["learner"][key], value, rtol=1e-4, atol=1e-5)
    curve_a, curve_b = a["state"]["curve"], b["state"]["curve"]
    assert [row["iteration"] for row in curve_a] == [row["iteration"] for row in curve_b] == [10.0, 20.0]
    for row_a, row_b in zip(curve_a, curve_b):
        for key in row_a:
            assert row_b[key] == pytest.approx(row_a[key], rel=1e-4), key


def test_seeds_fanned_out_over_processes_merge_into_the_sequential_result(tmp_path):
    config = ["--config", "sinusoid_5shot_seeds", *SHORT[2:], "--set", "train.iterations=10"]  # seeds 0, 1, 2
    sequential = mlatlas("repro", "run", "maml", *config, "--work-dir", str(tmp_path / "seq"))
    fanned = mlatlas("repro", "run", "maml", *config, "--work-dir", str(tmp_path / "fan"), "--nproc", "2",
                     "--split", "seeds")  # seeds 0 and 2 in one process, seed 1 in the other
    assert sequential.returncode == 0, sequential.stderr
    assert fanned.returncode == 0, fanned.stderr
    metrics = [line for line in sequential.stdout.splitlines() if line.startswith("mse_")]
    assert any("_seed2:" in line for line in metrics)
    assert [line for line in fanned.stdout.splitlines() if line.startswith("mse_")] == metrics
    for seed in (0, 1, 2):  # each seed trained alone in its process: the same bits as in the sequential run
        a = load_checkpoint(tmp_path / "seq" / "maml" / "sinusoid_5shot_seeds" / f"checkpoint_seed{seed}.pt")
        b = load_checkpoint(tmp_path / "fan" / "maml" / "sinusoid_5shot_seeds" / f"checkpoint_seed{seed}.pt")
        assert all(torch.equal(a["learner"][k], b["learner"][k]) for k in a["learner"])


def test_a_method_that_cannot_split_its_batch_is_refused_with_one_line():
    run = mlatlas("repro", "run", "reptile", "--config", "smoke", "--no-progress", "--nproc", "2")
    assert run.returncode == 1
    assert "does not split its meta-batch" in run.stderr and "--nproc 1" in run.stderr
    assert "Traceback" not in run.stderr


def test_seeds_option_needs_a_multi_seed_config():
    run = mlatlas("repro", "run", "maml", "--config", "smoke", "--seeds", "0", "--no-progress")
    assert run.returncode == 1
    assert "needs a config with a list of seeds" in run.stderr and "Traceback" not in run.stderr


def children_of(pid: int) -> dict[int, int]:
    """{rank: pid} of the worker processes of ``pid`` (read from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) != pid:
            continue
        for item in environ:
            if item.startswith(b"RANK="):
                found[int(item[5:])] = int(entry.name)
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc to find the worker processes")
def test_a_killed_rank_ends_the_run_within_its_timeout(tmp_path):
    timeout = 20
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlatlas.cli", "repro", "run", "maml", *SHORT, "--set", "train.iterations=100000",
         "--work-dir", str(tmp_path), "--nproc", "2", "--dist-timeout", str(timeout)],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (tmp_path / "maml" / "sinusoid_5shot" / "checkpoint.pt").exists():
            time.sleep(0.5)  # training is under way once the first checkpoint is written
        workers = children_of(proc.pid)
        assert set(workers) == {0, 1}, workers
        os.kill(workers[1], signal.SIGKILL)
        killed_at = time.monotonic()
        out, err = proc.communicate(timeout=timeout + 30)
        elapsed = time.monotonic() - killed_at
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1
    assert elapsed < timeout + 15
    assert "worker 1 of 2 was killed by SIGKILL" in err
    assert "Traceback" not in err


def test_the_failure_line_names_the_cause_before_the_workers_it_took_down():
    assert launch.describe_failure([0, 0]) == (0, "")
    assert launch.describe_failure([1, -9]) == (-9, "worker 1 of 2 was killed by SIGKILL (then worker 0 exited with status 1)")
    # A worker the launcher had to stop is never the cause, although a signal ended it.
    assert launch.describe_failure([-15, 1], stopped={0}) == (
        1, "worker 1 of 2 exited with status 1 (then worker 0 was stopped by the launcher)")


def test_the_meta_batch_methods_take_part_in_nproc():
    """The reproductions whose meta-batches hold many tasks are the ones --nproc is for."""
    from reproductions.core import registry

    for name in ("maml", "fomaml", "anil", "meta_sgd", "omniglot_maml"):
        assert registry.get(name).splits_tasks, name
