"""An accelerator computes what the CPU computes: the same meta-gradient on the same batch, and the same evaluation
after the same short training run, within stated float tolerances. Skipped where the machine has no accelerator.

The measured differences are also written to ``$MLATLAS_DEVICE_REPORT/agreement.jsonl`` when that variable is set
(``tests/device_check.py`` sets it and puts them in its report)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from reproductions.core.functional import meta_loss, parameters_of
from reproductions.core.runtime import available_devices, seed_everything
from reproductions.core.tasks import SinusoidFamily, TaskBatch
from reproductions.datasets.omniglot_benchmark import conv4

ACCELERATORS = [d for d in ("cuda", "mps") if d in available_devices()]
pytestmark = pytest.mark.skipif(not ACCELERATORS, reason="no CUDA or MPS device on this machine")

# float32 on different kernels: sums in another order. Relative to the gradient's largest entry.
GRADIENT_TOLERANCE = 1e-4
METRIC_TOLERANCE = 1e-3  # relative, after 20 Adam steps (differences grow a little with each step)


def _report(name: str, device: str, measured: float, tolerance: float) -> None:
    folder = os.environ.get("MLATLAS_DEVICE_REPORT")
    if folder:
        with (Path(folder) / "agreement.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"check": name, "device": device, "measured": measured, "tolerance": tolerance}) + "\n")


def _relative_difference(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    scale = max(float(x.abs().max()) for x in a) or 1.0
    return max(float((x - y.cpu()).abs().max()) for x, y in zip(a, b)) / scale


def _on(tasks: TaskBatch, device: str) -> TaskBatch:
    return TaskBatch(*(t.to(device) for t in (tasks.support_x, tasks.support_y, tasks.query_x, tasks.query_y)))


def _sinusoid_meta_gradient(device: str, tasks: TaskBatch) -> list[torch.Tensor]:
    seed_everything(0)
    model = torch.nn.Sequential(torch.nn.Linear(1, 40), torch.nn.ReLU(), torch.nn.Linear(40, 40), torch.nn.ReLU(),
                                torch.nn.Linear(40, 1)).to(device)
    loss = meta_loss(model, parameters_of(model), _on(tasks, device), F.mse_loss, steps=2, lr=0.01)
    return list(torch.autograd.grad(loss, list(model.parameters())))


def _conv_meta_gradient(device: str) -> list[torch.Tensor]:
    seed_everything(0)
    model = torch.nn.Sequential(conv4(16, batch_stats=True, strided=True), torch.nn.Linear(16, 5)).to(device)
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(3, 10, 1, 28, 28, generator=g), torch.arange(5).repeat(3, 2)
    tasks = TaskBatch(x[:, :5], y[:, :5], x[:, 5:], y[:, 5:])
    loss = meta_loss(model, parameters_of(model), _on(tasks, device), F.cross_entropy, steps=1, lr=0.4)
    return list(torch.autograd.grad(loss, list(model.parameters())))


@pytest.mark.parametrize("device", ACCELERATORS)
def test_second_order_meta_gradients_agree_with_the_cpu(device):
    tasks = SinusoidFamily().sample(seed_everything(3), 4, 5, 10)
    for name, cpu, other in [
        ("sinusoid MAML meta-gradient, 2 inner steps", _sinusoid_meta_gradient("cpu", tasks),
         _sinusoid_meta_gradient(device, tasks)),
        ("conv MAML meta-gradient (batch norm, strided), 1 inner step", _conv_meta_gradient("cpu"),
         _conv_meta_gradient(device)),
    ]:
        diff = _relative_difference(cpu, other)
        _report(name, device, diff, GRADIENT_TOLERANCE)
        assert diff <= GRADIENT_TOLERANCE, f"{name}: {diff:.2e} relative difference on {device}"


@pytest.mark.parametrize("device", ACCELERATORS)
def test_a_short_training_run_evaluates_the_same(device, tmp_path, capsys):
    from mlatlas.cli import main

    metrics = {}
    for where in ("cpu", device):
        code = main(["repro", "run", "maml", "--config", "smoke", "--device", where, "--work-dir",
                     str(tmp_path / where), "--no-progress"])
        out = capsys.readouterr().out
        assert code == 0, out
        metrics[where] = {k: float(v) for k, v in (line.split(": ") for line in out.splitlines() if ": " in line)
                          if k.endswith(("mse", "loss")) or "step" in k}
    assert metrics["cpu"] and metrics["cpu"].keys() == metrics[device].keys()
    for key, value in metrics["cpu"].items():
        diff = abs(metrics[device][key] - value) / max(abs(value), 1e-12)
        _report(f"maml smoke run, {key}", device, diff, METRIC_TOLERANCE)
        assert diff <= METRIC_TOLERANCE, f"{key}: cpu {value}, {device} {metrics[device][key]}"
