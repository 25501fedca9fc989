"""The meta-training loop: a run killed at any point and resumed ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reproductions.core import runtime
from reproductions.core.sinusoid import make_optimizer, mlp
from reproductions.core.tasks import SinusoidFamily
from reproductions.core.training import meta_train
from reproductions.maml.method import MAML
from reproductions.reptile.method import Reptile

ITERATIONS = 15
TRAIN = {"optimizer": "adam", "outer_lr": 0.001, "iterations": ITERATIONS}


def build(kind: str, seed: int):
    torch.manual_seed(seed)
    if kind == "reptile":
        learner = Reptile(mlp(hidden=16), 0.02, 3)
        optimizer, scheduler = make_optimizer(learner, {**TRAIN, "optimizer": "sgd", "outer_lr": 1.0, "anneal": True})
    else:
        learner = MAML(mlp(hidden=16), 0.01, 2)
        optimizer, scheduler = make_optimizer(learner, TRAIN)
    return learner, optimizer, scheduler


def session(kind, checkpoint, stop_after=None, init_seed=0):
    """One process's worth of training: everything is rebuilt, as after a kill."""
    learner, optimizer, scheduler = build(kind, init_seed)
    rng = runtime.seed_everything(0)
    family = SinusoidFamily()
    val = family.sample(np.random.default_rng(99), 8, 5, 20)

    def step(task_rng):
        return learner.meta_step(family.sample(task_rng, 4, 5, 5))

    def evaluate():
        return {"val": float(learner.eval_losses(val, [1])[1].mean())}

    state = meta_train(
        learner, optimizer, step, rng, ITERATIONS, evaluate=evaluate, eval_every=4, scheduler=scheduler,
        checkpoint=checkpoint, checkpoint_every=5, fingerprint="test", progress=False, stop_after=stop_after,
    )
    return learner, state


@pytest.mark.parametrize("kind", ["maml", "reptile"])
def test_killed_and_resumed_run_equals_uninterrupted_run(tmp_path, kind):
    reference, ref_state = session(kind, tmp_path / "straight.pt")
    # Killed after 7 iterations (last checkpoint at 5), then after 6 more (checkpoint at 10), then finished.
    # Resumed sessions start from other random initialisations: everything must come from the checkpoint.
    path = tmp_path / "interrupted.pt"
    _, partial = session(kind, path, stop_after=7)
    assert partial.iteration == 7
    _, partial = session(kind, path, stop_after=6, init_seed=2)
    assert partial.iteration == 5 + 6
    resumed, state = session(kind, path, init_seed=3)
    assert state.iteration == ITERATIONS
    for (name, a), (_, b) in zip(reference.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    assert state.curve == ref_state.curve
    assert [row["iteration"] for row in state.curve] == [4.0, 8.0, 12.0, 15.0]


def test_a_checkpoint_of_another_configuration_is_refused(tmp_path):
    learner, optimizer, _ = build("maml", 0)
    path = tmp_path / "c.pt"
    step = lambda rng: learner.meta_step(SinusoidFamily().sample(rng, 2, 5, 5))  # noqa: E731
    meta_train(learner, optimizer, step, np.random.default_rng(0), 5, checkpoint=path, checkpoint_every=5,
               fingerprint="a", progress=False)
    with pytest.raises(ValueError, match="different configuration"):
        meta_train(learner, optimizer, step, np.random.default_rng(0), 10, checkpoint=path, fingerprint="b",
                   progress=False)


def test_nan_loss_stops_training_with_a_clear_error():
    learner, optimizer, _ = build("maml", 0)
    with pytest.raises(runtime.NonFiniteError, match="meta-iteration 0"):
        meta_train(learner, optimizer, lambda rng: float("nan"), np.random.default_rng(0), 3, progress=False)


def test_diverging_inner_loop_is_caught():
    torch.manual_seed(0)
    learner = MAML(mlp(), inner_lr=1e30, inner_steps=3)
    optimizer = torch.optim.SGD(learner.parameters(), lr=1.0)
    step = lambda rng: learner.meta_step(SinusoidFamily().sample(rng, 2, 5, 5))  # noqa: E731
    with pytest.raises(runtime.NonFiniteError):
        meta_train(learner, optimizer, step, np.random.default_rng(0), 5, progress=False)


def test_device_choice():
    assert runtime.pick_device("cpu").type == "cpu"
    assert runtime.pick_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(ValueError, match="choose one of"):
        runtime.pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            runtime.pick_device("cuda")
