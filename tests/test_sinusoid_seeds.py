"""Sinusoid runs over several training seeds: same test tasks for every seed, per-seed results equal to single-seed
runs, and records that aggregate over seeds and tasks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mlatlas.records import load_records
from reproductions.core import recording, registry


def _run(tmp_path, config, *, write=False, name="smoke"):
    ctx = registry.RunContext(config_name=name, device="cpu", work_dir=tmp_path / "runs", root=tmp_path,
                              write_record=write, progress=False, command="mlatlas repro run maml --config seeds")
    return registry.get("maml").run(config, ctx)


@pytest.fixture
def smoke():
    _, config = registry.load_config(registry.get("maml"), "smoke")
    config["train"] = {**config["train"], "iterations": 20, "eval_every": 10, "checkpoint_every": 10}
    config["eval"] = {**config["eval"], "tasks": 30}
    return config


def test_each_seed_matches_its_single_seed_run_and_the_value_averages_them(tmp_path, smoke):
    both = _run(tmp_path / "both", {**smoke, "seeds": [0, 1]})
    alone0 = _run(tmp_path / "s0", {**smoke, "seed": 0})
    # The test tasks come from the first seed, so seed 0's part of the two-seed run is exactly the seed-0 run.
    for steps in (1, 10):
        assert both[f"mse_{steps}step_seed0"] == pytest.approx(alone0[f"mse_{steps}step"], rel=1e-12)
        assert both[f"mse_{steps}step"] == pytest.approx(
            (both[f"mse_{steps}step_seed0"] + both[f"mse_{steps}step_seed1"]) / 2, rel=1e-12)
        assert both[f"mse_{steps}step_seed0"] != both[f"mse_{steps}step_seed1"]  # the seeds really differ
    assert (tmp_path / "both" / "runs" / "maml" / "smoke" / "checkpoint_seed1.pt").exists()


def test_records_name_the_seeds_and_combine_both_intervals(tmp_path, smoke):
    metrics = _run(tmp_path, {**smoke, "seeds": [0, 1, 2]}, write=True, name="seeds")
    records, problems = load_records(tmp_path)
    assert not problems
    by_stem = {path.stem: rec for path, rec in records}
    one = by_stem["seeds_1step"]
    assert one.n_seeds == 3 and one.n_eval_tasks == 30
    assert one.value == round(metrics["mse_1step"], 4) and one.ci95 == round(metrics["mse_1step_ci95"], 4)
    assert "for each of 3 training seeds (0, 1, 2)" in one.notes and "Per-seed means:" in one.notes
    assert "for each of 3 seeds" in one.budget


def test_a_configurations_own_deviation_is_added_to_its_records(tmp_path, smoke):
    config = {**smoke, "record": {**smoke["record"], "deviation": "Here the outer\n  step is halved."}}
    _run(tmp_path, config, write=True, name="halved")
    records, problems = load_records(tmp_path)
    assert not problems and records
    for _, rec in records:
        assert " Here the outer step is halved. " in rec.notes  # folded to one line, between the shared notes


def test_the_interval_adds_seed_and_task_spread_in_quadrature():
    rng = np.random.default_rng(0)
    losses = rng.gamma(2.0, 0.3, size=(3, 200)) + np.array([[0.0], [0.2], [0.4]])
    mean, half = recording.mean_ci95_over_seeds_and_tasks(losses)
    seed_means, task_means = losses.mean(axis=1), losses.mean(axis=0)
    seed_half = stats.t.ppf(0.975, 2) * seed_means.std(ddof=1) / np.sqrt(3)
    task_half = stats.t.ppf(0.975, 199) * task_means.std(ddof=1) / np.sqrt(200)
    assert mean == pytest.approx(losses.mean())
    assert half == pytest.approx(np.sqrt(seed_half**2 + task_half**2))
    assert half > seed_half > task_half  # the seeds' offsets dominate here, as they were built to
    assert recording.mean_ci95_over_seeds_and_tasks(losses[:1]) == recording.mean_ci95(losses[0])


def test_repeated_seeds_are_refused(tmp_path, smoke):
    with pytest.raises(ValueError, match="repeat a seed"):
        _run(tmp_path, {**smoke, "seeds": [1, 1]})


def test_a_diverging_setting_is_not_recorded_and_the_other_records_say_so(tmp_path, smoke):
    # An inner step far too large for 10 steps: the adapted losses overflow, while one step stays finite.
    config = {**smoke, "method": {**smoke["method"], "inner_lr": 3.0}}
    metrics = _run(tmp_path, config, write=True, name="diverges")
    assert not np.isfinite(metrics["mse_10step"]) and np.isfinite(metrics["mse_1step"])
    records, problems = load_records(tmp_path)
    assert not problems
    (path, record), = records
    assert path.stem == "diverges_1step"
    assert "After 10 adaptation steps, " in record.notes and "of 30 test task evaluations diverged" in record.notes
