"""BMG reproduction: the grid world's dynamics, the meta-gradients (against finite differences, a per-seed loop and
the paper's reduction of BMG to the K-step meta-gradient), the learning agent, records, and a smoke run on every
device."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import yaml

from reproductions.bootstrapped_meta_learning import agent, experiment, method, report
from reproductions.bootstrapped_meta_learning.env import N_ACTIONS, TwoColours
from reproductions.core import registry
from reproductions.core.runtime import available_devices

UP, DOWN, LEFT, RIGHT = range(4)
NAME = "bootstrapped_meta_learning"


def make_env(n=1, swap_every=100_000, seed=0):
    return TwoColours(n, np.random.default_rng(seed), size=5, swap_every=swap_every)


# ---------------------------------------------------------------- environment


def test_moves_walls_and_step_reward():
    env = make_env()
    env.pos[0] = [0, 24, 23]  # agent top-left, objects far away
    for action, where in [(UP, 0), (LEFT, 0), (RIGHT, 1), (DOWN, 6), (DOWN, 11), (LEFT, 10), (LEFT, 10), (UP, 5)]:
        assert env.step(np.array([action]))[0] == pytest.approx(-0.04)
        assert env.pos[0, 0] == where
    env.pos[0] = [24, 0, 1]
    env.step(np.array([DOWN]))
    env.step(np.array([RIGHT]))
    assert env.pos[0, 0] == 24


def test_collecting_rewards_and_respawn_to_free_cells():
    env = make_env(n=500, seed=1)
    env.pos[:] = [6, 7, 11]  # object 0 right of the agent, object 1 below it
    r = env.step(np.full(500, RIGHT))
    assert np.all(r == 1.0)
    assert np.all(env.pos[:, 0] == 7)
    assert np.all((env.pos[:, 1] != 7) & (env.pos[:, 1] != 11))  # never onto the agent or the other object
    assert set(env.pos[:, 1]) == set(range(25)) - {7, 11}  # every free cell is reachable
    assert np.all(env.pos[:, 2] == 11)  # the other object stays
    env.pos[:] = [6, 0, 11]
    r = env.step(np.full(500, DOWN))
    assert np.all(r == -1.0)
    assert np.all((env.pos[:, 2] != 11) & (env.pos[:, 2] != 0))


def test_collected_marks_the_copies_that_collected_an_object():
    env = make_env(n=3)
    env.pos[:] = [[6, 7, 11], [6, 0, 1], [6, 24, 5]]  # object 0 right of copy 0; object 1 left of copy 2
    env.step(np.array([RIGHT, RIGHT, LEFT]))
    assert env.collected.tolist() == [True, False, True]
    env.pos[:] = [[0, 24, 23]] * 3
    env.step(np.array([RIGHT, RIGHT, RIGHT]))
    assert not env.collected.any()


def test_returns_end_after_a_collection_and_bootstrap_otherwise():
    rewards = torch.tensor([[-0.04, 1.0, -0.04, -0.04]], dtype=torch.float64)
    ends = torch.tensor([[0.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    boot, g = torch.tensor([2.0], dtype=torch.float64), 0.9
    got = agent.returns(rewards, boot, g, ends)[0].tolist()
    later = [-0.04 + g * (-0.04 + g * 2.0), -0.04 + g * 2.0]
    assert got == pytest.approx([-0.04 + g * 1.0, 1.0] + later)  # nothing after the collection enters
    continuing = agent.returns(rewards, boot, g)[0].tolist()
    assert continuing[1] == pytest.approx(1.0 + g * later[0])


def test_rewards_swap_every_swap_every_steps():
    env = make_env(swap_every=3)
    got = []
    for _ in range(7):
        env.pos[0] = [6, 7, 1]  # object 0 is one step right, every time
        got.append(env.step(np.array([RIGHT]))[0])
    assert got == [1.0, 1.0, 1.0, -1.0, -1.0, -1.0, 1.0]


def test_observation_is_one_hot_rows_and_columns():
    env = make_env(n=2)
    env.pos[:] = [[7, 0, 24], [12, 3, 20]]
    obs = env.observe().reshape(2, 3, 2, 5)
    assert obs.sum() == 12
    assert obs[0, 0, 0].argmax() == 1 and obs[0, 0, 1].argmax() == 2  # cell 7: row 1, column 2
    assert obs[0, 2, 0].argmax() == 4 and obs[0, 2, 1].argmax() == 4
    assert obs[1, 1, 0].argmax() == 0 and obs[1, 1, 1].argmax() == 3
    with pytest.raises(ValueError, match="actions"):
        env.step(np.array([0, 4]))


def test_actions_are_sampled_from_the_policy():
    gen = torch.Generator().manual_seed(0)
    x = agent.init_params(2, 30, 8, N_ACTIONS, gen, torch.float64)
    x["pi_b2"] = torch.tensor([[2.0, 0.0, -1.0, 0.5], [0.0, 0.0, 0.0, 3.0]], dtype=torch.float64)
    obs = np.zeros((2, 30))
    probs = torch.softmax(agent.policy_logits(x, torch.as_tensor(obs).unsqueeze(1)).squeeze(1), -1).numpy()
    rng = np.random.default_rng(0)
    draws = np.stack([agent.act(agent.acting_weights(x), obs, rng) for _ in range(20_000)])
    freq = np.stack([(draws == a).mean(0) for a in range(N_ACTIONS)], 1)
    np.testing.assert_allclose(freq, probs, atol=0.015)


# ---------------------------------------------------------------- meta-gradients

S, K = 3, 2


def rollout(env, x, rng, T=6, dtype=torch.float64):
    obs, acts, rews = [env.observe()], [], []
    for _ in range(T):
        acts.append(agent.act(agent.acting_weights(x), obs[-1], rng))
        rews.append(env.step(acts[-1]))
        obs.append(env.observe())
    return agent.Rollout(torch.as_tensor(np.stack(obs, 1), dtype=dtype), torch.as_tensor(np.stack(acts, 1)),
                         torch.as_tensor(np.stack(rews, 1), dtype=dtype))


@pytest.fixture(scope="module")
def problem():
    """Float64 agents, meta-learners and real rollouts: K for the unroll, one more for f / the target."""
    env = make_env(n=S, seed=3)
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    x0 = {k: v.requires_grad_(True) for k, v in agent.init_params(S, env.obs_dim, 8, N_ACTIONS, gen,
                                                                     torch.float64).items()}
    w = method.init_meta(S, 4, 5, 0.3, gen, torch.float64)
    w["w2"] = torch.randn(w["w2"].shape, generator=gen, dtype=torch.float64)  # a meta-learner that depends on input
    w = {k: v.requires_grad_(True) for k, v in w.items()}
    hp = method.Hyper(lr=0.5, target_lr=0.3, meta_entropy=0.01)
    rolls, feats, x = [], [], x0
    for _ in range(K + 2):
        rolls.append(rollout(env, x, rng))
        feats.append(torch.randn(S, 4, generator=gen, dtype=torch.float64))
        x = method.inner_step(x, rolls[-1], method.entropy_weight(w, feats[-1]).detach(), hp, create_graph=False)
    return x0, w, hp, rolls, feats


def flat(grads):
    return torch.cat([g.flatten() for g in grads.values()])


def test_bmg_with_l1_and_euclidean_matching_is_the_k_step_meta_gradient_times_the_target_step(problem):
    """Paper, Section 3: with L = 1, target x_K - beta grad f(x_K) and squared Euclidean matching, the BMG
    meta-gradient is beta times the K-step MG meta-gradient."""
    x0, w, hp, rolls, feats = problem
    mg = method.meta_gradient(method.mg_meta_loss(w, x0, rolls[:K], feats[:K], rolls[K], hp), w)
    xk = method.unroll(w, x0, rolls[:K], feats[:K], hp)
    target = method.bootstrap_target(w, xk, [], [], rolls[K], hp)
    assert not any(t.requires_grad for t in target.values())  # gradients stop at the target
    bmg = method.meta_gradient(method.bmg_meta_loss(w, x0, rolls[:K], feats[:K], target, rolls[K], hp, "euclidean"), w)
    assert flat(mg).abs().max() > 1e-6  # a real, non-zero meta-gradient
    torch.testing.assert_close(flat(bmg), hp.target_lr * flat(mg), rtol=1e-9, atol=1e-12)


def test_bmg_with_kl_matching_or_longer_targets_is_not_the_meta_gradient(problem):
    x0, w, hp, rolls, feats = problem
    mg = flat(method.meta_gradient(method.mg_meta_loss(w, x0, rolls[:K], feats[:K], rolls[K], hp), w))
    xk = method.unroll(w, x0, rolls[:K], feats[:K], hp)
    for kind, extra in [("kl", 0), ("euclidean", 1)]:
        target = method.bootstrap_target(w, xk, rolls[K:K + extra], feats[K:K + extra], rolls[K + extra], hp)
        g = flat(method.meta_gradient(method.bmg_meta_loss(w, x0, rolls[:K], feats[:K], target, rolls[K + extra],
                                                           hp, kind), w))
        cosine = float(g @ mg / (g.norm() * mg.norm()))
        assert abs(cosine) < 0.999, (kind, extra, cosine)


def directional_fd(loss_of, w, direction, h=1e-6):
    plus = {k: (v + h * direction[k]).detach() for k, v in w.items()}
    minus = {k: (v - h * direction[k]).detach() for k, v in w.items()}
    return (float(loss_of(plus).detach()) - float(loss_of(minus).detach())) / (2 * h)


@pytest.mark.parametrize("kind", ["mg", "bmg_kl", "bmg_euclidean"])
def test_meta_gradients_match_finite_differences_in_float64(problem, kind):
    x0, w, hp, rolls, feats = problem
    if kind == "mg":
        def loss_of(ww):
            return method.mg_meta_loss(ww, x0, rolls[:K], feats[:K], rolls[K], hp)
    else:
        xk = method.unroll(w, x0, rolls[:K], feats[:K], hp)
        target = method.bootstrap_target(w, xk, rolls[K:K + 1], feats[K:K + 1], rolls[K + 1], hp)  # L = 2

        def loss_of(ww):
            return method.bmg_meta_loss(ww, x0, rolls[:K], feats[:K], target, rolls[K + 1], hp, kind[4:])
    wg = {k: v.detach().requires_grad_(True) for k, v in w.items()}
    grad = method.meta_gradient(loss_of(wg), wg)
    gen = torch.Generator().manual_seed(7)
    for _ in range(3):
        d = {k: torch.randn(v.shape, generator=gen, dtype=torch.float64) for k, v in w.items()}
        analytic = float(sum((grad[k] * d[k]).sum() for k in w))
        assert analytic == pytest.approx(directional_fd(loss_of, w, d), rel=1e-5, abs=1e-9)


def test_batched_meta_gradient_equals_a_per_seed_loop(problem):
    x0, w, hp, rolls, feats = problem
    xk = method.unroll(w, x0, rolls[:K], feats[:K], hp)
    target = method.bootstrap_target(w, xk, [], [], rolls[K], hp)
    batched = method.meta_gradient(method.bmg_meta_loss(w, x0, rolls[:K], feats[:K], target, rolls[K], hp), w)

    def pick(tree, i):
        return {k: v[i:i + 1].detach().requires_grad_(v.requires_grad) for k, v in tree.items()}

    def pick_roll(r, i):
        return r.seed(i)

    for i in range(S):
        wi = pick(w, i)
        loss = method.bmg_meta_loss(wi, pick(x0, i), [pick_roll(r, i) for r in rolls[:K]], [f[i:i + 1] for f in feats[:K]],
                                    {k: v[i:i + 1] for k, v in target.items()}, pick_roll(rolls[K], i), hp)
        one = method.meta_gradient(loss, wi)
        for k in w:
            torch.testing.assert_close(one[k], batched[k][i:i + 1], rtol=1e-10, atol=1e-12)


def test_unroll_replays_the_agents_own_updates(problem):
    x0, w, hp, rolls, feats = problem
    x = x0
    for r, f in zip(rolls[:K], feats[:K]):
        x = method.inner_step(x, r, method.entropy_weight(w, f).detach(), hp, create_graph=False)
    replay = method.unroll(w, x0, rolls[:K], feats[:K], hp)
    for k in x:
        torch.testing.assert_close(replay[k].detach(), x[k].detach(), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- agent, runs and records


def config_of(name):
    return registry.load_config(registry.get(NAME), name)[1]


def random_policy_reward(n, steps, seed=0):
    """Mean reward per step of the uniformly random policy in the same world (the baseline a learner must beat)."""
    env, rng, total = make_env(n=n, seed=seed), np.random.default_rng(seed), 0.0
    for _ in range(steps):
        total += env.step(rng.integers(0, N_ACTIONS, n)).mean()
    return total / steps


def test_the_fixed_agent_learns_the_task_and_relearns_it_after_the_swap():
    """The recorded agent (default config, fixed entropy weight) on the real grid world, the rewards swapping after
    24,000 steps: by the end of each task it collects far more than a random policy. Before returns ended at
    each collection, the agent stopped collecting anything after the first swap (-0.04 per step)."""
    config = config_of("default")
    config["seeds"] = 3
    config["env"]["swap_every"] = 24_000
    config["run"].update(steps=48_000, log_every=8_000)
    r = experiment.run_agent(experiment.Spec("fixed", "fixed", entropy=0.1), config, torch.device("cpu"))
    rand = random_policy_reward(3, 8_000)
    reward = np.asarray(r.reward)  # [window, seed]
    end_a, after_swap, end_b = reward[2].mean(), reward[3].mean(), reward[5].mean()
    assert end_a > rand + 0.06, (rand, reward.mean(1))
    assert after_swap < end_a - 0.05, (rand, reward.mean(1))  # the swap hurts: it chases the now-bad object
    assert end_b > rand + 0.04 and np.all(reward[5] > rand), (rand, reward.mean(1))


def test_bad_agent_entries_are_reported_by_name():
    with pytest.raises(ValueError, match="agents: x: method"):
        experiment.Spec.parse({"name": "x", "method": "maml"}, 0.1)
    with pytest.raises(ValueError, match="agents: y: matching"):
        experiment.Spec.parse({"name": "y", "method": "bmg", "matching": "l1"}, 0.1)


DEVICES = [pytest.param(d, marks=pytest.mark.skipif(d not in available_devices(), reason=f"no {d} device here"))
           for d in ("cpu", "cuda", "mps")]


@pytest.mark.parametrize("device", DEVICES)
def test_smoke_run_on_every_device(device, tmp_path):
    repro = registry.get(NAME)
    _, config = registry.load_config(repro, "smoke")
    ctx = registry.RunContext("smoke", device=device, work_dir=tmp_path, root=tmp_path, write_record=False,
                              progress=False, fresh=True)
    metrics = repro.run(config, ctx)
    assert len(metrics) == 2 * len(config["agents"])
    assert all(np.isfinite(v) for v in metrics.values())
    moved = [metrics[f"{a['name']}_final_entropy_weight"] for a in config["agents"] if a["method"] != "fixed"]
    assert all(v != pytest.approx(config["meta"]["init_entropy"], abs=1e-7) for v in moved)  # meta-learners learn


def test_records_validate_and_state_the_claim(tmp_path):
    from mlatlas import records

    repro = registry.get(NAME)
    _, config = registry.load_config(repro, "smoke")
    config["run"]["workers"] = 2  # the jobs run in worker processes
    ctx = registry.RunContext("smoke", work_dir=tmp_path, root=tmp_path, command="mlatlas repro run x", progress=False)
    specs, results, device = experiment.run_all(config, ctx)
    written = report.write_all(config, ctx, specs, results, device, results_dir=tmp_path / "results")
    assert len(written) == len(specs) + len(config["claims"]) + 2
    for path in written[:-2]:
        record = records.ResultRecord.model_validate(yaml.safe_load(path.read_text()))
        assert record.n_seeds == config["seeds"] and record.protocol["steps-per-seed"] == 960
    claim = yaml.safe_load(written[len(specs)].read_text())
    assert "Verdict:" in claim["notes"] and claim["metric"].startswith("difference")
    assert "| claim |" in written[-2].read_text()
    assert "read back from the run's cache" not in claim["notes"]  # computed by this run: no provenance note
    # Jobs read back from a cache that an earlier commit filled: the records say where the numbers were computed.
    again = report.write_all(config, ctx, specs, [dataclasses.replace(r, commit="bc6fe05") for r in results], device,
                             results_dir=tmp_path / "again")
    for path in again[:-2]:
        assert "computed at commit bc6fe05 and read back" in yaml.safe_load(path.read_text())["notes"]
