"""The reproduction registry, configs, the `mlatlas repro` command and result records."""

from __future__ import annotations

import csv
import subprocess

import pytest
import yaml
from PIL import Image

from mlatlas.commands import repro_commands
from mlatlas.records import load_records
from reproductions.core import recording, registry

SINUSOID_METHODS = {"maml": "maml", "fomaml": "maml", "reptile": "reptile", "meta_sgd": "meta-sgd", "anil": "anil"}


def run_cli(*argv: str) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="mlatlas")
    parser.add_argument("--root")
    repro_commands.register(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_every_sinusoid_method_is_registered_with_its_paper_and_configs():
    known = registry.discover()
    for name, paper in SINUSOID_METHODS.items():
        repro = known[name]
        assert repro.paper == paper
        assert {"default", "smoke", "sinusoid_5shot", "sinusoid_10shot", "sinusoid_20shot"} <= set(
            repro.config_names()
        )
        for k in (5, 10, 20):
            _, config = registry.load_config(repro, f"sinusoid_{k}shot")
            assert config["data"] == {"k_shot": k, "k_query": k}
            assert config["train"]["meta_batch"] == 25 and config["eval"]["tasks"] >= 600


def test_config_extends_and_overrides():
    repro = registry.get("maml")
    name, config = registry.load_config(repro, "smoke")
    assert name == "smoke" and config["train"]["iterations"] == 40 and config["method"]["inner_lr"] == 0.01
    changed = registry.apply_overrides(config, ["train.iterations=7", "method.first_order=true"])
    assert changed["train"]["iterations"] == 7 and changed["method"]["first_order"] is True
    assert config["train"]["iterations"] == 40  # the original is untouched
    with pytest.raises(registry.RegistryError, match="unknown setting 'train.iteratons'"):
        registry.apply_overrides(config, ["train.iteratons=7"])
    with pytest.raises(registry.RegistryError, match="expected key=value"):
        registry.apply_overrides(config, ["train.iterations"])
    with pytest.raises(registry.RegistryError, match="no config 'nope'"):
        registry.load_config(repro, "nope")


def test_cli_lists_and_reports_bad_requests_clearly(capsys):
    assert run_cli("repro", "list") == 0
    out = capsys.readouterr().out
    for name in SINUSOID_METHODS:
        assert name in out
    assert run_cli("repro", "run", "no_such_method") == 1
    assert "no reproduction named 'no_such_method'" in capsys.readouterr().err
    assert run_cli("repro", "run", "maml", "--config", "smoke", "--set", "train.nope=1") == 1
    assert "unknown setting 'train.nope'" in capsys.readouterr().err


def test_cli_smoke_run_trains_evaluates_and_writes_no_record(tmp_path, capsys):
    repro = registry.get("reptile")
    before = sorted(repro.results_dir.glob("*")) if repro.results_dir.exists() else []
    code = run_cli("repro", "run", "reptile", "--config", "smoke", "--device", "cpu", "--work-dir", str(tmp_path),
                   "--no-progress")
    assert code == 0
    out = capsys.readouterr().out
    assert "mse_1step:" in out and "mse_10step:" in out
    assert (tmp_path / "reptile" / "smoke" / "checkpoint.pt").exists()
    after = sorted(repro.results_dir.glob("*")) if repro.results_dir.exists() else []
    assert after == before
    # `repro eval` re-evaluates the finished checkpoint and gets the same numbers.
    assert run_cli("repro", "eval", "reptile", "--config", "smoke", "--work-dir", str(tmp_path), "--no-progress") == 0
    assert capsys.readouterr().out == out


def record_fields(**changes):
    fields = dict(
        paper="maml",
        reproduction="maml",
        benchmark="Sinusoid regression (Finn et al. 2017)",
        setting="5-shot, 1 adaptation step",
        metric="MSE",
        higher_is_better=False,
        value=0.61,
        ci95=0.05,
        n_eval_tasks=1000,
        paper_value={"value": 1.13, "pm": 0.18, "paper": "meta-sgd", "table": "Table 1"},
        budget="10 meta-iterations",
    )
    fields.update(changes)
    return fields


def test_written_record_validates_and_carries_curve_plot_and_environment(tmp_path):
    root = tmp_path
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    results = root / "reproductions" / "maml" / "results"
    curve = [{"iteration": 1.0, "train_loss": 3.0, "val_mse": 2.5}, {"iteration": 2.0, "train_loss": 2.0, "val_mse": 2.0}]
    path = recording.write_record(
        results, "sinusoid_5shot_1step", root=root, code_paths=["reproductions"],
        command="mlatlas repro run maml --config sinusoid_5shot", device="cpu", wall_time_s=12.34, curve=curve,
        **record_fields(),
    )
    records, problems = load_records(root)
    assert problems == [] and len(records) == 1
    record = records[0][1]
    assert record.value == 0.61 and record.paper_value.value == 1.13
    env = record.environment
    assert env.command == "mlatlas repro run maml --config sinusoid_5shot"
    assert env.commit.endswith("-dirty")  # no commit yet in this fresh repository
    assert "core" in env.hardware and env.versions["torch"] and env.wall_time_s == 12.3
    with open(results / record.curve) as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["val_mse"]) for r in rows] == [2.5, 2.0]
    with Image.open(results / record.plot) as image:
        assert image.format == "PNG" and image.size[0] > 100
    assert yaml.safe_load(path.read_text())["environment"]["device"] == "cpu"


def test_an_invalid_record_is_refused_before_anything_is_written(tmp_path):
    results = tmp_path / "results"
    with pytest.raises(Exception, match="paper"):
        recording.write_record(results, "bad", root=tmp_path, code_paths=[], command="x", device="cpu",
                               wall_time_s=1.0, curve=[{"iteration": 1.0, "loss": 1.0}],
                               **record_fields(paper="Not A Slug"))
    assert list(results.glob("*")) == []


def test_mean_ci95_is_the_student_t_interval():
    mean, half = recording.mean_ci95([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert half == pytest.approx(3.182446 * 1.2909944 / 2, rel=1e-5)


def test_committed_records_validate():
    from mlatlas.paths import project_root

    _, problems = load_records(project_root())
    assert problems == []
