"""Checkpoints are digested and loaded without code: damage of any kind is one line naming the file and --fresh.
A run's records are written all together or not at all."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from reproductions.core import recording
from reproductions.core.training import CheckpointError, load_checkpoint, save_checkpoint
from tests.test_repro_registry import record_fields, run_cli

MARKER_NAME = "pwned"


class _Payload:
    """Unpickling this would create a marker file: code run by a crafted checkpoint."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _payload() -> dict:
    return {"version": 2, "weights": torch.arange(6.0).reshape(2, 3), "rng": "{}", "curve": [{"a": 1.0}]}


def test_a_checkpoint_round_trips_and_is_flushed_without_leftovers(tmp_path):
    path = tmp_path / "c.pt"
    orphan = tmp_path / "c.ptab12cd.tmp"  # what a save killed before its rename leaves behind
    orphan.write_bytes(b"half")
    save_checkpoint(path, _payload())
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["weights"], _payload()["weights"]) and loaded["curve"] == [{"a": 1.0}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # the orphan is gone, no temp file is left


def _damaged(path: Path, kind: str) -> None:
    data = bytearray(path.read_bytes())
    if kind == "flipped byte":
        data[len(data) // 2] ^= 0x01
    elif kind == "flipped digest":
        data[30] = ord("0") if data[30] != ord("0") else ord("1")
    elif kind == "truncated":
        data = data[: len(data) - 100]
    elif kind == "empty":
        data = bytearray()
    elif kind == "foreign":
        data = bytearray(b"PK\x03\x04 some zip archive, not ours" * 10)
    elif kind == "plain torch.save":
        buf = io.BytesIO()
        torch.save(_payload(), buf)
        data = bytearray(buf.getvalue())
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["flipped byte", "flipped digest", "truncated", "empty", "foreign",
                                  "plain torch.save"])
def test_a_damaged_checkpoint_is_refused_in_one_line(tmp_path, kind):
    path = tmp_path / "c.pt"
    save_checkpoint(path, _payload())
    _damaged(path, kind)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "--fresh" in message and "\n" not in message


def test_a_directory_in_place_of_a_checkpoint_is_refused(tmp_path):
    (tmp_path / "c.pt").mkdir()
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_checkpoint(tmp_path / "c.pt")


def test_a_crafted_checkpoint_with_a_valid_digest_runs_no_code(tmp_path):
    marker = tmp_path / MARKER_NAME
    path = tmp_path / "c.pt"
    # the crafted object pickles fine and its digest is right: only the loader can stop it
    save_checkpoint(path, {"version": 2, "evil": _Payload(marker)})
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_checkpoint(path)
    assert not marker.exists()
    # and the marker mechanism works: a full unpickle would have created it
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.exists()


def test_numpy_random_state_survives_a_checkpoint(tmp_path):
    from reproductions.core.training import rng_state, set_rng_state

    rng = np.random.default_rng(1234)
    rng.random(17)
    save_checkpoint(tmp_path / "c.pt", {"version": 2, "rng": rng_state(rng)})
    other = np.random.default_rng(0)
    set_rng_state(other, load_checkpoint(tmp_path / "c.pt")["rng"])
    assert np.array_equal(rng.random(5), other.random(5))


@pytest.mark.parametrize("kind", ["flipped byte", "truncated", "empty", "foreign"])
def test_repro_eval_names_a_damaged_checkpoint_and_fresh_without_a_traceback(tmp_path, capsys, kind):
    common = ("--config", "smoke", "--device", "cpu", "--work-dir", str(tmp_path), "--no-progress")
    assert run_cli("repro", "run", "reptile", *common) == 0
    path = tmp_path / "reptile" / "smoke" / "checkpoint.pt"
    _damaged(path, kind)
    capsys.readouterr()
    assert run_cli("repro", "eval", "reptile", *common) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(path) in err and "--fresh" in err and "Traceback" not in err
    # starting afresh works
    assert run_cli("repro", "run", "reptile", *common) == 0


def _write(results: Path, stem: str, **changes) -> Path:
    return recording.write_record(results, stem, root=results, code_paths=[], command="mlatlas repro run maml",
                                  device="cpu", wall_time_s=1.0, commit="abc1234",
                                  curve=[{"iteration": 1.0, "loss": 1.0}, {"iteration": 2.0, "loss": 0.5}],
                                  **record_fields(**changes))


def test_a_record_is_its_yaml_csv_and_png_together(tmp_path):
    path = _write(tmp_path, "one")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.csv", "one.png", "one.yaml"]
    assert yaml.safe_load(path.read_text())["curve"] == "one.csv"


def test_a_run_that_fails_after_its_first_record_writes_none(tmp_path):
    with pytest.raises(RuntimeError, match="killed"):
        with recording.all_or_none():
            _write(tmp_path, "first")
            _write(tmp_path, "second", setting="5-shot, 10 steps")
            assert list(tmp_path.iterdir()) != []  # staged as temp files only
            assert not (tmp_path / "first.yaml").exists()
            raise RuntimeError("killed while evaluating the third setting")
    assert list(tmp_path.iterdir()) == []  # no record, no curve, no temp file
    with recording.all_or_none():
        _write(tmp_path, "first")
        _write(tmp_path, "second", setting="5-shot, 10 steps")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{s}.{e}" for s in ("first", "second")
                                                          for e in ("csv", "png", "yaml")]


def test_an_invalid_record_in_a_batch_discards_the_valid_ones(tmp_path):
    with pytest.raises(Exception):
        with recording.all_or_none():
            _write(tmp_path, "good")
            _write(tmp_path, "bad", value="not a number")
    assert list(tmp_path.iterdir()) == []


def test_an_impossible_work_folder_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "somefile"
    blocker.write_text("a file, so nothing can be created under it, whoever runs this")
    code = run_cli("repro", "run", "reptile", "--config", "smoke", "--device", "cpu", "--work-dir",
                   str(blocker / "sub"), "--no-progress")
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "somefile/sub" in err and "--work-dir" in err and "Traceback" not in err


def test_an_impossible_data_folder_is_one_line(tmp_path):
    from reproductions.datasets import mnist, omniglot

    blocker = tmp_path / "somefile"
    blocker.write_text("not a folder")
    with pytest.raises(mnist.MnistDataError, match="cannot create the data folder"):
        mnist.fetch("t10k-labels-idx1-ubyte.gz", blocker / "sub")
    with pytest.raises(omniglot.OmniglotDataError, match="cannot create the data folder"):
        omniglot.fetch_archive("images_background.zip", blocker / "sub", progress=False)
