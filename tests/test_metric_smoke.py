"""Smoke runs of every Omniglot reproduction (metric-based methods, MAML, first-order MAML) on every device.

Each goes through the real pipeline: archives verified from a data folder, training episodes with a
checkpoint, evaluation on Lake's 20 runs and on held-out episodes. GPU variants skip when the device is absent.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from _data import OMNIGLOT
from mlatlas.records import load_records
from reproductions.core import registry
from reproductions.datasets.omniglot_benchmark import Episode

ARCHIVES = ["images_background_small1.zip", "images_background_small2.zip", "all_runs.zip"]
needs_data = pytest.mark.skipif(
    not all((OMNIGLOT / a).exists() for a in ARCHIVES), reason=f"Omniglot archives absent from {OMNIGLOT}"
)
METHODS = ["prototypical_networks", "matching_networks", "relation_network", "siamese", "omniglot_maml"]


def _device_param(name: str):
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
    }[name]
    return pytest.param(name, marks=pytest.mark.skipif(not available, reason=f"no {name} device on this machine"))


DEVICES = [_device_param(d) for d in ("cpu", "cuda", "mps")]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("omniglot")
    for name in ARCHIVES:
        shutil.copy(OMNIGLOT / name, folder / name)
    return folder


@needs_data
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", METHODS)
def test_smoke_run(name, device, data_dir, tmp_path):
    repro = registry.get(name)
    config_name, config = registry.load_config(repro, "smoke")
    config["data"]["data_dir"] = str(data_dir)
    config["data"]["base_url"] = "http://127.0.0.1:9"  # nothing may be downloaded: the archives are there
    write = name == "prototypical_networks" and device == "cpu"  # one run goes through the record writer too
    ctx = registry.RunContext(config_name=config_name, device=device, work_dir=tmp_path, root=tmp_path,
                              write_record=write, progress=False, command="mlatlas repro run test")
    metrics = repro.run(config, ctx)
    if write:
        records, problems = load_records(tmp_path)
        assert not problems
        by_stem = {path.stem: rec for path, rec in records}
        assert set(by_stem) == {"smoke_small1_runs", "smoke_small1_5way1shot", "smoke_small1_20way5shot"}
        runs = by_stem["smoke_small1_runs"]
        assert runs.value == round(metrics["small1_runs_error_pct"], 2) and not runs.higher_is_better
        # the progress report's Table 1 is named but not quoted until its numbers are checked
        assert runs.paper_value is None and "Table 1" in runs.notes and "38.75%" in runs.notes
        assert runs.n_eval_tasks == 20
        assert (tmp_path / "reproductions" / name / "results" / "smoke_small1_runs.csv").exists()
        assert by_stem["smoke_small1_5way1shot"].paper_value.value == 98.8
    assert set(metrics) == {"small1_runs_error_pct", "small1_5way_1shot_acc_pct", "small1_20way_5shot_acc_pct"}
    assert 0 <= metrics["small1_runs_error_pct"] <= 100
    assert all(0 <= v <= 100 for v in metrics.values())
    assert (tmp_path / name / "smoke" / "small1.pt").exists()  # the checkpoint was written
    # Evaluating the finished checkpoint again gives the same numbers (deterministic evaluation).
    again = repro.run(config, registry.RunContext(config_name=config_name, device=device, work_dir=tmp_path,
                                                  root=tmp_path, eval_only=True, write_record=False, progress=False))
    assert again == pytest.approx(metrics)


@pytest.mark.parametrize("name", METHODS)
def test_scores_rank_the_true_class_first_after_fitting_one_episode(name):
    """Each method's loss, minimised on a single fixed 5-way episode, makes its scores pick the true classes."""
    torch.manual_seed(0)
    repro = registry.get(name)
    _, config = registry.load_config(repro, "smoke")
    module = __import__(f"reproductions.{name}.method", fromlist=["x"])
    method_cls = next(v for k, v in vars(module).items() if isinstance(v, type) and hasattr(v, "scores"))
    method = method_cls(first_order=True) if name == "omniglot_maml" else method_cls()
    model = method.build(config)
    x = torch.rand(10, 1, 28, 28)
    ep = Episode(x[:5], torch.arange(5), x[5:], torch.arange(5), n_way=5, k_shot=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        optimizer.zero_grad()
        method.loss(model, ep).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        scores = method.scores(model, ep)
    assert scores.shape == (5, 5)
    assert (scores.argmax(1) == ep.query_y).all()


def test_relation_network_class_map_is_the_mean_of_its_support_maps():
    """K identical support images of a class score a query exactly as one of them does (a sum would not)."""
    from reproductions.relation_network.method import RelationNetwork

    torch.manual_seed(0)
    method = RelationNetwork()
    _, config = registry.load_config(registry.get("relation_network"), "smoke")
    model = method.build(config).eval()
    support, query = torch.rand(5, 1, 28, 28), torch.rand(3, 1, 28, 28)
    one = Episode(support, torch.arange(5), query, torch.zeros(3, dtype=torch.long), n_way=5, k_shot=1)
    five = Episode(support.repeat_interleave(5, 0), torch.arange(5).repeat_interleave(5), query,
                   torch.zeros(3, dtype=torch.long), n_way=5, k_shot=5)
    with torch.no_grad():
        assert torch.allclose(method.scores(model, one), method.scores(model, five), atol=1e-6)
