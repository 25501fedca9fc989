"""Online meta-learning (FTML): Rainbow MNIST on real digits, the FTML meta-gradient (per-task loop and finite
differences in float64), the efficiency metric, the MNIST loader's checks, and a smoke run on every device."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mlatlas.cli import main
from mlatlas.records import ResultRecord, verdict
from reproductions.core import functional, registry
from reproductions.core.tasks import TaskBatch
from reproductions.datasets import mnist
from reproductions.online_meta_learning import experiment, method, rainbow, report

ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"
needs_mnist = pytest.mark.skipif(not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").exists(),
                                 reason="the shared MNIST files are not on this machine")
DEVICES = [
    pytest.param("cpu"),
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")),
    pytest.param("mps", marks=pytest.mark.skipif(
        not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        reason="no Apple MPS device on this machine")),
]


@pytest.fixture(scope="module")
def digits():
    images, labels = mnist.load("test", SHARED_MNIST)
    return images[:50], labels[:50]


# ---------------------------------------------------------------------------------------------- Rainbow MNIST


def test_the_56_tasks_are_every_colour_scale_and_rotation():
    ts = rainbow.all_transforms()
    assert len(ts) == 56 == len({t.name for t in ts})
    assert {t.colour for t in ts} == set(rainbow.COLOURS) and len(rainbow.COLOURS) == 7
    assert {t.scale for t in ts} == {"full", "half"} and {t.rotation for t in ts} == {0, 90, 180, 270}


@needs_mnist
def test_colour_fills_the_background_and_ink_turns_white(digits):
    images, _ = digits
    out = rainbow.apply(images, rainbow.Transform("orange", "full", 0))
    assert out.shape == (50, 3, 28, 28) and out.dtype == np.float32
    colour = np.array(rainbow.COLOURS["orange"], dtype=np.float32) / 255
    background, ink = images == 0, images == 255
    assert background.any() and ink.any()
    for c in range(3):
        assert np.allclose(out[:, c][background], colour[c])  # paper: the background takes the task's colour
        assert np.allclose(out[:, c][ink], 1.0)  # full ink is white
    a = images.astype(np.float32) / 255  # in between: a blend of the two
    assert np.allclose(out[:, 2], (1 - a) * colour[2] + a, atol=1e-6)


@needs_mnist
def test_half_scale_shrinks_the_digit_into_the_middle(digits):
    images, _ = digits
    full = rainbow.apply(images, rainbow.Transform("blue", "full", 0))
    half = rainbow.apply(images, rainbow.Transform("blue", "half", 0))
    blue = np.array([0, 0, 1.0], dtype=np.float32)[None, :, None, None]
    border = np.ones((28, 28), bool)
    border[7:21, 7:21] = False
    assert np.allclose(half[:, :, border], np.broadcast_to(blue, half.shape)[:, :, border])  # only background
    # The 14x14 middle is the 2x2 average of the full-size digit (colouring is affine, so it commutes).
    pooled = full.reshape(50, 3, 14, 2, 14, 2).mean(axis=(3, 5))
    assert np.allclose(half[:, :, 7:21, 7:21], pooled, atol=1e-6)
    ink = lambda x: (x[:, 0] > 0.5).sum(axis=(1, 2))  # noqa: E731 - red channel: 0 on blue, 1 on white ink
    assert np.all(ink(half) < ink(full))


@needs_mnist
def test_rotations_are_exact_quarter_turns(digits):
    images, _ = digits
    base = rainbow.apply(images, rainbow.Transform("green", "half", 0))
    for k, deg in enumerate(rainbow.ROTATIONS):
        rot = rainbow.apply(images, rainbow.Transform("green", "half", deg))
        assert np.array_equal(rot, np.rot90(base, k=k, axes=(2, 3)))
    quarter = rainbow.apply(images, rainbow.Transform("green", "full", 90))
    # counter-clockwise: the top row of the rotated image is the right-most column of the original
    plain = rainbow.apply(images, rainbow.Transform("green", "full", 0))
    assert np.array_equal(quarter[:, :, 0, :], plain[:, :, :, -1])
    assert not np.array_equal(quarter, plain)


@needs_mnist
def test_tasks_use_their_own_images_and_keep_the_labels():
    train, test = mnist.load("train", SHARED_MNIST), mnist.load("test", SHARED_MNIST)
    tasks = rainbow.make_tasks(train, test, n_tasks=6, n_train=30, n_test=20, seed=3)
    assert len({t.transform for t in tasks}) == 6
    for t in tasks:
        assert t.x_train.shape == (30, 3, 28, 28) and t.x_test.shape == (20, 3, 28, 28)
        assert set(t.y_train.tolist()) <= set(range(10))
    # Undo the colouring and rotation of every full-size task: the grey digits that come back must all differ
    # (no MNIST image is used in two tasks).
    greys = []
    for t in tasks:
        colour = torch.tensor(rainbow.COLOURS[t.transform.colour], dtype=torch.float32) / 255
        c = int(torch.argmin(colour))  # the channel where white and the colour differ most
        a = (t.x_train[:, c] - colour[c]) / (1 - colour[c])
        if t.transform.scale == "full":
            greys += [g.round(decimals=3).numpy().tobytes() for g in torch.rot90(a, -t.transform.rotation // 90, (1, 2))]
    assert len(greys) == len(set(greys))
    with pytest.raises(ValueError, match="56"):
        rainbow.make_tasks(train, test, n_tasks=57, n_train=1, n_test=1, seed=0)


# ---------------------------------------------------------------------------------------------- FTML meta-gradient


def _tiny_problem(dtype=torch.float64):
    torch.manual_seed(0)
    model = method.conv_net(layers=2, width=3).to(dtype)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(3, 8, 3, 28, 28, generator=gen, dtype=dtype)
    y = torch.randint(0, 10, (3, 8), generator=gen)
    return model, TaskBatch(x[:, :4], y[:, :4], x[:, 4:], y[:, 4:])


def test_ftml_meta_gradient_matches_a_per_task_loop():
    model, tasks = _tiny_problem()
    loss_fn = method.smoothed_ce(0.1)
    method.ftml_meta_gradient(model, tasks, loss_fn, steps=2, lr=0.3)
    ours = [p.grad.clone() for p in model.parameters()]
    params = functional.parameters_of(model)
    loop = [torch.zeros_like(p) for p in model.parameters()]
    for i in range(len(tasks)):
        t = tasks.task(i)
        loss = functional.task_loss(model, params, (t.support_x[0], t.support_y[0]), (t.query_x[0], t.query_y[0]),
                                    loss_fn, 2, 0.3)
        for acc, g in zip(loop, torch.autograd.grad(loss, list(params.values()))):
            acc += g / len(tasks)
    for a, b in zip(ours, loop):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_ftml_meta_gradient_matches_finite_differences_in_float64():
    model, tasks = _tiny_problem()
    loss_fn = method.smoothed_ce(0.1)
    method.ftml_meta_gradient(model, tasks, loss_fn, steps=2, lr=0.3)
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(7)
    eps = 1e-6

    def objective(shift: dict[str, torch.Tensor], sign: float) -> float:
        params = {n: (base[n] + sign * eps * shift[n]).requires_grad_() for n in base}
        return float(functional.meta_loss(model, params, tasks, loss_fn, 2, 0.3).detach())

    for _ in range(3):
        v = {n: torch.randn(p.shape, generator=gen, dtype=p.dtype) for n, p in base.items()}
        numeric = (objective(v, 1.0) - objective(v, -1.0)) / (2 * eps)
        analytic = float(sum((grads[n] * v[n]).sum() for n in base))
        assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(analytic)), (numeric, analytic)
    # The second-order term matters here: the first-order gradient is a different vector.
    model.zero_grad()
    method.ftml_meta_gradient(model, tasks, loss_fn, steps=2, lr=0.3, first_order=True)
    assert not all(torch.allclose(grads[n], p.grad, rtol=1e-3) for n, p in model.named_parameters())


def test_ftml_batches_draw_tasks_from_the_whole_buffer_and_independent_minibatches():
    buffer = [(torch.full((5, 1), float(k)), torch.arange(5)) for k in range(4)]
    batch = method.ftml_batch(buffer, np.random.default_rng(0), meta_batch=200, inner_batch=3, outer_batch=3)
    assert batch.support_x.shape == (200, 3, 1)
    tasks_of_support = batch.support_x[:, 0, 0].long()
    assert torch.equal(tasks_of_support, batch.query_x[:, 0, 0].long())  # D^tr and D^val of one task
    assert set(tasks_of_support.tolist()) == {0, 1, 2, 3}  # every past task is drawn
    assert not torch.equal(batch.support_y, batch.query_y)  # drawn independently
    assert all(len(set(row.tolist())) == 3 for row in batch.support_y)  # without replacement when enough points


# ---------------------------------------------------------------------------------------------- metrics


def test_efficiency_is_the_first_amount_that_reaches_the_threshold():
    amounts = [10, 20, 50, 100]
    assert experiment.efficiency(amounts, [0.5, 0.89, 0.9, 0.95], 0.9) == 50  # reaching it exactly counts
    assert experiment.efficiency(amounts, [0.95, 0.5, 0.5, 0.5], 0.9) == 10  # the first time, even if it drops
    assert experiment.efficiency(amounts, [0.1, 0.2, 0.3, 0.89], 0.9) is None
    runs = [{"task": 0, "amounts": amounts, "accuracy": [0.2, 0.95, 0.9, 0.9], "efficiency": 20},
            {"task": 1, "amounts": amounts, "accuracy": [0.1, 0.2, 0.3, 0.4], "efficiency": None}]
    assert report.efficiencies(runs, cap=100).tolist() == [20.0, 100.0]  # never reached: counted as the cap
    assert report.accuracies_at(runs, 50).tolist() == [0.9, 0.3]


# ---------------------------------------------------------------------------------------------- MNIST files


@needs_mnist
def test_the_loader_reads_the_official_files():
    images, labels = mnist.load("test", SHARED_MNIST)
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert np.bincount(labels).tolist()[:2] == [980, 1135]  # the published class counts of the test set


@needs_mnist
def test_a_corrupted_mnist_file_is_one_line_through_the_command_line(tmp_path, capsys):
    for name in mnist.FILES:
        shutil.copy(SHARED_MNIST / name, tmp_path / name)
    victim = tmp_path / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(victim.read_bytes())
    raw[100] ^= 0xFF
    victim.write_bytes(bytes(raw))
    code = main(["repro", "run", "online_meta_learning", "--config", "smoke", "--data-dir", str(tmp_path),
                 "--work-dir", str(tmp_path / "runs"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "t10k-labels-idx1-ubyte.gz: MD5" in err and "Traceback" not in err and err.count("\n") == 1


# ---------------------------------------------------------------------------------------------- smoke runs


@needs_mnist
@pytest.mark.parametrize("device", DEVICES)
def test_smoke_run_on_every_device(device, tmp_path):
    repro = registry.get("online_meta_learning")
    _, config = registry.load_config(repro, "smoke")
    config["data"]["data_dir"] = str(SHARED_MNIST)
    ctx = registry.RunContext(config_name="smoke", device=device, work_dir=tmp_path, root=ROOT, fresh=True,
                              write_record=False, progress=False)
    metrics = repro.run(config, ctx)
    for m in method.METHODS:
        assert 0.0 <= metrics[f"{m}_accuracy_at_20"] <= 1.0
        assert metrics[f"{m}_points_to_threshold"] in (10.0, 20.0)
    # A second call resumes from the finished checkpoints and returns the same numbers without training.
    again = repro.run(config, registry.RunContext(config_name="smoke", device=device, work_dir=tmp_path, root=ROOT,
                                                  write_record=False, progress=False))
    assert again == metrics
    # The records of a run validate, carry our protocol facts and no paper value (the paper gives figures only).
    ctx.command = "mlatlas repro run online_meta_learning --config smoke"
    results, seconds, dev = experiment.run_all(config, ctx)
    written = report.write_all(config, ctx, results, seconds, dev, results_dir=tmp_path / "results")
    records = [ResultRecord.model_validate(yaml.safe_load(p.read_text())) for p in written if p.suffix == ".yaml"]
    assert len(records) == 3 * len(method.METHODS)
    for r in records:
        assert verdict(r).kind == "no paper number"
        assert r.protocol["threshold"] == 0.9 and r.protocol["tasks"] == 3 and r.n_eval_tasks == 3
    assert (tmp_path / "results" / "smoke_summary.md").exists() and (tmp_path / "results" / "smoke_summary.png").exists()


@needs_mnist
def test_an_interrupted_run_resumes_and_ends_where_an_uninterrupted_one_ends(tmp_path, monkeypatch):
    repro = registry.get("online_meta_learning")
    _, config = registry.load_config(repro, "smoke")
    config["data"]["data_dir"] = str(SHARED_MNIST)
    config["methods"] = ["ftml", "scratch"]

    def ctx(where, **kw):
        return registry.RunContext(config_name="smoke", work_dir=tmp_path / where, root=ROOT, write_record=False,
                                   progress=False, **kw)

    whole, _, _ = experiment.run_all(config, ctx("whole", fresh=True))
    saves, real_save = [], experiment.training.save_checkpoint

    def save_then_die(path, payload):
        real_save(path, payload)
        saves.append(path)
        if len(saves) == 2:  # the ftml learner after its second task
            raise KeyboardInterrupt

    monkeypatch.setattr(experiment.training, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        experiment.run_all(config, ctx("cut", fresh=True))
    with pytest.raises(ValueError, match="stopped after 2 of 3 tasks"):
        experiment.run_all(config, ctx("cut", eval_only=True))
    monkeypatch.setattr(experiment.training, "save_checkpoint", real_save)
    resumed, _, _ = experiment.run_all(config, ctx("cut"))
    assert resumed == whole


@needs_mnist
def test_ftml_meta_training_lowers_the_adapted_loss():
    train, test = mnist.load("train", SHARED_MNIST), mnist.load("test", SHARED_MNIST)
    tasks = rainbow.make_tasks(train, test, n_tasks=3, n_train=40, n_test=10, seed=0)
    _, config = registry.load_config(registry.get("online_meta_learning"), "smoke")
    config["ftml"]["iterations_per_arrival"] = 40
    learner = method.Learner("ftml", config, torch.device("cpu"), seed=0)
    buffer = [(t.x_train, t.y_train) for t in tasks]
    probe = method.ftml_batch(buffer, np.random.default_rng(123), 6, 10, 10)
    f = config["ftml"]

    def outer_loss() -> float:
        return float(functional.meta_loss(learner.model, functional.parameters_of(learner.model), probe,
                                          learner.loss_fn, f["inner_steps"], f["inner_lr"]).detach())

    before = outer_loss()
    learner.train(buffer, np.random.default_rng(0))
    assert outer_loss() < 0.9 * before
