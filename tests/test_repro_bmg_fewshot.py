"""BMG's few-shot (MAML-style) experiment on Omniglot: the MG and BMG meta-gradients on a small float64 copy of MAML's
strided network and real Omniglot episodes (against central finite differences, against the project's MAML and a
per-task loop, the paper's reduction of BMG to MG and where it stops holding, the stopped gradient at the target),
the config checks, the training seeds (their jobs are those of single-seed runs; statistics over seeds against hand
computation), a smoke run on every available device, and the records of miniature one- and two-seed runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from _data import FULL_ARCHIVES, OMNIGLOT, VINYALS_SPLITS, standard_omniglot_folder
from mlatlas.cli import main
from mlatlas.records import ResultRecord, verdict
from reproductions.bootstrapped_meta_learning import fewshot
from reproductions.core import registry
from reproductions.core.functional import meta_gradient as core_meta_gradient
from reproductions.core.runtime import available_devices
from reproductions.core.tasks import EpisodeSampler, TaskBatch
from reproductions.datasets import omniglot as og
from reproductions.datasets import omniglot_standard as std
from reproductions.datasets.omniglot_benchmark import Pool, conv4, make_episode
from reproductions.omniglot_maml.method import OmniglotMAML

NAME = "bootstrapped_meta_learning"
ROOT = Path(__file__).resolve().parents[1]
SMALL = OMNIGLOT / "images_background_small1.zip"
needs_small = pytest.mark.skipif(not SMALL.exists(), reason=f"{SMALL} is absent (../shared/data/omniglot)")
needs_full = pytest.mark.skipif(not all((OMNIGLOT / n).exists() for n in FULL_ARCHIVES) or not VINYALS_SPLITS.is_dir(),
                                reason=f"the full Omniglot archives and the Vinyals split are not in {OMNIGLOT}")
LR = 0.4


@pytest.fixture(scope="module")
def pool() -> Pool:
    return Pool.from_characters(og.load_images(SMALL.name, OMNIGLOT), rotations=False)


def episodes(pool: Pool, n: int, n_query: int = 2, seed: int = 0) -> list:
    """``n`` real 5-way 1-shot episodes, images in float64."""
    sampler = EpisodeSampler(pool.labels, 5, 1, n_query, np.random.default_rng(seed))
    out = []
    for _ in range(n):
        ep = make_episode(pool, sampler, "cpu")
        ep.support_x, ep.query_x = ep.support_x.double(), ep.query_x.double()
        out.append(ep)
    return out


def tiny_net(seed: int = 0) -> nn.Module:
    """MAML's strided 4-block network with batch-statistics batch norm, 4 channels, in float64."""
    torch.manual_seed(seed)
    return nn.Sequential(conv4(4, batch_stats=True, strided=True), nn.Linear(4, 5)).double()


def params_of(model: nn.Module) -> dict:
    return {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}


def flat(grads: dict) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads.values()])


def grad_of(loss_fn, params: dict) -> dict:
    loss = loss_fn(params)
    return dict(zip(params, torch.autograd.grad(loss, list(params.values()))))


def check_against_finite_differences(loss_fn, params: dict, directions: int = 3, eps: float = 1e-6,
                                     numeric_fn=None) -> None:
    """The analytic meta-gradient of ``loss_fn`` against central differences of ``numeric_fn`` (default: the same
    function) along random directions (all parameters at once)."""
    g = flat(grad_of(loss_fn, params))
    loss_fn = numeric_fn or loss_fn
    gen = torch.Generator().manual_seed(1)
    for _ in range(directions):
        v = {k: torch.randn(p.shape, generator=gen, dtype=p.dtype) for k, p in params.items()}
        with torch.no_grad():
            plus = float(loss_fn({k: p + eps * v[k] for k, p in params.items()}))
            minus = float(loss_fn({k: p - eps * v[k] for k, p in params.items()}))
        numeric, analytic = (plus - minus) / (2 * eps), float(g @ flat(v))
        assert numeric == pytest.approx(analytic, rel=1e-5, abs=1e-8)


def cosine(a: dict, b: dict) -> float:
    a, b = flat(a), flat(b)
    return float(a @ b / (a.norm() * b.norm()))


# ---------------------------------------------------------------- meta-gradients


@needs_small
@pytest.mark.parametrize("K", [1, 2])
def test_mg_meta_gradient_against_finite_differences(pool, K):
    model, ep = tiny_net(), episodes(pool, 1)[0]
    check_against_finite_differences(lambda p: fewshot.mg_loss(model, p, ep, K, LR), params_of(model))


@needs_small
@pytest.mark.parametrize("K, L, kind", [(1, 3, "kl"), (2, 2, "kl"), (2, 3, "euclidean")])
def test_bmg_meta_gradient_against_finite_differences(pool, K, L, kind):
    """BMG's meta-gradient is that of mu(x~, x_K(w)) with the target held fixed (it is a constant): central
    differences move w in x_K(w) only, the target stays where the unperturbed w put it."""
    model, ep = tiny_net(), episodes(pool, 1)[0]
    params = params_of(model)
    target = fewshot.bootstrap_target(model, fewshot.adapted(model, params, ep, K, LR), ep, L, LR, 0.3)
    check_against_finite_differences(
        lambda p: fewshot.bmg_loss(model, p, ep, K, L, LR, 0.3, kind), params,
        numeric_fn=lambda p: fewshot.matching(model, target, fewshot.adapted(model, p, ep, K, LR), ep, kind))


@needs_small
def test_mg_is_the_projects_maml_and_a_per_task_loop(pool):
    """MG with K steps: the project's second-order MAML loss, and over a batch of tasks the core's per-task
    meta-gradient (the mean over tasks, one task at a time, as batch norm's per-task statistics need)."""
    model, eps, K = tiny_net(), episodes(pool, 3), 2
    maml = OmniglotMAML(first_order=False)
    maml.inner_lr, maml.train_steps = LR, K
    ours = [fewshot.mg_loss(model, fewshot.parameters_of(model), ep, K, LR).item() for ep in eps]
    assert ours == pytest.approx([maml.loss(model, ep).item() for ep in eps], rel=1e-12)

    params = params_of(model)
    mean = [grad_of(lambda p, ep=ep: fewshot.mg_loss(model, p, ep, K, LR), params) for ep in eps]
    mean = {k: sum(g[k] for g in mean) / len(eps) for k in params}
    tasks = TaskBatch(*(torch.stack(t) for t in zip(*((e.support_x, e.support_y, e.query_x, e.query_y)
                                                      for e in eps))))
    leaves = params_of(model)
    core_meta_gradient(model, leaves, tasks, torch.nn.functional.cross_entropy, K, LR)
    for k in params:
        torch.testing.assert_close(mean[k], leaves[k].grad, rtol=1e-10, atol=1e-12)


@needs_small
@pytest.mark.parametrize("K", [1, 2])
def test_the_reduction_bmg_with_one_step_and_euclidean_matching_is_target_lr_times_mg(pool, K):
    """With L = 1 (the target is one gradient step of size target_lr on the query loss from x_K) and half the
    squared Euclidean distance, grad_w mu = (dx_K/dw)^T target_lr grad f(x_K) = target_lr grad_w f(x_K(w))."""
    model, ep, target_lr = tiny_net(), episodes(pool, 1)[0], 0.3
    params = params_of(model)
    mg = grad_of(lambda p: fewshot.mg_loss(model, p, ep, K, LR), params)
    bmg = grad_of(lambda p: fewshot.bmg_loss(model, p, ep, K, 1, LR, target_lr, "euclidean"), params)
    a, b = flat(bmg), target_lr * flat(mg)
    assert float((a - b).norm() / b.norm()) < 1e-9
    assert float(b.norm()) > 1e-3  # a real gradient, not two zeros


@needs_small
@pytest.mark.parametrize("L, kind", [(1, "kl"), (3, "kl"), (3, "euclidean")])
def test_kl_matching_or_a_longer_target_is_not_parallel_to_mg(pool, L, kind):
    model, ep = tiny_net(), episodes(pool, 1)[0]
    params = params_of(model)
    mg = grad_of(lambda p: fewshot.mg_loss(model, p, ep, 1, LR), params)
    bmg = grad_of(lambda p: fewshot.bmg_loss(model, p, ep, 1, L, LR, 0.3, kind), params)
    assert cosine(bmg, mg) < 0.999


@needs_small
def test_the_target_carries_no_gradient(pool):
    """The target is a constant: no graph, and the BMG meta-gradient equals that of the matching function against
    a target computed beforehand from detached parameters."""
    model, ep = tiny_net(), episodes(pool, 1)[0]
    params = params_of(model)
    x_k = fewshot.adapted(model, params, ep, 2, LR)
    target = fewshot.bootstrap_target(model, x_k, ep, 3, LR, 0.3)
    assert all(not t.requires_grad and t.grad_fn is None for t in target.values())
    assert any((target[k] - x_k[k].detach()).abs().max().item() > 1e-6 for k in target)  # it did move
    frozen = fewshot.bootstrap_target(model, fewshot.adapted(model, {k: v.detach() for k, v in params.items()},
                                                              ep, 2, LR), ep, 3, LR, 0.3)
    direct = grad_of(lambda p: fewshot.bmg_loss(model, p, ep, 2, 3, LR, 0.3, "kl"), params)
    against_constant = grad_of(lambda p: fewshot.matching(model, frozen, fewshot.adapted(model, p, ep, 2, LR), ep,
                                                          "kl"), params)
    for k in params:
        torch.testing.assert_close(direct[k], against_constant[k], rtol=1e-12, atol=1e-14)


@needs_small
def test_the_target_is_l_minus_one_support_steps_then_a_query_step(pool):
    """The target by hand: L - 1 plain SGD steps on the support loss, then one of target_lr on the query loss."""
    model, ep = tiny_net(), episodes(pool, 1)[0]
    x = {k: v.detach() for k, v in model.named_parameters()}
    target = fewshot.bootstrap_target(model, x, ep, 3, LR, 0.3)
    ce = torch.nn.functional.cross_entropy

    def step(p, images, labels, lr):
        p = {k: v.detach().requires_grad_(True) for k, v in p.items()}
        loss = ce(torch.func.functional_call(model, p, (images,)), labels)
        return {k: v - lr * g for (k, v), g in zip(p.items(), torch.autograd.grad(loss, list(p.values())))}

    for _ in range(2):
        x = step(x, ep.support_x, ep.support_y, LR)
    x = step(x, ep.query_x, ep.query_y, 0.3)
    for k in x:
        torch.testing.assert_close(target[k], x[k].detach(), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- configs


def test_configs_dispatch_and_refuse_bad_agents_in_one_line():
    repro = registry.get(NAME)
    assert "experiment" not in registry.load_config(repro, "default")[1]  # the grid world stays the default
    _, config = registry.load_config(repro, "fewshot")
    assert config["experiment"] == "fewshot" and config["data"]["split"] == "vinyals_trainval"
    agents = fewshot.agents_of(config)
    assert [a.name for a in agents] == ["mg_k1", "bmg_k1_l5", "mg_k5"]
    assert fewshot.test_steps(agents[0], config) == 3 and fewshot.test_steps(agents[2], config) == 5
    jobs = [fewshot.job_config(config, a)["method"] for a in agents]
    assert [j["train_steps"] for j in jobs] == [1, 1, 5] and jobs[1]["L"] == 5 and "target_lr" not in jobs[0]
    assert len({registry.fingerprint(j) for j in jobs}) == 3  # each agent has its own checkpoint
    for bad, words in [({"name": "x", "method": "maml"}, "method must be one of mg, bmg"),
                       ({"name": "x", "method": "bmg", "L": 0}, "K and L must be integers >= 1"),
                       ({"name": "x", "method": "bmg", "matching": "l1"}, "matching must be one of"),
                       ({"name": "x", "method": "mg", "steps": 3}, "bad entry")]:
        with pytest.raises(registry.RegistryError, match=words):
            fewshot.agents_of({**config, "agents": [bad]})
    with pytest.raises(registry.RegistryError, match="claims"):
        fewshot.agents_of({**config, "claims": [["bmg_k1_l5", "nobody"]]})
    with pytest.raises(registry.RegistryError, match="experiment: 'atari'"):
        repro.run({**config, "experiment": "atari"}, registry.RunContext(config_name="x"))


# ---------------------------------------------------------------- training seeds

# The cache fingerprints of the recorded config's jobs (data_dir null: data from MLATLAS_DATA_DIR or the download),
# as the single-seed code at d290adb computed them for `--set seed=s`: the recorded seed-0 run and the seed-1/2 runs
# made with that code are read back from these caches. A config change that moves them invalidates those caches.
RECORDED_FINGERPRINTS = {
    0: {"mg_k1": "93598b534ee39ec8", "bmg_k1_l5": "590d32b8a649783c", "mg_k5": "30b077d9946f5aff"},
    1: {"mg_k1": "4b7b812c83d5ef29", "bmg_k1_l5": "83744372b66eff19", "mg_k5": "47b53d572f56c272"},
    2: {"mg_k1": "26f6782aaaa2a1bd", "bmg_k1_l5": "7b682821c84df351", "mg_k5": "7dd0a68d17251fb0"},
}


def test_each_seed_of_a_multi_seed_config_is_the_single_seed_job():
    """Seed s of `seeds: [0, 1, 2]` trains exactly the job of a config with only `seed: s` (what `--set seed=s`
    gives without `seeds`): the same job config, so the same fingerprint and cache file."""
    _, config = registry.load_config(registry.get(NAME), "fewshot")
    assert fewshot.seeds_of(config) == [0, 1, 2]
    only_seed = {k: v for k, v in config.items() if k != "seeds"}
    agents = fewshot.agents_of(config)
    for s in (0, 1, 2):
        single = registry.apply_overrides(only_seed, [f"seed={s}"])
        assert "seeds" not in single and fewshot.seeds_of(single) == [s]
        for agent in agents:
            ours = fewshot.job_config(fewshot.seed_config(config, s), agent)
            theirs = fewshot.job_config(single, agent)
            assert ours == theirs
            fp = fewshot.job_fingerprint(ours)
            assert fp == fewshot.job_fingerprint(theirs) == RECORDED_FINGERPRINTS[s][agent.name]
    # one seed of the config alone, as the README says to run it, is the same job too
    alone = registry.apply_overrides(config, ["seeds=[1]"])
    assert fewshot.seeds_of(alone) == [1]
    assert fewshot.job_fingerprint(fewshot.job_config(fewshot.seed_config(alone, 1), agents[1])) == \
        RECORDED_FINGERPRINTS[1]["bmg_k1_l5"]
    # the smoke config has no seeds: `seed` (and --set seed=N) chooses its one seed
    _, smoke = registry.load_config(registry.get(NAME), "fewshot_smoke")
    assert fewshot.seeds_of(smoke) == [0]
    assert fewshot.seeds_of(registry.apply_overrides(smoke, ["seed=3"])) == [3]
    for bad, words in [([0, 0], "repeats a seed"), (3, "a list of integer"), ([], "a list of integer"),
                       (["a"], "a list of integer")]:
        with pytest.raises(registry.RegistryError, match=words):
            fewshot.seeds_of({**config, "seeds": bad})


T2 = 4.302652729749462  # Student t, 97.5% quantile, 2 degrees of freedom (3 values)


def job(accs: list[float], train_seconds: float = 100.0, curve: list | None = None) -> dict:
    """A finished job as the run caches it (only what the statistics read)."""
    return {"accs": accs, "train_seconds": train_seconds, "eval_seconds": 2.0, "iterations": 50, "test_steps": 3,
            "device": "cpu", "commit": "abc", "curve": curve or [{"iteration": 50, "test_acc_pct": 50.0}]}


def synthetic() -> dict:
    """Three seeds of a BMG and an MG agent, three test episodes per seed (each seed its own episodes)."""
    return {
        "bmg": {0: job([80, 90, 100], 100, [{"iteration": 0, "test_acc_pct": 20.0, "train_loss": 1.0},
                                            {"iteration": 50, "test_acc_pct": 60.0}]),
                1: job([70, 80, 90], 110, [{"iteration": 0, "test_acc_pct": 30.0},
                                           {"iteration": 50, "test_acc_pct": 70.0},
                                           {"iteration": 100, "test_acc_pct": 99.0}]),
                2: job([85, 95, 90], 120, [{"iteration": 0, "test_acc_pct": 40.0},
                                           {"iteration": 50, "test_acc_pct": 80.0}])},
        "mg": {0: job([70, 90, 95], 40), 1: job([70, 70, 90], 50), 2: job([85, 85, 80], 60)},
    }


def test_statistics_over_seeds_against_hand_computation():
    results = synthetic()
    a = fewshot.aggregate(results["bmg"])
    # seed means 90, 80, 90: mean 86.67, sd 10/sqrt(3), half-width t * sd / sqrt(3) = t * 10 / 3
    assert [m for m, _ in a["per_seed"].values()] == pytest.approx([90, 80, 90])
    assert a["value"] == pytest.approx(260 / 3) and a["ci"] == pytest.approx(T2 * 10 / 3, rel=1e-9)
    assert a["per_seed"][0][1] == pytest.approx(T2 * 10 / np.sqrt(3), rel=1e-9)  # seed 0 alone: over its episodes
    assert a["train_seconds"] == pytest.approx(110) and a["total_seconds"] == pytest.approx(330 + 6)
    assert a["n_eval_tasks"] == 9 and a["episodes"] == 3
    # the curve: mean over seeds where every seed has a point (iteration 100 only in seed 1)
    assert a["curve"] == [{"iteration": 0, "test_acc_pct": pytest.approx(30.0)},
                          {"iteration": 50, "test_acc_pct": pytest.approx(70.0)}]
    # the claim: paired by episode within each seed (differences 10,0,5 / 0,10,0 / 0,10,10: means 5, 10/3, 20/3),
    # then mean 5 and half-width t * (5/3) / sqrt(3) over the three seeds' differences
    c = fewshot.claim(results, "bmg", "mg")
    assert [d for d, _ in c["per_seed"].values()] == pytest.approx([5, 10 / 3, 20 / 3])
    assert c["diff"] == pytest.approx(5) and c["ci"] == pytest.approx(T2 * 5 / 3 / np.sqrt(3), rel=1e-9)
    assert c["verdict"].startswith("supported")  # 5 - 4.14 > 0
    # not the interval of all nine episode differences pooled (that one would be narrower, 8 degrees of freedom)
    pooled = np.subtract([80, 90, 100, 70, 80, 90, 85, 95, 90], [70, 90, 95, 70, 70, 90, 85, 85, 80])
    assert c["ci"] != pytest.approx(2.306004135204 * pooled.std(ddof=1) / 3, rel=1e-3)


def test_one_seed_falls_back_to_the_interval_over_episodes():
    results = {name: {0: runs[0]} for name, runs in synthetic().items()}
    a = fewshot.aggregate(results["bmg"])
    assert a["value"] == pytest.approx(90) and a["ci"] == pytest.approx(T2 * 10 / np.sqrt(3), rel=1e-9)
    assert a["curve"] == [{"iteration": 0, "test_acc_pct": 20.0}, {"iteration": 50, "test_acc_pct": 60.0}]
    assert a["train_seconds"] == 100 and a["total_seconds"] == 102
    c = fewshot.claim(results, "bmg", "mg")  # differences 10, 0, 5: mean 5, sd 5
    assert c["diff"] == pytest.approx(5) and c["ci"] == pytest.approx(T2 * 5 / np.sqrt(3), rel=1e-9)
    assert c["verdict"].startswith("inconclusive")  # 5 - 12.4 < 0 < 5 + 12.4
    results["mg"][0]["accs"] = [70, 90]
    with pytest.raises(ValueError, match="different numbers of episodes"):
        fewshot.claim(results, "bmg", "mg")


def test_records_and_summary_of_three_seeds(tmp_path):
    """The records of synthetic three-seed results: validated, n_seeds 3, the aggregate value and interval, the
    per-seed values in the notes and the table, the seeds in the budget."""
    _, config = registry.load_config(registry.get(NAME), "fewshot")
    config = {**config, "claims": [["bmg", "mg"]]}
    agents = [fewshot.Agent("bmg", "bmg", K=1, L=5), fewshot.Agent("mg", "mg", K=1)]
    results = synthetic()
    claims = [fewshot.claim(results, "bmg", "mg")]
    ctx = registry.RunContext(config_name="fewshot", root=ROOT, command=f"mlatlas repro run {NAME} --config fewshot")
    fewshot.write_all(config, ctx, std.described("vinyals_trainval"), agents, results, claims, tmp_path)
    bmg = ResultRecord.model_validate(yaml.safe_load((tmp_path / "fewshot_bmg.yaml").read_text()))
    assert bmg.n_seeds == 3 and bmg.value == 86.67 and bmg.ci95 == round(T2 * 10 / 3, 2)
    assert bmg.n_eval_tasks == 9 and bmg.protocol["test_episodes"] == 3
    assert "3 training seeds" in bmg.budget and "(0, 1, 2)" in bmg.budget
    assert "Student t over the 3 training seeds' means" in bmg.notes
    assert "seed 0 90.00 ± 24.84, seed 1 80.00 ± 24.84, seed 2 90.00 ± 12.42" in bmg.notes
    assert "110.0 s of wall time per seed, mean over the seeds (per seed 100, 110, 120 s;" in bmg.notes
    assert bmg.environment.wall_time_s == 336.0  # the total over the seeds
    assert (tmp_path / "fewshot_bmg.csv").read_text().splitlines()[1:] == ["0,30.0", "50,70.0"]
    c = ResultRecord.model_validate(yaml.safe_load((tmp_path / "fewshot_claim_bmg_vs_mg.yaml").read_text()))
    assert c.n_seeds == 3 and c.value == 5.0 and c.ci95 == round(T2 * 5 / 3 / np.sqrt(3), 2)
    assert "Verdict: supported" in c.notes and "Student t over the 3 training seeds' differences" in c.notes
    assert "seed 0 +5.00 ± 12.42, seed 1 +3.33 ± 14.34, seed 2 +6.67 ± 14.34" in c.notes
    assert verdict(c).kind == "no paper number"
    table = (tmp_path / "fewshot_summary.md").read_text()
    assert "| agent | seed 0 | seed 1 | seed 2 | test accuracy (%), mean over seeds |" in table
    assert "| 90.00 ± 24.84 | 80.00 ± 24.84 | 90.00 ± 12.42 | 86.67 ± 14.34 | 3 | 110 | 2.20 |" in table
    assert "| bmg vs mg | +5.00 ± 12.42 | +3.33 ± " in table and "| +5.00 ± 4.14 | supported" in table
    assert (tmp_path / "fewshot_summary.png").read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------- runs


def results_snapshot() -> dict[str, float]:
    folder = ROOT / "reproductions" / NAME / "results"
    return {p.name: p.stat().st_mtime for p in folder.glob("*")} if folder.exists() else {}


@needs_full
@pytest.mark.parametrize("device", ["cpu", "cuda", "mps"])
def test_fewshot_smoke_run_on_every_available_device(device, tmp_path, capsys, monkeypatch):
    if device not in available_devices():
        pytest.skip(f"no {device} device on this machine")
    before = results_snapshot()
    folder = standard_omniglot_folder(tmp_path)
    monkeypatch.setenv(og.BASE_URL_ENV, "http://127.0.0.1:9")  # offline: only the folder can supply data
    code = main(["repro", "run", NAME, "--config", "fewshot_smoke", "--data-dir", str(folder), "--device", device,
                 "--work-dir", str(tmp_path / "runs"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    for name in ("mg_k1", "bmg_k1_l2", "bmg_k2_l1_euclid"):
        assert f"{name}_acc_pct:" in out and f"{name}_train_seconds:" in out
        assert (tmp_path / "runs" / NAME / "fewshot_smoke" / f"fewshot_{name}_seed0.pt").exists()
    assert "bmg_k1_l2_minus_mg_k1_acc_pct:" in out
    assert results_snapshot() == before  # a smoke run writes no record


def miniature_setup(tmp_path, monkeypatch) -> Path:
    """Records go to a temporary folder; the data is the standard miniature Omniglot folder. Returns the records'
    folder."""
    out = tmp_path / "results"
    monkeypatch.setattr(fewshot, "RESULTS_DIR", out)
    monkeypatch.setenv("MLATLAS_DATA_DIR", str(tmp_path))
    standard_omniglot_folder(tmp_path).rename(tmp_path / "omniglot")
    return out


@needs_full
def test_records_summary_and_cache_of_a_miniature_run(tmp_path, monkeypatch):
    out = miniature_setup(tmp_path, monkeypatch)
    name, config = registry.load_config(registry.get(NAME), "fewshot_smoke")
    ctx = registry.RunContext(config_name=name, work_dir=tmp_path / "runs", root=ROOT, progress=False,
                              command=f"mlatlas repro run {NAME} --config fewshot_smoke")
    metrics = fewshot.run(config, ctx)
    stems = {p.stem for p in out.glob("*.yaml")}
    assert stems == {"fewshot_smoke_mg_k1", "fewshot_smoke_bmg_k1_l2", "fewshot_smoke_bmg_k2_l1_euclid",
                     "fewshot_smoke_claim_bmg_k1_l2_vs_mg_k1"}
    for path in out.glob("*.yaml"):
        record = ResultRecord.model_validate(yaml.safe_load(path.read_text()))
        assert verdict(record).kind == "no paper number"
        assert record.protocol["test_way"] == 5 and record.protocol["test_shot"] == 1
        assert record.protocol["test_queries"] == 15 and record.protocol["test_episodes"] == 3
        assert record.protocol["train_updates"] == 2 and record.protocol["episodes_per_update"] == 2
        assert record.protocol["test_characters"] == 423 and record.protocol["train_characters"] == 1200
    bmg = yaml.safe_load((out / "fewshot_smoke_bmg_k1_l2.yaml").read_text())
    assert bmg["protocol"]["method_target_steps"] == 2 and bmg["protocol"]["method_matching"] == "kl"
    assert "s of wall time" in bmg["notes"] and bmg["curve"] == "fewshot_smoke_bmg_k1_l2.csv"
    claim = yaml.safe_load((out / "fewshot_smoke_claim_bmg_k1_l2_vs_mg_k1.yaml").read_text())
    assert claim["value"] == pytest.approx(round(metrics["bmg_k1_l2_minus_mg_k1_acc_pct"], 2))
    assert "Verdict: " in claim["notes"] and "at equal K" in claim["notes"]
    # The claim is paired by episode: its value is the mean of the per-episode differences of the cached jobs.
    jobs = [json.loads(p.read_text()) for p in (tmp_path / "runs" / NAME / name).glob("fewshot_*.json")]
    runs = {job["agent"]["name"]: job for job in jobs}
    assert len(jobs) == 3 and set(runs) == {"mg_k1", "bmg_k1_l2", "bmg_k2_l1_euclid"}
    assert np.mean(np.subtract(runs["bmg_k1_l2"]["accs"], runs["mg_k1"]["accs"])) == pytest.approx(
        metrics["bmg_k1_l2_minus_mg_k1_acc_pct"])
    assert all(job["train_seconds"] > 0 and job["iterations"] == 2 for job in jobs)
    table = (out / "fewshot_smoke_summary.md").read_text()
    assert "| bmg_k1_l2 vs mg_k1 |" in table and "training wall time" in table
    assert (out / "fewshot_smoke_summary.png").read_bytes()[:4] == b"\x89PNG"
    # A second run finds every agent cached and writes the same records without reading the images.
    first = (out / "fewshot_smoke_mg_k1.yaml").read_text()
    monkeypatch.setattr(std, "load_standard", lambda *a, **k: pytest.fail("images read although every job is cached"))
    assert fewshot.run(config, ctx) == metrics
    again = (out / "fewshot_smoke_mg_k1.yaml").read_text()
    assert again.split("environment:")[0] == first.split("environment:")[0]
    assert "read back from the run's cache" not in yaml.safe_load(again)["notes"]


@needs_full
def test_a_two_seed_miniature_run_records_over_seeds_and_shares_its_jobs_with_single_seed_runs(tmp_path, monkeypatch):
    out = miniature_setup(tmp_path, monkeypatch)
    name, smoke = registry.load_config(registry.get(NAME), "fewshot_smoke")
    config = {**smoke, "seeds": [0, 1], "agents": smoke["agents"][:2]}  # mg_k1 and bmg_k1_l2, one claim
    ctx = registry.RunContext(config_name=name, work_dir=tmp_path / "runs", root=ROOT, progress=False,
                              command=f"mlatlas repro run {NAME} --config fewshot_smoke")
    metrics = fewshot.run(config, ctx)
    folder = tmp_path / "runs" / NAME / name
    jobs = {}  # (agent, seed) -> its cached job, found by the single-seed fingerprint
    for agent in fewshot.agents_of(config):
        for s in (0, 1):
            fp = fewshot.job_fingerprint(fewshot.job_config({**smoke, "seed": s}, agent))
            jobs[agent.name, s] = json.loads((folder / f"fewshot_{agent.name}_{fp}.json").read_text())
            assert (folder / f"fewshot_{agent.name}_seed{s}.pt").exists()  # one checkpoint per seed
    assert len(list(folder.glob("fewshot_*.json"))) == 4
    assert jobs["mg_k1", 0]["accs"] != jobs["mg_k1", 1]["accs"]  # other training and other test episodes
    seed_means = {s: float(np.mean(jobs["bmg_k1_l2", s]["accs"])) for s in (0, 1)}
    assert metrics["bmg_k1_l2_acc_pct_seed0"] == pytest.approx(seed_means[0])
    assert metrics["bmg_k1_l2_acc_pct"] == pytest.approx((seed_means[0] + seed_means[1]) / 2)
    diffs = [np.mean(np.subtract(jobs["bmg_k1_l2", s]["accs"], jobs["mg_k1", s]["accs"])) for s in (0, 1)]
    assert metrics["bmg_k1_l2_minus_mg_k1_acc_pct"] == pytest.approx(np.mean(diffs))
    assert metrics["mg_k1_train_seconds"] == pytest.approx(
        (jobs["mg_k1", 0]["train_seconds"] + jobs["mg_k1", 1]["train_seconds"]) / 2)
    stems = {p.stem for p in out.glob("*.yaml")}
    assert stems == {"fewshot_smoke_mg_k1", "fewshot_smoke_bmg_k1_l2", "fewshot_smoke_claim_bmg_k1_l2_vs_mg_k1"}
    for path in out.glob("*.yaml"):
        record = ResultRecord.model_validate(yaml.safe_load(path.read_text()))
        assert record.n_seeds == 2 and record.n_eval_tasks == 6 and record.protocol["test_episodes"] == 3
        assert "2 training seeds (0, 1)" in record.budget and "Student t over the 2 training seeds'" in record.notes
    claim = yaml.safe_load((out / "fewshot_smoke_claim_bmg_k1_l2_vs_mg_k1.yaml").read_text())
    half = 12.706204736174694 * abs(diffs[0] - diffs[1]) / 2  # t(1) * sd / sqrt(2), sd = |d0 - d1| / sqrt(2)
    assert claim["value"] == pytest.approx(round(float(np.mean(diffs)), 2)) and claim["ci95"] == pytest.approx(
        round(half, 2))
    assert "| seed 0 | seed 1 |" in (out / "fewshot_smoke_summary.md").read_text()
    # A second run reads every job from the cache (no image is read), and so does a single-seed run of seed 1.
    monkeypatch.setattr(std, "load_standard", lambda *a, **k: pytest.fail("images read although every job is cached"))
    assert fewshot.run(config, ctx) == metrics
    quiet = registry.RunContext(config_name=name, work_dir=tmp_path / "runs", root=ROOT, progress=False,
                                write_record=False)
    alone = fewshot.run({**config, "seeds": None, "seed": 1}, quiet)
    assert alone["bmg_k1_l2_acc_pct"] == pytest.approx(seed_means[1])
    assert alone["bmg_k1_l2_minus_mg_k1_acc_pct"] == pytest.approx(diffs[1])
