"""Incremental LTL reproduction end to end: the Schools loader on the real file, the synthetic environment, the
config checks, smoke runs on every available device, the records it writes and the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import yaml

from mlatlas.cli import main
from mlatlas.records import ResultRecord
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
from reproductions.incremental_ltl.experiment import check_config, run_experiment
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
        ("ltl_lambdas", [0.0], "'ltl_lambdas'"),
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
        for method in METHODS:
            assert len(run[method].test) == len(cfg["checkpoints"])
            assert all(np.isfinite(run[method].test)) and min(run[method].test) > 0
    # ITL does not transfer: the same score at every checkpoint.
    assert len(set(runs[0]["itl"].test)) == 1


def test_smoke_records_validate(tmp_path):
    cfg = check_config(smoke_config())
    runs, n_test = run_experiment(cfg, torch.device("cpu"), progress=False)
    ctx = registry.RunContext(config_name="smoke", root=ROOT, command="mlatlas repro run incremental_ltl")
    write_records(cfg, ctx, runs, n_test, summarise(runs), "cpu", 1.0, results_dir=tmp_path)
    for method in METHODS:
        record = ResultRecord.model_validate(yaml.safe_load((tmp_path / f"smoke_{method}.yaml").read_text()))
        assert record.paper == "incremental-ltl" and record.n_seeds == cfg["seeds"]
        assert record.value == pytest.approx(summarise(runs)[method]["mean"][-1], abs=1e-4)
        assert "vs ITL" in record.notes
        assert (tmp_path / record.curve).read_text().startswith("iteration,online_ltl,")
        assert (tmp_path / record.plot).read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "smoke_per_seed.json").is_file()


def test_command_line_smoke_and_clear_error_without_schools_data(capsys, monkeypatch):
    monkeypatch.delenv("MLATLAS_DATA_DIR", raising=False)
    results = registry.get("incremental_ltl").results_dir
    before = sorted(results.glob("*")) if results.exists() else []
    assert main(["repro", "run", "incremental_ltl", "--config", "smoke", "--no-progress"]) == 0
    assert "online_ltl_T12:" in capsys.readouterr().out
    after = sorted(results.glob("*")) if results.exists() else []
    assert after == before  # smoke runs never write records
    assert main(["repro", "run", "incremental_ltl", "--config", "schools", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "data_path" in err and "MLATLAS_DATA_DIR" in err and "Traceback" not in err
