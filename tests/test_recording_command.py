"""A record's command names no path of the machine that ran it; configs that are no result write no record."""

from __future__ import annotations

import pytest

from mlatlas.cli import main
from reproductions.core.recording import command_line, machine_paths, write_record


def test_the_recorded_command_drops_the_options_that_name_machine_folders():
    argv = ["/home/u/atlas/.venv/bin/mlatlas", "--root", "/home/u/atlas", "repro", "run", "maml", "--work-dir",
            "/tmp/runs", "--data-dir=/data/omniglot", "--config", "sinusoid_5shot", "--no-progress"]
    assert command_line(argv) == "mlatlas repro run maml --config sinusoid_5shot --no-progress"
    assert machine_paths(command_line(argv)) == []


@pytest.mark.parametrize("command", [
    "mlatlas repro run maml --config /work/main/x.yaml",
    "mlatlas repro run maml --config=~/x.yaml",
    "mlatlas repro run maml --config C:\\runs\\x.yaml",
])
def test_machine_paths_are_found(command):
    assert len(machine_paths(command)) == 1


def test_a_record_with_a_machine_path_is_refused_before_anything_is_written(tmp_path):
    results = tmp_path / "results"
    with pytest.raises(ValueError, match="names a path of th"):
        write_record(
            results, "x", root=tmp_path, code_paths=[], command="mlatlas repro run maml --work-dir /tmp/runs",
            device="cpu", wall_time_s=1.0, commit="abc1234", paper="maml", reproduction="maml", benchmark="b",
            setting="s", metric="MSE", higher_is_better=False, value=0.5,
        )
    assert not results.exists()


def _main(monkeypatch, *args: str) -> int:
    """The CLI as a user runs it: the recorded command is read from sys.argv."""
    monkeypatch.setattr("sys.argv", ["mlatlas", *args])
    return main(list(args))


def test_a_run_that_would_record_a_machine_path_stops_before_training(tmp_path, capsys, monkeypatch):
    config = tmp_path / "mine.yaml"
    config.write_text("extends: smoke\n")
    code = _main(monkeypatch, "--root", str(tmp_path), "repro", "run", "maml", "--config", str(config), "--no-progress")
    assert code == 1 and "may not name a path of this machine" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing was trained


def test_a_config_that_says_records_false_runs_but_writes_no_record(tmp_path, capsys, monkeypatch):
    config = tmp_path / "demo.yaml"
    config.write_text("extends: smoke\nrecords: false\n")
    code = _main(monkeypatch, "--root", str(tmp_path), "repro", "run", "maml", "--config", str(config), "--no-progress")
    assert code == 0 and "mse_1step" in capsys.readouterr().out
    assert (tmp_path / "runs" / "maml" / "demo").is_dir()  # it trained
    assert not (tmp_path / "reproductions").exists()  # and wrote nothing


def test_validation_rejects_a_stored_record_whose_command_names_a_machine_path():
    from pydantic import ValidationError

    from mlatlas.records import ResultRecord

    record = {"paper": "maml", "reproduction": "maml", "benchmark": "b", "setting": "s", "metric": "MSE",
              "higher_is_better": False, "value": 0.5,
              "environment": {"command": "mlatlas repro run maml --work-dir /work/main/runs", "commit": "abc1234",
                              "hardware": "h", "device": "cpu", "versions": {}, "wall_time_s": 1, "date": "2026-12-05"}}
    with pytest.raises(ValidationError, match="names a path of the machine"):
        ResultRecord.model_validate(record)
    record["environment"]["command"] = "mlatlas repro run maml --config sinusoid_5shot"
    assert ResultRecord.model_validate(record).environment.command.endswith("sinusoid_5shot")
