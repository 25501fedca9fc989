"""Learning to Optimize (Li & Malik 2017): the baselines against scipy, the GPS pieces on cases with known answers,
the learned optimiser's determinism, and a smoke run on every device."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
import torch
from scipy import optimize

from reproductions.core import registry
from reproductions.core.runtime import NonFiniteError
from reproductions.learning_to_optimize import baselines, experiment, gps, problems
from reproductions.learning_to_optimize.policy import PolicyNet, Tracker, rollout_linear_gaussian, run_policy

DEVICES = [
    pytest.param("cpu"),
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")),
    pytest.param("mps", marks=pytest.mark.skipif(
        not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        reason="no Apple MPS device on this machine")),
]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def scipy_minimum(ps: problems.ProblemSet, i: int) -> float:
    one = ps.subset(slice(i, i + 1))

    def fun(v):
        f, g = one.value_and_grad(torch.tensor(v)[None, None])
        return float(f), g[0, 0].numpy()

    return optimize.minimize(fun, one.x0[0].numpy(), jac=True, method="BFGS", options={"gtol": 1e-10}).fun


def test_objectives_match_their_formulas_and_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    for family in problems.FAMILIES:
        ps = problems.sample(family, 2, rng)
        x = torch.randn(2, 3, ps.dim, dtype=torch.float64)
        f, g = ps.value_and_grad(x)
        eps = 1e-6
        for j in range(ps.dim):
            e = torch.zeros(ps.dim, dtype=torch.float64)
            e[j] = eps
            fd = (ps.value(x + e) - ps.value(x - e)) / (2 * eps)
            assert torch.allclose(fd, g[..., j], atol=1e-6)
        H = ps.hessian(x)
        assert torch.allclose(H, H.transpose(-1, -2), atol=1e-8)
    # logistic regression by hand for one problem and point
    ps = problems.sample("logistic", 1, rng)
    w, b = ps.x0[0, :3].numpy(), ps.x0[0, 3].item()
    z = ps.x[0].numpy() @ w + b
    y = ps.y[0].numpy()
    s = 1 / (1 + np.exp(-z))
    hand = -np.mean(y * np.log(s) + (1 - y) * np.log(1 - s)) + 0.0005 / 2 * w @ w
    assert abs(float(ps.value(ps.x0[:, None])) - hand) < 1e-10
    # Geman-McClure by hand
    ps = problems.sample("robust", 1, rng)
    r = ps.y[0].numpy() - ps.x[0].numpy() @ ps.x0[0, :3].numpy() - ps.x0[0, 3].item()
    assert abs(float(ps.value(ps.x0[:, None])) - np.mean(r ** 2 / (1 + r ** 2))) < 1e-10


def test_fixed_step_baselines_reach_scipys_minimum_on_a_convex_problem():
    ps = problems.sample("logistic", 3, np.random.default_rng(1))
    best = np.array([scipy_minimum(ps, i) for i in range(3)])
    runs = {
        "gd": baselines.gd(ps, 3000, 1.0),
        "momentum": baselines.momentum(ps, 1500, 0.5, 0.9),
        "cg": baselines.cg(ps, 3000, 1.0),
        "lbfgs": baselines.lbfgs(ps, 300, 1.0),
    }
    for name, curve in runs.items():
        assert np.allclose(curve[:, -1].numpy(), best, atol=1e-6), (name, curve[:, -1], best)
        assert (curve[:, -1].numpy() >= best - 1e-9).all()  # nothing goes below the true minimum


def test_scipy_curves_end_at_scipys_result_and_never_rise():
    ps = problems.sample("logistic", 2, np.random.default_rng(2))
    curve = baselines.scipy_curve(ps, 200, "L-BFGS-B")
    best = np.array([scipy_minimum(ps, i) for i in range(2)])
    assert np.allclose(curve[:, -1].numpy(), best, atol=1e-7)
    assert (curve[:, 1:] <= curve[:, :-1] + 1e-12).all()  # Wolfe line search: monotone


def test_lbfgs_two_loop_recursion_equals_the_explicit_bfgs_inverse_hessian():
    torch.manual_seed(0)
    n = 5
    A = torch.randn(n, n, dtype=torch.float64)
    A = A @ A.T + n * torch.eye(n, dtype=torch.float64)
    pairs = []
    for _ in range(4):
        s = torch.randn(n, dtype=torch.float64)
        pairs.append((s, A @ s))
    g = torch.randn(n, dtype=torch.float64)
    s_last, y_last = pairs[-1]
    Hm = (s_last @ y_last) / (y_last @ y_last) * torch.eye(n, dtype=torch.float64)
    for s, y in pairs:  # BFGS inverse update, oldest first
        rho = 1 / (y @ s)
        V = torch.eye(n, dtype=torch.float64) - rho * torch.outer(y, s)
        Hm = V.T @ Hm @ V + rho * torch.outer(s, s)
    assert torch.allclose(baselines.lbfgs_direction(g, pairs), -Hm @ g, atol=1e-10)


def test_momentum_controller_without_noise_is_the_momentum_method():
    ps = problems.sample("robust", 3, np.random.default_rng(3))
    T = 8
    steps = torch.full((3,), 0.3, dtype=torch.float64)
    decays = torch.full((3,), 0.8, dtype=torch.float64)
    ctrl = experiment.momentum_controller(steps, decays, ps.dim, T, T, 1e-12)  # H >= T: no truncation
    _, _, values = rollout_linear_gaussian(ps, ctrl.K, ctrl.k, ctrl.G, 1, T, torch.Generator().manual_seed(0))
    assert torch.allclose(values[:, 0], baselines.momentum(ps, T, 0.3, 0.8), atol=1e-9)


def test_state_features_follow_the_papers_definition():
    ps = problems.sample("logistic", 1, np.random.default_rng(4))
    H, n = 3, ps.dim
    x = ps.x0[:, None].clone()
    tr = Tracker(ps, x, H)
    points = [x]
    for i in range(4):
        points.append(points[-1] + 0.1 * (i + 1))
        tr.move(points[-1])
    f = [float(ps.value(p)) for p in points]
    g = [ps.value_and_grad(p)[1][0, 0] for p in points]
    feats = tr.features()[0, 0]
    assert torch.allclose(feats[:H], torch.tensor([f[-1] - f[-2], f[-1] - f[-3], f[-1] - f[-4]], dtype=torch.float64))
    assert torch.allclose(feats[H:].reshape(H, n), torch.stack([g[-1], g[-2], g[-3]]))
    assert torch.equal(tr.state()[0, 0, :n], points[-1][0, 0])
    fresh = Tracker(ps, ps.x0[:, None].clone(), H).features()[0, 0]
    assert (fresh[:H] == 0).all() and (fresh[H + n:] == 0).all()  # no history yet


def test_policy_jacobian_matches_autograd():
    torch.manual_seed(0)
    net = PolicyNet(4, 3)
    net.set_normalisation(torch.randn(50, 15, dtype=torch.float64) * 3 + 1)
    z = torch.randn(15, dtype=torch.float64)
    auto = torch.autograd.functional.jacobian(net, z)
    assert torch.allclose(net.jacobian(z), auto, atol=1e-10)


def linear_data(P=2, S=4000, T=2, ds=3, m=2, seed=0, stationary=False):
    g = torch.Generator().manual_seed(seed)
    shape = (1, 1) if stationary else (P, T)
    A = (torch.randn(*shape, ds, ds, generator=g, dtype=torch.float64) * 0.5).expand(P, T, ds, ds)
    B = torch.randn(*shape, ds, m, generator=g, dtype=torch.float64).expand(P, T, ds, m)
    c = torch.randn(*shape, ds, generator=g, dtype=torch.float64).expand(P, T, ds)
    s = [torch.randn(P, S, ds, generator=g, dtype=torch.float64)]
    a = []
    for t in range(T):
        a.append(torch.randn(P, S, m, generator=g, dtype=torch.float64))
        s.append(torch.einsum("pij,psj->psi", A[:, t], s[-1]) + torch.einsum("pij,psj->psi", B[:, t], a[-1])
                 + c[:, t, None] + 0.01 * torch.randn(P, S, ds, generator=g, dtype=torch.float64))
    return torch.stack(s, 2), torch.stack(a, 2), A, B, c


def pooled_gmm(states, actions, k, points=3000):
    xuy = torch.cat([states[:, :, :-1], actions, states[:, :, 1:]], -1).reshape(-1, 2 * states.shape[-1] + 2)
    pick = torch.randperm(xuy.shape[0], generator=torch.Generator().manual_seed(0))[:points]  # pooled, as in GPS
    return gps.fit_gmm(xuy[pick], k, 10, torch.Generator().manual_seed(0))


def test_dynamics_fit_recovers_known_linear_dynamics():
    states, actions, A, B, c = linear_data()
    dyn = gps.fit_dynamics(states, actions, pooled_gmm(states, actions, 4), prior_strength=1e-6)
    assert torch.allclose(dyn.Fm[..., :3], A, atol=2e-3)
    assert torch.allclose(dyn.Fm[..., 3:], B, atol=2e-3)
    assert torch.allclose(dyn.fv, c, atol=2e-3)
    assert torch.allclose(dyn.W, 1e-4 * torch.eye(3, dtype=torch.float64).expand_as(dyn.W), atol=2e-5)


def test_mixture_prior_makes_a_fit_from_fewer_samples_than_dimensions_work():
    # 4 samples per (problem, step) cannot determine 3 x 5 coefficients; the prior pooled over all of them can
    states, actions, A, B, c = linear_data(P=50, S=4, T=10, stationary=True)
    dyn = gps.fit_dynamics(states, actions, pooled_gmm(states, actions, 2))
    assert (dyn.Fm[..., :3] - A).abs().max() < 0.05
    assert (dyn.Fm[..., 3:] - B).abs().max() < 0.05
    assert (dyn.fv - c).abs().max() < 0.05


def scalar_problem(T=5):
    """x' = x + a (one state, one action), cost 1/2 q x^2 at every step; previous controller a ~ N(0, 1)."""
    P, ds, m = 1, 1, 1
    dyn = gps.Dynamics(torch.ones(P, T, ds, ds + m, dtype=torch.float64), torch.zeros(P, T, ds, dtype=torch.float64),
                       1e-6 * torch.ones(P, T, ds, ds, dtype=torch.float64))
    q = 2.0
    C = q * torch.ones(P, T + 1, ds, ds, dtype=torch.float64)
    c = torch.zeros(P, T + 1, ds, dtype=torch.float64)
    prev = gps.Controller(torch.zeros(P, T, m, ds, dtype=torch.float64), torch.zeros(P, T, m, dtype=torch.float64),
                          torch.ones(P, T, m, m, dtype=torch.float64))
    return dyn, C, c, prev, q


def test_lqg_gains_are_the_riccati_solution_of_the_augmented_cost():
    T = 5
    dyn, C, c, prev, q = scalar_problem(T)
    eta = 0.7
    ctrl, ok = gps.lqg(dyn, C, c, prev, torch.tensor([eta], dtype=torch.float64), None, 0.0)
    assert ok.all()
    # scalar Riccati for cost 1/2 q x_t^2 (t = 0..T) + 1/2 eta a_t^2, dynamics x' = x + a, all divided by eta
    V = q / eta
    for t in reversed(range(T)):
        quu, qux, qxx = V + 1.0, V, q / eta + V
        K = -qux / quu
        assert abs(float(ctrl.K[0, t, 0, 0]) - K) < 1e-12
        assert abs(float(ctrl.G[0, t, 0, 0]) - 1 / quu) < 1e-12
        V = qxx - qux * qux / quu
    # a huge eta returns the previous controller
    far, _ = gps.lqg(dyn, C, c, prev, torch.tensor([1e12], dtype=torch.float64), None, 0.0)
    assert torch.allclose(far.K, prev.K, atol=1e-9) and torch.allclose(far.G, prev.G, atol=1e-9)


def test_kl_divergence_matches_monte_carlo():
    torch.manual_seed(0)
    P, T, ds, m = 1, 1, 2, 2
    new = gps.Controller(torch.randn(P, T, m, ds, dtype=torch.float64), torch.randn(P, T, m, dtype=torch.float64),
                         torch.tensor([[[[0.5, 0.1], [0.1, 0.3]]]], dtype=torch.float64))
    old = gps.Controller(torch.randn(P, T, m, ds, dtype=torch.float64), torch.randn(P, T, m, dtype=torch.float64),
                         torch.tensor([[[[1.0, -0.2], [-0.2, 0.8]]]], dtype=torch.float64))
    mu = torch.randn(P, T + 1, ds, dtype=torch.float64)
    L = torch.randn(ds, ds, dtype=torch.float64)
    sigma = (L @ L.T + 0.1 * torch.eye(ds, dtype=torch.float64)).expand(P, T + 1, ds, ds)
    exact = gps.kl_divergence(new, old, mu, sigma)
    N = 400_000
    s = torch.distributions.MultivariateNormal(mu[0, 0], sigma[0, 0]).sample((N,))
    pn = torch.distributions.MultivariateNormal(s @ new.K[0, 0].T + new.k[0, 0], new.G[0, 0])
    po = torch.distributions.MultivariateNormal(s @ old.K[0, 0].T + old.k[0, 0], old.G[0, 0])
    a = pn.sample()
    mc = (pn.log_prob(a) - po.log_prob(a)).mean()
    assert abs(float(exact) - float(mc)) < 0.03 * float(exact) + 0.02


def test_kl_constrained_update_respects_its_bound_and_improves_the_cost():
    T = 6
    dyn, C, c, prev, q = scalar_problem(T)
    s0 = torch.tensor([[3.0]], dtype=torch.float64)
    for epsilon in (0.05, 0.5, 5.0):
        ctrl, eta, kl = gps.c_step(dyn, C, c, prev, s0, epsilon, None, 0.0, steps=30)
        assert float(kl) <= epsilon * (1 + 1e-6)
        assert float(kl) > 0.9 * epsilon  # the bound is active: the unconstrained optimum is far from N(0, 1)
        mu, _ = gps.forward(dyn, ctrl, s0)
        assert float((mu[0, :, 0] ** 2).sum()) < 9.0 * (T + 1)  # expected cost below that of standing still


def neural_net_training_run():
    """The neural_net config of the run that failed (the recorded one at that time: H = 3) and its training
    functions for seed 0 (as ``experiment.run_job`` draws them)."""
    _, config = registry.load_config(registry.get("learning_to_optimize"), "neural_net")
    cfg = experiment.family_config(config, "neural_net")
    cfg["history"] = 3
    train = problems.sample("neural_net", cfg["problems"]["train"], np.random.default_rng([0, 1]))
    return cfg, train


@pytest.mark.slow
def test_diverged_samples_are_flagged_and_kept_out_of_the_dynamics_fit():
    # the first GPS samples of the recorded neural_net run: per-function momentum tuned without noise sits at the
    # edge of stability on a few functions, and the exploration noise pushes some runs over it (objective ~1e8)
    cfg, train = neural_net_training_run()
    g, H, T, n = cfg["gps"], cfg["history"], cfg["gps"]["horizon"], train.dim
    steps, decays = baselines.tune_momentum_per_problem(train, T, g["momentum_steps"], g["momentum_decays"])
    ctrl = experiment.momentum_controller(steps, decays, n, H, T, g["init_std"])
    gen = torch.Generator().manual_seed(0)
    states, actions, values = rollout_linear_gaussian(train, ctrl.K, ctrl.k, ctrl.G, g["samples"], H, gen)
    bad = gps.diverged_samples(states, values, g["divergence"])
    by_hand = ~(torch.isfinite(values).all(-1) & torch.isfinite(states).all(-1).all(-1)
                & (values.amax(-1) <= g["divergence"] * values[..., 0].clamp_min(1.0)))
    assert torch.equal(bad, by_hand)
    assert 0 < int(bad.sum()) < 10 and float(values[bad].max()) > 1e6  # a few runs, and far off
    xuy = torch.cat([states[:, :, :-1], actions, states[:, :, 1:]], -1)
    with_bad = xuy.reshape(-1, xuy.shape[-1])
    kept = xuy[~bad].reshape(-1, xuy.shape[-1])
    pick = torch.randperm(kept.shape[0], generator=gen)[:g["gmm_points"]]
    gmm = gps.fit_gmm(kept[pick], g["gmm_components"], g["gmm_iterations"], gen)
    dyn = gps.fit_dynamics(torch.where(bad[..., None, None], 0.0, states), torch.where(bad[..., None, None], 0.0, actions),
                           gmm, g["prior_strength"], keep=~bad)
    assert all(torch.isfinite(t).all() for t in (dyn.Fm, dyn.fv, dyn.W))
    # the kept samples alone set the fit: the condition with a diverged run fits as if it had never been sampled
    p = int(bad.any(1).nonzero()[0, 0])
    own = gps.fit_dynamics(states[p:p + 1, ~bad[p]], actions[p:p + 1, ~bad[p]], gmm, g["prior_strength"])
    assert torch.allclose(dyn.Fm[p], own.Fm[0]) and torch.allclose(dyn.W[p], own.W[0])
    # a diverged row in the mixture's data is an error that says what to do, not a NaN covariance
    with pytest.raises(NonFiniteError, match="diverged trajectories must be dropped"):
        gps.fit_gmm(torch.cat([kept[:500], torch.full_like(kept[:1], float("inf"))]), 2, 2, gen)
    assert float(with_bad.abs().max()) > 1e3 * float(kept.abs().max())  # what the old fit was given


@pytest.mark.slow
def test_neural_net_gps_survives_the_samples_that_broke_its_recorded_run():
    # the recorded neural_net run failed here in its second GPS iteration (the dynamics prior's covariance was NaN)
    cfg, train = neural_net_training_run()
    cfg["gps"]["iterations"] = 2
    policy, rows = experiment.learn_optimizer(cfg, train, 0)
    assert rows[0]["diverged_samples"] > 0  # the cause is there, and reported
    assert all(np.isfinite(r["kl"]) and np.isfinite(r["policy_loss"]) for r in rows)
    assert rows[-1]["policy_train_mean_objective"] < float(train.value(train.x0[:, None]).mean())
    assert all(torch.isfinite(p).all() for p in policy.parameters())


def test_learned_optimiser_is_deterministic_under_a_seed():
    _, config = registry.load_config(registry.get("learning_to_optimize"), "smoke")
    cfg = experiment.family_config(config, "logistic")
    train = problems.sample("logistic", 4, np.random.default_rng(0))
    test = problems.sample("logistic", 3, np.random.default_rng(1))
    runs = []
    for seed in (0, 0, 1):
        policy, rows = experiment.learn_optimizer(cfg, train, seed)
        runs.append((run_policy(policy, test, 10, cfg["history"]), rows,
                     [p.detach().clone() for p in policy.parameters()]))
    assert torch.equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][2], runs[1][2]))
    assert not torch.equal(runs[0][0], runs[2][0])


@pytest.mark.parametrize("device", DEVICES)
def test_smoke_run_on_every_device(device, tmp_path):
    repro = registry.get("learning_to_optimize")
    _, config = registry.load_config(repro, "smoke")
    ctx = registry.RunContext(config_name="smoke", device=device, work_dir=tmp_path, write_record=False,
                              progress=False, fresh=True)
    metrics = repro.run(config, ctx)
    for family in problems.FAMILIES:
        own = config.get("per_family", {}).get(family, {}).get("baselines", {})
        scipy = own.get("scipy", config["baselines"]["scipy"])  # a family may drop the scipy references
        for name in ("learned", "gd", "momentum", "cg", "lbfgs", *scipy):
            assert f"{family}_{name}_final" in metrics
        assert np.isfinite(metrics[f"{family}_gd_final"])
    assert list((tmp_path / "learning_to_optimize" / "smoke").rglob("*.pt"))  # jobs are cached for resume


def test_cached_jobs_are_read_safely_and_records_say_which_commit_computed_them(tmp_path):
    import torch

    from reproductions.learning_to_optimize import experiment, report

    repro = registry.get("learning_to_optimize")
    _, config = registry.load_config(repro, "smoke")
    config["families"] = ["logistic"]
    ctx = registry.RunContext(config_name="smoke", work_dir=tmp_path, root=tmp_path, progress=False,
                              command="mlatlas repro run learning_to_optimize --config smoke")
    computed, device = experiment.run_all(config, ctx)
    for path in (tmp_path / "learning_to_optimize").rglob("*.pt"):  # as if an earlier commit had filled the cache
        torch.save({**torch.load(path, weights_only=True), "commit": "abc1234"}, path)
    cached, _ = experiment.run_all(config, ctx)
    assert [r.curves for r in cached] == [r.curves for r in computed]
    fresh = report.write_all(config, ctx, computed, device, results_dir=tmp_path / "fresh")
    again = report.write_all(config, ctx, cached, device, results_dir=tmp_path / "again")
    notes = [yaml.safe_load(p.read_text())["notes"] for p in (*fresh, *again) if p.suffix == ".yaml"]
    assert len(notes) == 2 * len([p for p in again if p.suffix == ".yaml"]) > 0
    assert not any("read back from the run's cache" in n for n in notes[:len(notes) // 2])
    assert all("computed at commit abc1234 and read back" in n for n in notes[len(notes) // 2:])
