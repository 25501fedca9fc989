"""Every optimization-based method learns: a few meta-iterations lower the adapted query loss, on every device."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from reproductions.core import registry
from reproductions.core.sinusoid import make_optimizer
from reproductions.core.tasks import SinusoidFamily
from reproductions.core.training import meta_train

METHODS = ["maml", "fomaml", "reptile", "meta_sgd", "anil"]
DEVICES = [
    pytest.param("cpu"),
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
    ),
    pytest.param(
        "mps",
        marks=pytest.mark.skipif(
            not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
            reason="no Apple MPS device on this machine",
        ),
    ),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", METHODS)
def test_a_few_meta_iterations_lower_the_loss(name, device):
    _, config = registry.load_config(registry.get(name), "smoke")
    torch.manual_seed(0)
    learner = importlib.import_module(f"reproductions.{name}").build(config).to(device)
    train = {**config["train"], "iterations": 30}
    if train["optimizer"] == "adam":
        train["outer_lr"] = 0.01  # a larger outer step than the real runs, so that 30 iterations show the trend
    optimizer, scheduler = make_optimizer(learner, train)
    family = SinusoidFamily()
    tasks = family.sample(np.random.default_rng(1), 50, 10, 20).to(device)
    # Score adaptation as the method trains it; Reptile is not trained for a given step count, so it gets the
    # longest evaluated fine-tuning.
    steps = max(config["eval"]["steps"]) if name == "reptile" else config["method"]["inner_steps"]

    def score() -> float:
        return float(learner.eval_losses(tasks, [steps])[steps].mean())

    def step(rng) -> float:
        return learner.meta_step(family.sample(rng, 10, 10, 10).to(device))

    before = score()
    meta_train(learner, optimizer, step, np.random.default_rng(0), 30, scheduler=scheduler, progress=False)
    after = score()
    assert all(p.device.type == device for p in learner.parameters())
    assert after < 0.95 * before, (before, after)
