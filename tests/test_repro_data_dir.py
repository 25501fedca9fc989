"""`mlatlas repro run|eval --data-dir`: a reproduction reads its archives from the folder the user names."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from _data import OMNIGLOT
from mlatlas.cli import main

ARCHIVES = ["images_background_small1.zip", "images_background_small2.zip", "all_runs.zip"]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No download can succeed and the environment's data folder is empty: only --data-dir can supply data."""
    monkeypatch.setenv("MLATLAS_OMNIGLOT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("MLATLAS_DATA_DIR", str(tmp_path / "empty-env-folder"))


needs_archives = pytest.mark.skipif(
    not all((OMNIGLOT / a).exists() for a in ARCHIVES), reason=f"Omniglot archives absent from {OMNIGLOT}"
)


def _archives_in(folder: Path) -> Path:
    folder.mkdir()
    for name in ARCHIVES:
        shutil.copy(OMNIGLOT / name, folder / name)
    return folder


@needs_archives
def test_run_and_eval_read_archives_from_the_data_dir(offline, tmp_path, capsys):
    data = _archives_in(tmp_path / "my archives")
    common = ["--config", "smoke", "--data-dir", str(data), "--work-dir", str(tmp_path / "runs"), "--no-progress"]
    assert main(["repro", "run", "prototypical_networks", *common]) == 0
    trained = capsys.readouterr().out
    assert "small1_runs_error_pct:" in trained
    assert sorted(p.name for p in data.iterdir()) == sorted(ARCHIVES)  # nothing extracted there
    assert not (tmp_path / "empty-env-folder").exists()
    assert main(["repro", "eval", "prototypical_networks", *common]) == 0
    assert capsys.readouterr().out.splitlines()[-3:] == trained.splitlines()[-3:]  # same checkpoint, same numbers


@needs_archives
def test_a_truncated_archive_gives_an_error_naming_it_not_a_traceback(offline, tmp_path, capsys):
    data = _archives_in(tmp_path / "nothing here")
    whole = (data / "images_background_small1.zip").read_bytes()
    (data / "images_background_small1.zip").write_bytes(whole[: len(whole) // 2])
    code = main(["repro", "run", "prototypical_networks", "--config", "smoke", "--data-dir", str(data),
                 "--work-dir", str(tmp_path / "runs"), "--no-progress"])
    assert code == 1
    assert "nothing here" in capsys.readouterr().err


def test_data_dir_is_refused_where_no_dataset_is_read(tmp_path, capsys):
    assert main(["repro", "run", "maml", "--config", "smoke", "--data-dir", str(tmp_path)]) == 1
    assert "reads no dataset files" in capsys.readouterr().err


def test_data_dir_must_be_a_folder(tmp_path, capsys):
    afile = tmp_path / "archive.zip"
    afile.write_bytes(b"PK")
    assert main(["repro", "run", "siamese", "--config", "smoke", "--data-dir", str(afile)]) == 1
    assert "is a file, not a folder" in capsys.readouterr().err
