"""Runge-Kutta MAML (reproductions.runge_kutta_maml): the tableaus have their orders, the MAML special case gives
MAML's meta-gradient, every variant's meta-gradient matches finite differences in float64, the first-order outer
update is the tableau's Runge-Kutta step, and a few meta-iterations lower the loss on every device."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from pydantic import TypeAdapter
from torch import nn

from mlatlas import records
from reproductions.core import registry, sinusoid
from reproductions.core.functional import losses_after_steps, parameters_of, support_grads
from reproductions.core.sinusoid import make_optimizer, mlp
from reproductions.core.tasks import SinusoidFamily, TaskBatch
from reproductions.core.training import meta_train
from reproductions.datasets.omniglot_benchmark import Episode
from reproductions.maml.method import MAML
from reproductions.omniglot_maml.method import OmniglotMAML
from reproductions.runge_kutta_maml import build, tableaus
from reproductions.runge_kutta_maml.method import RungeKuttaMAML, mse
from reproductions.runge_kutta_maml.omniglot import OmniglotRungeKutta

INNER = list(tableaus.TABLEAUS)
OUTER = ["midpoint", "heun", "ralston"]
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


def sine_tasks(n: int = 3, k: int = 5, seed: int = 1, dtype=torch.float64) -> TaskBatch:
    return SinusoidFamily().sample(np.random.default_rng(seed), n, k, k).to("cpu", dtype)


def small_mlp(seed: int = 0) -> nn.Sequential:
    """Smooth (tanh), so that finite differences are accurate."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(1, 6), nn.Tanh(), nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 1)).double()


def grads_of(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters()]


# --- tableaus ------------------------------------------------------------------------------------------------


def test_tableaus_have_their_classical_order():
    assert {name: t.order() for name, t in tableaus.TABLEAUS.items()} == {
        "euler": 1, "midpoint": 2, "heun": 2, "ralston": 2, "rk4": 4,
    }
    assert tableaus.MIDPOINT.b == (0.0, 1.0) and tableaus.MIDPOINT.c == (0.0, 0.5)
    assert tableaus.HEUN.b == (0.5, 0.5) and tableaus.RALSTON.b == pytest.approx((0.25, 0.75))
    assert tableaus.rk2(0.3).order() == 2
    assert tableaus.Tableau("two euler stages", ((), (1.0,)), (0.0, 1.0)).order() == 1  # consistent, not order 2
    with pytest.raises(ValueError, match="sum to"):
        tableaus.Tableau("bad", ((), (0.5,)), (0.5, 0.6))
    with pytest.raises(ValueError, match="unknown Runge-Kutta tableau 'rk5'"):
        tableaus.get("rk5")


@pytest.mark.parametrize("name", INNER)
def test_descent_step_local_error_shrinks_with_the_order(name):
    """On the flow of a non-quadratic loss, one step's error against the exact flow (many tiny RK4 steps) falls
    like h^(p+1): halving h divides it by about 2^(p+1)."""
    tableau = tableaus.get(name)
    target = torch.tensor([0.3, -0.2], dtype=torch.float64)

    def grad_of(p):
        x = p["x"]
        return {"x": torch.stack([torch.sin(x[0]) + x[1] ** 3, x[0] * x[1] + x[1]]) - target}

    start = {"x": torch.tensor([0.7, -0.4], dtype=torch.float64)}

    def exact(h):
        p = start
        for _ in range(2000):
            p = tableaus.descent_step(tableaus.RK4, p, grad_of, h / 2000)
        return p["x"]

    errors = [float((tableaus.descent_step(tableau, start, grad_of, h)["x"] - exact(h)).norm()) for h in (0.04, 0.02)]
    ratio = errors[0] / errors[1]
    assert abs(math.log2(ratio) - (tableau.order() + 1)) < 0.35, (name, errors, ratio)


# --- MAML is the special case --------------------------------------------------------------------------------


@pytest.mark.parametrize("vectorize", [True, False])
@pytest.mark.parametrize("steps", [1, 3])
def test_euler_inner_midpoint_outer_is_maml(vectorize, steps):
    """Euler inner steps and the midpoint outer weights (0, 1) give our MAML's meta-gradient, batched and per task
    (float32, the sinusoid network)."""
    tasks = sine_tasks(n=5, k=10, dtype=torch.float32)
    torch.manual_seed(0)
    ours = RungeKuttaMAML(mlp(), 0.01, steps, inner="euler", outer="midpoint", vectorize=vectorize)
    maml = MAML(mlp(), 0.01, steps, vectorize=vectorize)
    maml.load_state_dict(ours.state_dict())
    loss_ours, loss_maml = ours.meta_step(tasks), maml.meta_step(tasks)
    assert loss_ours == pytest.approx(loss_maml, rel=1e-6)
    for a, b in zip(grads_of(ours), grads_of(maml)):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    got = ours.eval_losses(tasks, [0, 1, 5])
    want = losses_after_steps(maml.model, parameters_of(maml.model), tasks, mse, [0, 1, 5], 0.01)
    for s in (0, 1, 5):
        torch.testing.assert_close(got[s], want[s], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("outer", OUTER)
@pytest.mark.parametrize("first_order", [False, True])
def test_first_order_outer_update_is_the_tableaus_runge_kutta_step(outer, first_order):
    """One task whose query set is its support set: the first-order update θ - h(b_1 k_1 + b_2 k_2) with
    h = α / c_2 is the outer tableau's Runge-Kutta step of the loss's gradient flow (for MAML, the midpoint rule
    with h = 2α). The second-order meta-gradient differs from it by the stage's Jacobian, (I - αH)."""
    task = sine_tasks(n=1, k=8)
    task = TaskBatch(task.support_x, task.support_y, task.support_x, task.support_y)
    learner = RungeKuttaMAML(small_mlp(), 0.05, 1, outer=outer, first_order=first_order, vectorize=False)
    theta = {n: p.detach().clone() for n, p in learner.model.named_parameters()}
    h = learner.outer_step_size()
    assert h == pytest.approx(0.05 / learner.outer.c[1])

    learner.meta_step(task)
    stepped = {n: theta[n] - h * p.grad for n, p in learner.model.named_parameters()}

    reference = tableaus.descent_step(learner.outer, theta, lambda p: _loss_grad(learner.model, p, task), h)
    difference = max(float((stepped[n] - reference[n]).abs().max()) for n in theta)
    if first_order:
        assert difference < 1e-12
    else:
        assert difference > 1e-6  # the Jacobian term: second-order MAML is not the plain midpoint step


@pytest.mark.parametrize("stage, order", [(0.25, 2), (0.5, 1)])
def test_second_order_maml_step_follows_the_flow_to_second_order_when_the_stage_is_at_a_quarter(stage, order):
    """Second-order MAML (support = query, outer SGD step h, stage α = stage·h): the step's error against the
    task loss's exact gradient flow falls like h^3 when α = h/4 (second order) but only like h^2 when α = h/2,
    the midpoint rule's stage, because of the stage's Jacobian (I - αH)."""
    task = sine_tasks(n=1, k=8)
    task = TaskBatch(task.support_x, task.support_y, task.support_x, task.support_y)
    errors = []
    for h in (0.04, 0.02):
        learner = RungeKuttaMAML(small_mlp(), stage * h, 1, outer="midpoint", vectorize=False)
        theta = {n: p.detach().clone() for n, p in learner.model.named_parameters()}
        learner.meta_step(task)
        stepped = {n: theta[n] - h * p.grad for n, p in learner.model.named_parameters()}
        exact = theta
        for _ in range(400):
            exact = tableaus.descent_step(tableaus.RK4, exact, lambda p: _loss_grad(learner.model, p, task), h / 400)
        errors.append(math.sqrt(sum(float(((stepped[n] - exact[n]) ** 2).sum()) for n in theta)))
    assert abs(math.log2(errors[0] / errors[1]) - (order + 1)) < 0.35, errors


def _loss_grad(model: nn.Module, params: dict, task: TaskBatch) -> dict:
    """The support loss's gradient at ``params`` (first task)."""
    return support_grads(model, params, list(params), task.support_x[0], task.support_y[0], mse, False)


# --- every variant against finite differences ----------------------------------------------------------------


@pytest.mark.parametrize("inner", INNER)
@pytest.mark.parametrize("outer", OUTER)
def test_meta_gradient_matches_finite_differences(inner, outer):
    """float64, two inner steps, the batched path; central differences of the meta-objective along random
    directions. The per-task loop gives the same gradient."""
    tasks = sine_tasks()
    learner = RungeKuttaMAML(small_mlp(), 0.1, 2, inner=inner, outer=outer, vectorize=True)
    learner.meta_step(tasks)
    grads = grads_of(learner)

    loop = RungeKuttaMAML(small_mlp(), 0.1, 2, inner=inner, outer=outer, vectorize=False)
    loop.meta_step(tasks)
    for a, b in zip(grads, grads_of(loop)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)

    params = list(learner.model.parameters())
    gen = torch.Generator().manual_seed(3)
    eps = 1e-6
    for _ in range(3):
        direction = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
        with torch.no_grad():
            for p, d in zip(params, direction):
                p.add_(eps * d)
        plus = float(learner.meta_loss(tasks).detach())
        with torch.no_grad():
            for p, d in zip(params, direction):
                p.sub_(2 * eps * d)
        minus = float(learner.meta_loss(tasks).detach())
        with torch.no_grad():
            for p, d in zip(params, direction):
                p.add_(eps * d)
        numeric = (plus - minus) / (2 * eps)
        analytic = float(sum((g * d).sum() for g, d in zip(grads, direction)))
        assert numeric == pytest.approx(analytic, rel=1e-6, abs=1e-9), (inner, outer)


def test_outer_weights_mix_unadapted_and_adapted_query_losses():
    """Heun's meta-objective is the mean of the query loss before and after adaptation; Ralston's weights are
    (1/4, 3/4)."""
    tasks = sine_tasks()
    parts = {}
    for name in ("midpoint", "heun", "ralston"):
        learner = RungeKuttaMAML(small_mlp(), 0.1, 1, outer=name)
        parts[name] = float(learner.meta_loss(tasks).detach())
    before = float(RungeKuttaMAML(small_mlp(), 0.1, 1).eval_losses(tasks, [0])[0].mean())
    assert parts["heun"] == pytest.approx(0.5 * before + 0.5 * parts["midpoint"], rel=1e-12)
    assert parts["ralston"] == pytest.approx(0.25 * before + 0.75 * parts["midpoint"], rel=1e-12)


def test_inner_heun_step_is_the_average_of_two_slopes():
    """Evaluation with the Heun inner tableau: one step is θ - α/2 (∇L(θ) + ∇L(θ - α∇L(θ)))."""
    tasks = sine_tasks(n=1)
    learner = RungeKuttaMAML(small_mlp(), 0.1, 1, inner="heun")
    theta = {n: p.detach() for n, p in learner.model.named_parameters()}
    g1 = _loss_grad(learner.model, theta, tasks)
    g2 = _loss_grad(learner.model, {n: theta[n] - 0.1 * g1[n] for n in theta}, tasks)
    adapted = {n: theta[n] - 0.05 * (g1[n] + g2[n]) for n in theta}
    want = mse(torch.func.functional_call(learner.model, adapted, (tasks.query_x[0],)), tasks.query_y[0])
    got = learner.eval_losses(tasks, [1])[1]
    torch.testing.assert_close(got[0], want, rtol=1e-12, atol=1e-14)


def test_bad_tableau_names_are_clear_errors():
    with pytest.raises(ValueError, match=r"method\.outer: outer tableau 'rk4' has 4 stages"):
        RungeKuttaMAML(small_mlp(), 0.1, 1, outer="rk4")
    with pytest.raises(ValueError, match=r"method\.inner: unknown Runge-Kutta tableau 'foo'"):
        RungeKuttaMAML(small_mlp(), 0.1, 1, inner="foo")


# --- smoke on every device -----------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_a_few_meta_iterations_lower_the_loss(device):
    """The smoke config (Heun inner steps, Ralston outer step) learns within 30 meta-iterations."""
    _, config = registry.load_config(registry.get("runge_kutta_maml"), "smoke")
    assert (config["method"]["inner"], config["method"]["outer"]) == ("heun", "ralston")
    torch.manual_seed(0)
    learner = build(config).to(device)
    optimizer, scheduler = make_optimizer(learner, {**config["train"], "outer_lr": 0.01})
    family = SinusoidFamily()
    tasks = family.sample(np.random.default_rng(1), 50, 10, 20).to(device)

    def score() -> float:
        return float(learner.eval_losses(tasks, [1])[1].mean())

    def step(rng) -> float:
        return learner.meta_step(family.sample(rng, 10, 10, 10).to(device))

    before = score()
    meta_train(learner, optimizer, step, np.random.default_rng(0), 30, scheduler=scheduler, progress=False)
    after = score()
    assert all(p.device.type == device for p in learner.parameters())
    assert after < 0.95 * before, (before, after)


# --- Omniglot ------------------------------------------------------------------------------------------------


def omniglot_episode(seed: int = 0) -> Episode:
    gen = torch.Generator().manual_seed(seed)
    return Episode(torch.rand(5, 1, 28, 28, generator=gen, dtype=torch.float64), torch.arange(5),
                   torch.rand(10, 1, 28, 28, generator=gen, dtype=torch.float64), torch.arange(5).repeat(2), 5, 1)


@pytest.mark.parametrize("outer", OUTER)
def test_omniglot_objective_is_maml_s_loss_mixed_with_the_unadapted_loss(outer):
    """On the Omniglot network (batch norm on batch statistics), Euler inner steps with the midpoint weights give
    omniglot_maml's loss and gradient (float64); Heun's and Ralston's mix in the query loss at the initialisation."""
    config = {"method": {"channels": 8, "max_way": 5, "inner_lr": 0.4, "train_steps": 2, "test_steps": 3}}
    ours, maml = OmniglotRungeKutta(outer=outer), OmniglotMAML(first_order=False)
    torch.manual_seed(0)
    net = ours.build(config).double()
    maml.build(config)
    twin = copy.deepcopy(net)
    episode = omniglot_episode()
    loss = ours.loss(net, episode)
    loss.backward()
    maml_loss = maml.loss(twin, episode)
    b1, b2 = tableaus.get(outer).b
    with torch.no_grad():
        before = torch.nn.functional.cross_entropy(twin(episode.query_x), episode.query_y)
    torch.testing.assert_close(loss.detach(), b1 * before + b2 * maml_loss.detach(), rtol=1e-12, atol=1e-12)
    if outer == "midpoint":
        maml_loss.backward()
        for a, b in zip(net.parameters(), twin.parameters()):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(ours.scores(net, episode), maml.scores(twin, episode), rtol=1e-9, atol=1e-12)


def test_sinusoid_records_state_their_protocol_facts():
    """The shared sinusoid runner writes the benchmark's facts and the config's own into each record."""
    _, config = registry.load_config(registry.get("runge_kutta_maml"), "sinusoid_10shot_heun")
    facts = sinusoid.protocol(config, 10)
    assert facts["test"] == "10-shot, 10 adaptation steps" and facts["test-tasks"] == 1000
    assert facts["budget"] == "10,000 meta-iterations" and facts["network"] == "1-40-40-1 ReLU MLP"
    assert sinusoid.protocol(config, 1)["test"] == "10-shot, 1 adaptation step"
    assert TypeAdapter(records.Protocol).validate_python(facts) == facts
