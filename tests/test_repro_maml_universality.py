"""maml_universality: meta-gradients (with and without the bias transformation) against a per-task loop and finite
differences in float64; the out-of-distribution task sets; causality of the recurrent learner; every learner
learns; the pipeline on every device; records."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml

from reproductions.core import registry
from reproductions.core.tasks import SinusoidFamily, TaskBatch
from reproductions.maml.method import MAML, mse
from reproductions.maml_universality import experiment, learners, models, report, snail, tasks as task_sets
from mlatlas.records import ResultRecord, verdict

LR = 0.05
DEVICES = [
    pytest.param("cpu"),
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="no CUDA device on this machine")),
    pytest.param("mps", marks=pytest.mark.skipif(
        not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        reason="no Apple MPS device on this machine")),
]


def small(bias_transform: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = models.BiasTransformMLP(8, 2, bias_transform) if bias_transform else models.mlp(1, 8, 2)
    model = model.double()
    if bias_transform:  # start theta away from 0, so that every term of the bias transformation's gradient is live
        with torch.no_grad():
            model.theta.normal_()
    return model


def batch64(n: int = 3, k: int = 5, seed: int = 1) -> TaskBatch:
    return SinusoidFamily().sample(np.random.default_rng(seed), n, k, k).to("cpu", torch.float64)


def flat_grad(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in module.parameters()])


def reference_meta_grad(model: torch.nn.Module, batch: TaskBatch, steps: int) -> torch.Tensor:
    """Textbook second-order MAML, one task at a time with torch.autograd.grad(create_graph=True)."""
    total = 0.0
    for i in range(len(batch)):
        fast = dict(model.named_parameters())
        for _ in range(steps):
            loss = mse(torch.func.functional_call(model, fast, (batch.support_x[i],)), batch.support_y[i])
            grads = torch.autograd.grad(loss, list(fast.values()), create_graph=True)
            fast = {n: p - LR * g for (n, p), g in zip(fast.items(), grads)}
        total = total + mse(torch.func.functional_call(model, fast, (batch.query_x[i],)), batch.query_y[i])
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(total / len(batch), list(model.parameters()))])


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize("bias_transform", [0, 4])
@pytest.mark.parametrize("steps", [1, 2])
def test_meta_gradient_matches_the_per_task_loop_and_finite_differences(float64, bias_transform, steps):
    """The batched (plain MLP) or vmapped (bias transformation) meta-gradient used in training."""
    model, batch = small(bias_transform), batch64()
    learner = MAML(model, LR, steps)
    learner.meta_step(batch)
    analytic = flat_grad(model)
    torch.testing.assert_close(analytic, reference_meta_grad(model, batch, steps), rtol=1e-9, atol=1e-11)

    params = list(model.parameters())
    base = [p.detach().clone() for p in params]
    gen = torch.Generator().manual_seed(0)
    eps = 1e-6
    for _ in range(4):  # central differences along random directions
        direction = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
        values = []
        for sign in (1, -1):
            with torch.no_grad():
                for p, b, d in zip(params, base, direction):
                    p.copy_(b + sign * eps * d)
            values.append(float(learner.meta_loss(batch).detach()))
        with torch.no_grad():
            for p, b in zip(params, base):
                p.copy_(b)
        numeric = (values[0] - values[1]) / (2 * eps)
        exact = float(sum((g * d).sum() for g, d in zip(torch.split(analytic, [p.numel() for p in params]),
                                                         (d.reshape(-1) for d in direction))))
        assert abs(numeric - exact) <= 1e-6 * max(1.0, abs(exact)), (numeric, exact)


def test_bias_transformation_moves_the_first_layer_bias_through_a_learned_metric(float64):
    """One inner step changes W_theta theta by -lr (W_theta W_theta^T + |theta|^2 I) g to first order, where g is
    the support loss's gradient with respect to the first layer's pre-activation bias."""
    model, batch = small(4), batch64(n=1)
    sx, sy = batch.support_x[0], batch.support_y[0]
    w = model.net[0].weight[:, 1:]
    params = dict(model.named_parameters())
    loss = mse(model(sx), sy)
    g = torch.autograd.grad(loss, params["net.0.bias"], retain_graph=True)[0]
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
    lr = 1e-4
    new_theta = params["theta"] - lr * grads["theta"]
    new_w = w - lr * grads["net.0.weight"][:, 1:]
    change = new_w @ new_theta - w @ params["theta"]
    metric = w @ w.T + params["theta"].dot(params["theta"]) * torch.eye(w.shape[0])
    torch.testing.assert_close(change, -lr * metric @ g, rtol=1e-3, atol=1e-9)
    assert change.abs().max() > 10 * (lr * g).abs().max() * 1e-3  # a real change, not a vanishing one


def fitted(batch: TaskBatch, i: int) -> tuple[float, float]:
    """Amplitude and phase of task i by least squares on y = a sin x + b cos x (= A sin(x - phase))."""
    x = torch.cat([batch.support_x[i], batch.query_x[i]])[:, 0].double().numpy()
    y = torch.cat([batch.support_y[i], batch.query_y[i]])[:, 0].double().numpy()
    (a, b), *_ = np.linalg.lstsq(np.stack([np.sin(x), np.cos(x)], 1), y, rcond=None)
    return math.hypot(a, b), math.atan2(-b, a) % (2 * math.pi)


@pytest.mark.parametrize("amplitude", [5.5, 8.0, 10.0])
def test_amplitude_shift_fixes_the_amplitude_and_keeps_the_training_phases(amplitude):
    batch = task_sets.shifted("amplitude", amplitude).sample(np.random.default_rng(0), 50, 5, 30)
    for i in range(len(batch)):
        a, phase = fitted(batch, i)
        assert a == pytest.approx(amplitude, rel=1e-4) and -1e-4 <= phase <= math.pi + 1e-4
    xs = torch.cat([batch.support_x, batch.query_x], 1)
    assert xs.min() >= -5 and xs.max() <= 5 and xs.max() - xs.min() > 9


@pytest.mark.parametrize("phase", [0.5, 3.5343, 5.8905])
def test_phase_shift_fixes_the_phase_and_keeps_the_training_amplitudes(phase):
    batch = task_sets.shifted("phase", phase).sample(np.random.default_rng(0), 50, 5, 30)
    amps = []
    for i in range(len(batch)):
        a, p = fitted(batch, i)
        assert min(abs(p - phase), 2 * math.pi - abs(p - phase)) < 1e-4
        amps.append(a)
    assert 0.1 - 1e-4 <= min(amps) and max(amps) <= 5 + 1e-4 and max(amps) - min(amps) > 2


def test_unknown_shift_is_refused():
    with pytest.raises(ValueError, match="unknown shift 'frequency'"):
        task_sets.shifted("frequency", 2.0)


def test_recorded_grids_reach_outside_the_training_ranges():
    _, config = registry.load_config(registry.get("maml_universality"), "default")
    amps, phases = config["eval"]["amplitudes"], config["eval"]["phases"]
    assert sum(a > 5 for a in amps) >= 5 and sum(a <= 5 for a in amps) >= 5
    assert sum(p > math.pi for p in phases) >= 5 and sum(p <= math.pi for p in phases) >= 5


def test_conditioned_tasks_are_the_family_tasks_with_their_amplitude_and_phase():
    family = task_sets.TRAINING
    plain = family.sample(np.random.default_rng(7), 20, 5, 30)
    cond = task_sets.sample_conditioned(family, np.random.default_rng(7), 20, 5, 30)
    torch.testing.assert_close(cond.support_x[..., :1], plain.support_x)
    torch.testing.assert_close(cond.query_y, plain.query_y)
    for i in range(20):
        a, p = fitted(plain, i)
        assert cond.query_x[i, :, 1].unique().item() == pytest.approx(a, rel=1e-4)
        assert cond.query_x[i, :, 2].unique().item() == pytest.approx(p, abs=1e-4)


def test_snail_output_at_each_position_depends_only_on_earlier_positions():
    torch.manual_seed(0)
    net = snail.SNAIL(seq_len=6, filters=8, key=4, value=4)
    seq = torch.randn(3, 6, 3)
    out = net(seq)
    for t in range(6):
        changed = seq.clone()
        changed[:, t:] = torch.randn_like(changed[:, t:])
        again = net(changed)
        torch.testing.assert_close(again[:, :t], out[:, :t], rtol=0, atol=1e-6)
        assert (again[:, t] - out[:, t]).abs().max() > 1e-4  # position t itself does see its input


def test_snail_predictions_read_the_support_set_but_no_query_label_and_no_other_query():
    torch.manual_seed(0)
    learner = snail.SnailLearner(5, 8, 4, 4)
    batch = SinusoidFamily().sample(np.random.default_rng(0), 4, 5, 7)
    pred = learner.predict(batch)
    secret = TaskBatch(batch.support_x, batch.support_y, batch.query_x, torch.randn_like(batch.query_y))
    torch.testing.assert_close(learner.predict(secret), pred)  # query labels are never read
    one = TaskBatch(batch.support_x, batch.support_y, batch.query_x[:, 2:3], batch.query_y[:, 2:3])
    torch.testing.assert_close(learner.predict(one)[:, 0], pred[:, 2], rtol=0, atol=1e-6)  # other queries unseen
    moved = TaskBatch(batch.support_x, batch.support_y + 1.0, batch.query_x, batch.query_y)
    assert (learner.predict(moved) - pred).abs().max() > 1e-4  # the support labels are read
    seq = snail.sequences(batch.support_x, batch.support_y, batch.query_x)
    assert seq.shape == (4 * 7, 6, 3) and (seq[:, -1, 1] == 0).all() and (seq[:, -1, 2] == 1).all()
    assert (seq[:, :-1, 2] == 0).all()


METHODS = {
    "maml": {"kind": "maml", "width": 40, "depth": 2, "inner_lr": 0.01, "inner_steps": 1},
    "maml_bt": {"kind": "maml", "width": 40, "depth": 2, "inner_lr": 0.01, "inner_steps": 1, "bias_transform": 10},
    "snail": {"kind": "snail", "filters": 16, "key": 8, "value": 8},
    "conditioned": {"kind": "conditioned", "width": 40, "depth": 2},
}


@pytest.mark.parametrize("name", list(METHODS))
def test_every_learner_learns(name):
    torch.manual_seed(0)
    method = METHODS[name]
    learner = learners.build(method, 5)
    optimizer = torch.optim.Adam(learner.parameters(), lr=0.01 if method["kind"] != "snail" else 0.003)
    conditioned = method["kind"] == "conditioned"
    test = experiment.draw(task_sets.TRAINING, [5], 100, 5, 20, conditioned)
    steps = experiment.steps_of(method, {"eval": {"steps": [1]}})

    def score() -> float:
        return float(learner.eval_losses(test, steps)[steps[0]].mean())

    before = score()
    rng = np.random.default_rng(0)
    for _ in range(60):
        optimizer.zero_grad()
        batch = (task_sets.sample_conditioned(task_sets.TRAINING, rng, 10, 5, 5) if conditioned
                 else task_sets.TRAINING.sample(rng, 10, 5, 5))
        learner.meta_step(batch)
        optimizer.step()
    assert score() < 0.9 * before


def tiny(config_name: str, **changes) -> tuple[str, dict]:
    name, config = registry.load_config(registry.get("maml_universality"), config_name)
    config = registry.apply_overrides(config, [f"{k}={v}" for k, v in changes.items()])
    return name, config


@pytest.mark.parametrize("device", DEVICES)
def test_smoke_run_on_every_device(tmp_path, device):
    name, config = tiny("smoke")
    ctx = registry.RunContext(config_name=name, device=device, work_dir=tmp_path, progress=False,
                              write_record=False, fresh=True)
    metrics = registry.get("maml_universality").run(config, ctx)
    assert {"maml_1step_mse_amplitude_out", "maml_bt_10step_mse_phase_out", "snail_mse_in_distribution"} <= set(metrics)
    assert all(math.isfinite(v) for v in metrics.values())
    assert (tmp_path / "maml_universality" / "smoke" / "snail_seed0.pt").exists()


def test_records_and_summaries(tmp_path):
    """A two-seed miniature of each experiment writes valid records with protocol facts and no paper number,
    summary tables and figures; a diverged setting gets no record and is named in the table."""
    out = tmp_path / "results"
    runs = {}
    for config_name, changes in (
        ("smoke", {"seeds": "[0, 1]"}),
        ("depth", {"seeds": "[0, 1]", "train.iterations": 10, "train.eval_every": 5, "train.checkpoint_every": 5,
                   "eval.in_distribution_tasks": 6, "eval.query": 10, "eval.val_tasks": 4}),
    ):
        name, config = tiny(config_name, **changes)
        if config_name == "depth":
            config["methods"] = {k: config["methods"][k] for k in ("maml_d2", "maml_bt_d1", "conditioned_d3")}
        ctx = registry.RunContext(config_name=name, work_dir=tmp_path / "runs", progress=False, command="mlatlas x")
        results, device = experiment.run_all(config, ctx)
        runs[config_name] = (config, ctx, results, device)
    config, ctx, results, device = runs["smoke"]
    first = next(iter(results["maml"].values()))
    first["eval"]["phase"][repr(4.0)]["10"][0] = float("nan")  # as if one task diverged after 10 steps
    written = report.write_all(config, ctx, results, device, results_dir=out)
    written += report.write_all(*runs["depth"][:3], runs["depth"][3], results_dir=out)
    stems = {p.stem for p in written}
    # Named after the experiment for the default and depth configs, after the config (here smoke) otherwise.
    assert {"smoke_maml_1step_amplitude_out", "smoke_snail_phase_out", "smoke_maml_bt_10step_in_distribution",
            "smoke_maml_5steps_amplitude_5_to_10", "depth_maml_bt_d1_1step", "depth_conditioned_d3"} <= stems
    assert "smoke_maml_10step_phase_out" not in stems
    assert "diverged (1 of 10)" in (out / "smoke_summary.md").read_text()
    assert report.diverged(np.array([1.0, np.nan, np.inf, 2e6, 5.0])) == 3
    assert (out / "smoke_summary.png").stat().st_size > 10_000 and (out / "depth_summary.png").exists()
    for path in written:
        if path.suffix != ".yaml":
            continue
        record = ResultRecord.model_validate(yaml.safe_load(path.read_text()))
        assert record.n_seeds == 2 and record.protocol["k-shot"] == 5 and "test-tasks" in record.protocol
        assert verdict(record).kind == "no paper number"
        assert (out / record.curve).exists()
    depth = yaml.safe_load((out / "depth_maml_bt_d1_1step.yaml").read_text())
    assert depth["protocol"]["parameters"] == 1766 and "bias transformation of size 10" in depth["protocol"]["network"]


def test_a_bad_config_is_named_in_one_line():
    _, config = tiny("smoke")
    config["methods"]["maml"]["kind"] = "lstm"
    with pytest.raises(registry.RegistryError, match=r"methods.maml.kind: 'lstm' is not one of maml, snail"):
        experiment.check(config)
