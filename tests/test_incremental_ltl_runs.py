"""Incremental LTL reproduction end to end: the Schools loader on the real file, the synthetic environment, the
config checks, smoke runs on every available device, the records it writes and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import yaml

from mlatlas.cli import main
from mlatlas.records import ResultRecord, verdict
from reproductions.core import registry
from reproductions.core.runtime import available_devices, pick_device
from reproductions.incremental_ltl import METHODS, write_records
from reproductions.incremental_ltl.data import (
    DataError,
    SyntheticEnvironment,
    load_schools,
    make_eval_tasks,
    resolve_schools_path,
    scale_by_max_abs,
    schools_split,
)
from reproductions.incremental_ltl.experiment import GridEdgeError, check_config, grid_edges, run_experiment
from reproductions.incremental_ltl.report import summarise

ROOT = Path(__file__).resolve().parent.parent
SCHOOLS = ROOT.parent / "shared" / "data" / "schools" / "schoolData.mat"
needs_schools = pytest.mark.skipif(not SCHOOLS.is_file(), reason=f"Schools data not found at {SCHOOLS}")


@pytest.fixture(autouse=True)
def one_thread():
    """Runs use one thread (as `repro run` does); tiny matrices on a busy machine are much slower with more."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def smoke_config() -> dict:
    repro = registry.get("incremental_ltl")
    return registry.load_config(repro, "smoke")[1]


# -------------------------------------------------------------------------------------------------------- data


@needs_schools
def test_schools_loader_reads_the_real_file():
    tasks = load_schools(SCHOOLS)
    assert len(tasks) == 139
    assert sum(len(y) for _, y in tasks) == 15362
    assert {X.shape[1] for X, _ in tasks} == {27}  # 26 features + the bias we append
    assert all(np.all(X[:, -1] == 1) for X, _ in tasks)
    assert min(len(y) for _, y in tasks) == 22 and max(len(y) for _, y in tasks) == 251

    scaled = scale_by_max_abs(tasks)
    assert np.allclose(np.abs(np.vstack([X for X, _ in scaled])).max(0), 1.0)
    assert all(np.array_equal(y, y0) for (_, y), (_, y0) in zip(scaled, tasks))

    split = schools_split(np.random.default_rng(0), tasks, 75, 25, 0.75)
    assert len(split.train) == 75 and len(split.val) == 25 and len(split.test) == 39
    # Every student of a test school is used exactly once: 75% to train, the rest held out.
    assert int(split.test.mask.sum() + split.test.train.n.sum()) == sum(
        len(y) for _, y in tasks) - int(split.train.n.sum()) - int(split.val.mask.sum() + split.val.train.n.sum())


def test_schools_loader_errors_name_the_file_and_the_field(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="no such file"):
        load_schools(tmp_path / "absent.mat")
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(DataError, match="junk.mat"):
        load_schools(tmp_path / "junk.mat")
    scipy.io.savemat(tmp_path / "nox.mat", {"Y": np.zeros((1, 2))})
    with pytest.raises(DataError, match="field 'X' is missing"):
        load_schools(tmp_path / "nox.mat")
    bad = np.empty((1, 1), dtype=object)
    bad[0, 0] = np.ones((3, 4))
    ys = np.empty((1, 1), dtype=object)
    ys[0, 0] = np.ones((5, 1))
    scipy.io.savemat(tmp_path / "mismatch.mat", {"X": bad, "Y": ys})
    with pytest.raises(DataError, match="task 1"):
        load_schools(tmp_path / "mismatch.mat")
    monkeypatch.delenv("MLATLAS_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="data_path"):
        resolve_schools_path(None)
    monkeypatch.setenv("MLATLAS_DATA_DIR", str(tmp_path))
    assert resolve_schools_path(None) == tmp_path / "schools" / "schoolData.mat"


def test_synthetic_tasks_share_the_low_dimensional_subspace():
    env = SyntheticEnvironment(dim=12, rank=3, noise_std=0.0)
    rng = np.random.default_rng(0)
    P = env.basis(rng)
    # Noise-free targets are explained exactly by weights in span(P): least squares lands there.
    for _ in range(3):
        X, y = env.sample_task(rng, P, 40)
        assert np.allclose(np.linalg.norm(X, axis=1), 1.0)
        w = np.linalg.lstsq(X, y, rcond=None)[0]
        assert np.allclose(P @ (P.T @ w), w, atol=1e-8)
        assert 1 - 1e-9 <= np.linalg.norm(w) <= 9 + 1e-9


def test_explained_variance_matches_its_definition():
    rng = np.random.default_rng(1)
    parts = [(rng.standard_normal((8, 3)), rng.standard_normal(8)) for _ in range(2)]
    heldout = [(rng.standard_normal((m, 3)), rng.standard_normal(m) + 5) for m in (4, 7)]
    tasks = make_eval_tasks(parts, heldout, torch.float64, None)
    D = torch.eye(3, dtype=torch.float64)
    ev = tasks.scores(D, "explained_variance")
    mse = tasks.scores(D, "mse")
    from reproductions.incremental_ltl.ltl import ridge_weights

    for k, ((X, y), (Xh, yh)) in enumerate(zip(parts, heldout)):
        w = ridge_weights(D, torch.tensor(X), torch.tensor(y)).numpy()
        pred = Xh @ w
        assert np.isclose(float(ev[k]), 100 * (1 - np.var(yh - pred) / np.var(yh)))
        assert np.isclose(float(mse[k]), np.mean((yh - pred) ** 2))


def test_config_checks_name_the_setting():
    cfg = smoke_config()
    assert check_config(cfg)["step_constants"] == [1000.0, 100000.0]
    for key, value, message in (
        ("seeds", "many", "'seeds'"),
        ("checkpoints", [12, 4], "'checkpoints'"),
        ("checkpoints", [4, 50], "'checkpoints'"),
        ("metric", "r2", "'metric'"),
        ("online_lambdas", [0.0], "'online_lambdas'"),
        ("grid_edge", "ignore", "'grid_edge'"),
        ("extra_metrics", ["r2"], "extra_metrics"),
        ("step_constans", [1.0], "unknown setting"),
    ):
        with pytest.raises(ValueError, match=message):
            check_config({**cfg, key: value})
    broken = dict(cfg)
    del broken["rank"]
    with pytest.raises(ValueError, match="'rank' is missing"):
        check_config(broken)


# ------------------------------------------------------------------------------------------------ smoke runs


@pytest.mark.parametrize("device", ["cpu", "cuda", "mps"])
def test_smoke_run_on_every_available_device(device):
    if device not in available_devices():
        pytest.skip(f"no {device.upper()} device on this machine; the same smoke run is checked on the CPU")
    cfg = smoke_config()
    if device == "mps":
        cfg["dtype"] = "float32"  # MPS has no float64
    runs, n_test = run_experiment(cfg, pick_device(device), progress=False)
    assert len(runs) == cfg["seeds"] and n_test == cfg["n_test_tasks"]
    for run in runs:
        assert list(run) == ["mse", "explained_variance"]  # the config's metric, then its extra one
        for method in METHODS:
            assert len(run["mse"][method].test) == len(cfg["checkpoints"])
            assert all(np.isfinite(run["mse"][method].test)) and min(run["mse"][method].test) > 0
            assert all(ev <= 100 for ev in run["explained_variance"][method].test)
    # ITL does not transfer: the same score at every checkpoint.
    assert len(set(runs[0]["mse"]["itl"].test)) == 1


def _candidate(val: float, **hyper) -> tuple[dict, dict]:
    return {"mse": (val, val)}, hyper


def test_grid_edges_flag_a_choice_on_the_edge_but_not_inside_or_on_a_plateau():
    grids = {"lambda": [1e-3, 1e-2, 1e-1], "c": [1.0, 10.0]}
    scores = {(1e-3, 1.0): 0.5, (1e-3, 10.0): 0.4, (1e-2, 1.0): 0.3, (1e-2, 10.0): 0.6, (1e-1, 1.0): 0.7,
              (1e-1, 10.0): 0.8}
    cands = [_candidate(v, **{"lambda": lam, "c": c}) for (lam, c), v in scores.items()]
    # Best (1e-2, 1.0): lambda inside its grid, c at the lower end of its own.
    assert grid_edges(cands, "mse", grids) == ["c=1 at the lower end of its grid [1, 10]"]
    # Best at lambda's upper end.
    cands[-1] = _candidate(0.1, **{"lambda": 1e-1, "c": 10.0})
    assert grid_edges(cands, "mse", {"lambda": grids["lambda"]}) == ["lambda=0.1 at the upper end of its grid [0.001, 0.1]"]
    # A plateau of equal validation scores that reaches inside the grid is not an edge choice, even though the
    # first of the tied candidates (the one picked) sits on the edge.
    tied = [_candidate(0.2, **{"lambda": lam}) for lam in (1e-3, 1e-2)] + [_candidate(0.9, **{"lambda": 1e-1})]
    assert grid_edges(tied, "mse", {"lambda": grids["lambda"]}) == []
    # A larger value that diverged (no candidate) was still tried: the largest finite one is inside the grid.
    diverged = [_candidate(0.5, **{"lambda": 1e-3}), _candidate(0.2, **{"lambda": 1e-2})]
    assert grid_edges(diverged, "mse", {"lambda": grids["lambda"]}) == []
    # Higher-is-better metrics pick the largest validation score.
    ev = [({"explained_variance": (v, v)}, {"lambda": lam}) for lam, v in ((1e-3, 10.0), (1e-2, 5.0), (1e-1, 30.0))]
    assert grid_edges(ev, "explained_variance", {"lambda": grids["lambda"]}) == [
        "lambda=0.1 at the upper end of its grid [0.001, 0.1]"]


def test_a_run_stops_when_a_choice_is_on_a_grid_edge_and_the_records_say_so_otherwise(tmp_path):
    cfg = {**smoke_config(), "grid_edge": "error"}
    with pytest.raises(GridEdgeError, match="seed 0: chosen on a grid edge: .*Widen the grid"):
        run_experiment(cfg, torch.device("cpu"), progress=False)
    cfg = check_config(smoke_config())  # grid_edge: warn
    runs, n_test = run_experiment(cfg, torch.device("cpu"), progress=False)
    ctx = registry.RunContext(config_name="smoke", root=ROOT, command="mlatlas repro run incremental_ltl")
    write_records(cfg, ctx, runs, n_test, "cpu", 1.0, results_dir=tmp_path)
    record = yaml.safe_load((tmp_path / "smoke_online_ltl.yaml").read_text())
    assert "On a grid edge in" in record["notes"]


def test_smoke_records_validate(tmp_path):
    cfg = check_config(smoke_config())
    runs, n_test = run_experiment(cfg, torch.device("cpu"), progress=False)
    ctx = registry.RunContext(config_name="smoke", root=ROOT, command="mlatlas repro run incremental_ltl")
    write_records(cfg, ctx, runs, n_test, "cpu", 1.0, results_dir=tmp_path)
    for metric, suffix in (("mse", ""), ("explained_variance", "_explained_variance")):
        summary = summarise([r[metric] for r in runs])
        for method in METHODS:
            record = ResultRecord.model_validate(
                yaml.safe_load((tmp_path / f"smoke_{method}{suffix}.yaml").read_text()))
            assert record.paper == "incremental-ltl" and record.n_seeds == cfg["seeds"]
            assert record.value == pytest.approx(summary[method]["mean"][-1], abs=1e-4)
            assert record.higher_is_better == (metric == "explained_variance")
            assert record.protocol["test-tasks"] == cfg["n_test_tasks"] and record.protocol["seeds"] == cfg["seeds"]
            assert verdict(record).kind == "no paper number"
            assert "vs ITL" in record.notes
            assert (tmp_path / record.curve).read_text().startswith("iteration,online_ltl,")
            assert (tmp_path / record.plot).read_bytes()[:4] == b"\x89PNG"
    raw = json.loads((tmp_path / "smoke_per_seed.json").read_text())
    assert set(raw["seeds"][0]) == {"mse", "explained_variance"}
    assert len(raw["seeds"][0]["mse"]["online_ltl"]["edges"]) == len(cfg["checkpoints"])


RESULTS = ROOT / "reproductions" / "incremental_ltl" / "results"


@pytest.mark.parametrize("config", ["synthetic", "schools", "schools_scaled"])
def test_recorded_choices_and_their_grid_edges(config):
    """The committed runs. Runs made with edge checking (per-seed ``edges`` present) chose no hyper-parameter on an
    edge of its grid at the last checkpoint. Runs of the old grids did; their records must say so: every chosen
    value that is the smallest or largest of its grid is named in the record's notes."""
    raw = json.loads((RESULTS / f"{config}_per_seed.json").read_text())
    cfg = raw["config"]
    if "online_lambdas" in cfg:
        grids = {"online_ltl": {"lambda": cfg["online_lambdas"], "c": cfg["step_constants"]},
                 "batch_ltl": {"lambda": cfg["batch_lambdas"]}, "itl": {"lambda": cfg["itl_lambdas"]}}
        for seed in raw["seeds"]:
            for metric, methods in seed.items():
                for method, run in methods.items():
                    assert run["edges"][-1] == [], (config, metric, method, run["edges"][-1])
                    for key, value in run["chosen"][-1].items():
                        assert value in grids[method][key]
        return
    grids = {"online_ltl": {"lambda": cfg["ltl_lambdas"], "c": cfg["step_constants"]},
             "batch_ltl": {"lambda": cfg["ltl_lambdas"]}, "itl": {"lambda": cfg["itl_lambdas"]}}
    for method, grid in grids.items():
        notes = yaml.safe_load((RESULTS / f"{config}_{method}.yaml").read_text())["notes"]
        on_edge = {(key, seed[method]["chosen"][-1][key]) for seed in raw["seeds"] for key, values in grid.items()
                   if seed[method]["chosen"][-1][key] in (min(values), max(values))}
        assert "Grid edges" in notes
        for key, value in on_edge:
            assert f"{key}={value:g} (the grid" in notes, (config, method, key, value)
        if not on_edge:
            assert "Grid edges, checked after the run from the chosen values (ties not known): none." in notes


def test_command_line_smoke_and_clear_error_without_schools_data(capsys, monkeypatch):
    monkeypatch.delenv("MLATLAS_DATA_DIR", raising=False)
    results = registry.get("incremental_ltl").results_dir
    before = sorted(results.glob("*")) if results.exists() else []
    assert main(["repro", "run", "incremental_ltl", "--config", "smoke", "--no-progress"]) == 0
    assert "online_ltl_T12:" in capsys.readouterr().out
    after = sorted(results.glob("*")) if results.exists() else []
    assert after == before  # smoke runs never write records
    assert main(["repro", "run", "incremental_ltl", "--config", "schools", "--no-progress", "--no-record"]) == 1
    err = capsys.readouterr().err
    assert "data_path" in err and "MLATLAS_DATA_DIR" in err and "Traceback" not in err
