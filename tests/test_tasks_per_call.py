"""`method.tasks_per_call`: the sinusoid methods can map a few tasks at a time (less memory) with the same
meta-gradient as mapping the whole meta-batch at once."""

from __future__ import annotations

import importlib
from unittest import mock

import numpy as np
import pytest
import torch

import reproductions.maml.method as maml_method
from reproductions.core import registry
from reproductions.core.tasks import SinusoidFamily


def _grads(name: str, tasks_per_call: int | None, batch) -> tuple[float, list[torch.Tensor]]:
    _, config = registry.load_config(registry.get(name), "smoke")
    config["method"] = {**config["method"], "tasks_per_call": tasks_per_call}
    torch.manual_seed(0)
    learner = importlib.import_module(f"reproductions.{name}").build(config).double()
    with mock.patch.object(maml_method, "meta_gradient", wraps=maml_method.meta_gradient) as grouped:
        loss = learner.meta_step(batch)
    assert grouped.call_args.kwargs["chunk"] == tasks_per_call  # the option really reaches the meta-step
    return loss, [p.grad.clone() for p in learner.parameters()]


@pytest.mark.parametrize("name", ["maml", "fomaml", "anil", "meta_sgd"])
def test_groups_of_tasks_give_the_whole_batchs_meta_gradient(name):
    batch = SinusoidFamily().sample(np.random.default_rng(3), 7, 10, 10).to("cpu", torch.float64)
    whole_loss, whole = _grads(name, None, batch)
    for per_call in (1, 3, 7):
        loss, grads = _grads(name, per_call, batch)
        assert loss == pytest.approx(whole_loss, rel=1e-12)
        for a, b in zip(grads, whole):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert any(g.abs().sum() > 0 for g in whole)


@pytest.mark.parametrize("name", ["maml", "anil", "meta_sgd"])
def test_recompute_option_reaches_the_inner_steps_and_keeps_the_meta_gradient(name):
    """`method.recompute: true` (with or without tasks_per_call) runs the recomputing inner steps and gives
    the stored graph's meta-gradient."""
    from reproductions.core import recompute

    batch = SinusoidFamily().sample(np.random.default_rng(4), 5, 10, 10).to("cpu", torch.float64)
    stored_loss, stored = _grads(name, None, batch)
    for per_call in (None, 2):
        _, config = registry.load_config(registry.get(name), "smoke")
        config["method"] = {**config["method"], "tasks_per_call": per_call, "recompute": True}
        torch.manual_seed(0)
        learner = importlib.import_module(f"reproductions.{name}").build(config).double()
        with mock.patch.object(recompute, "sgd_step", wraps=recompute.sgd_step) as step:
            loss = learner.meta_step(batch)
        assert step.call_count == config["method"]["inner_steps"] * (1 if per_call is None else 3)
        assert loss == pytest.approx(stored_loss, rel=1e-12)
        for a, b in zip((p.grad for p in learner.parameters()), stored):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
