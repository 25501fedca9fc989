"""The standard Omniglot protocol: full archives (official bytes or a repack with the official images), the Vinyals
split, and a smoke run of each method on it, on every available device."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from _data import FULL_ARCHIVES, OMNIGLOT, VINYALS_SPLITS, standard_omniglot_folder as _data_folder
from _omniglot_server import OmniglotTestServer
from mlatlas.cli import main
from reproductions.core.runtime import available_devices
from reproductions.datasets import omniglot as og
from reproductions.datasets import omniglot_standard as std

FULL, SPLIT_DIR = FULL_ARCHIVES, VINYALS_SPLITS

pytestmark = pytest.mark.skipif(
    not all((OMNIGLOT / n).exists() for n in FULL) or not SPLIT_DIR.is_dir(),
    reason=f"the full Omniglot archives and the Vinyals split are not in {OMNIGLOT} (../shared/data/omniglot)",
)




def _rewrite(source: Path, target: Path, change=None, keep=lambda info: True) -> None:
    """Copy a zip member by member, passing each member's bytes through ``change(info, data)``."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if keep(info):
                data = zin.read(info)
                zout.writestr(info.filename, change(info, data) if change else data)


def test_the_shared_repack_is_not_the_official_file_but_its_content_digest_is_pinned():
    path = OMNIGLOT / "images_evaluation.zip"
    assert hashlib.sha256(path.read_bytes()).hexdigest() != og.ARCHIVES[path.name].sha256
    assert og.content_digest(path) == og.ARCHIVES[path.name].content_digest


def test_a_repack_with_the_official_images_is_accepted_offline(tmp_path):
    folder = tmp_path / "repack"
    folder.mkdir()
    _rewrite(OMNIGLOT / "images_evaluation.zip", folder / "images_evaluation.zip")  # other zip bytes, same images
    path = og.fetch_archive("images_evaluation.zip", folder, base_url="http://127.0.0.1:9", progress=False)
    assert path == folder / "images_evaluation.zip"


def test_one_changed_image_is_rejected_with_a_one_line_error(tmp_path, capsys):
    folder = tmp_path / "changed"
    folder.mkdir()
    with zipfile.ZipFile(OMNIGLOT / "images_evaluation.zip") as zf:
        first, second = sorted(n for n in zf.namelist() if n.endswith(".png"))[:2]
        other = zf.read(second)  # a valid PNG, just not this member's
    _rewrite(OMNIGLOT / "images_evaluation.zip", folder / "images_evaluation.zip",
             change=lambda info, data: other if info.filename == first else data)
    with pytest.raises(og.OmniglotDataError, match="nor a repack of its images .content digest"):
        og.fetch_archive("images_evaluation.zip", folder, base_url="http://127.0.0.1:9", progress=False)
    assert og.main(["images_evaluation.zip", "--data-dir", str(folder), "--base-url", "http://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "images_evaluation.zip" in err and "Traceback" not in err


def test_a_repack_missing_an_image_is_rejected(tmp_path):
    folder = tmp_path / "short"
    folder.mkdir()
    with zipfile.ZipFile(OMNIGLOT / "images_evaluation.zip") as zf:
        dropped = next(n for n in zf.namelist() if n.endswith(".png"))
    _rewrite(OMNIGLOT / "images_evaluation.zip", folder / "images_evaluation.zip",
             keep=lambda info: info.filename != dropped)
    with pytest.raises(og.OmniglotDataError, match="content digest"):
        og.fetch_archive("images_evaluation.zip", folder, base_url="http://127.0.0.1:9", progress=False)


def test_a_truncated_full_archive_is_rejected_and_kept(tmp_path):
    folder = tmp_path / "truncated"
    folder.mkdir()
    whole = (OMNIGLOT / "images_background.zip").read_bytes()
    (folder / "images_background.zip").write_bytes(whole[: len(whole) // 3])
    with pytest.raises(og.OmniglotDataError, match="images_background.zip: not a readable zip archive"):
        og.fetch_archive("images_background.zip", folder, base_url="http://127.0.0.1:9", progress=False)
    assert (folder / "images_background.zip").exists()  # a user's own file is never deleted


def test_a_read_only_folder_of_verified_archives_is_used_and_left_untouched(tmp_path, monkeypatch):
    folder = _data_folder(tmp_path, "read-only")
    before = sorted((p.relative_to(folder).as_posix(), p.stat().st_mtime_ns) for p in folder.rglob("*"))
    for p in [*folder.rglob("*"), folder]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    monkeypatch.setenv(og.CACHE_DIR_ENV, str(tmp_path / "cache"))
    try:
        data = std.load_standard("vinyals", folder, base_url="http://127.0.0.1:9", split_url="http://127.0.0.1:9")
    finally:
        for p in [folder, *folder.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    assert len(data.test.labels) == 423 * 4 * 20
    assert sorted((p.relative_to(folder).as_posix(), p.stat().st_mtime_ns) for p in folder.rglob("*")) == before
    assert sorted(p.name for p in (tmp_path / "cache" / "omniglot").iterdir()) == [
        f"{a.removesuffix('.zip')}-{hashlib.sha256((OMNIGLOT / a).read_bytes()).hexdigest()[:16]}-28px.npz" for a in FULL
    ]


def test_the_vinyals_split_has_the_published_counts_and_no_shared_character(tmp_path):
    data = std.load_standard("vinyals", _data_folder(tmp_path), base_url="http://127.0.0.1:9",
                             split_url="http://127.0.0.1:9")
    assert data.characters == {"train": 1028, "val": 172, "test": 423}
    for pool, chars in [(data.train, 1028), (data.val, 172), (data.test, 423)]:
        assert pool.images.shape == (chars * 4 * 20, 1, 28, 28)
        assert np.bincount(pool.labels).tolist() == [20] * (chars * 4)
    names = {part: {line.rsplit("/", 1)[0] for line in (SPLIT_DIR / f"{part}.txt").read_text().split()}
             for part in ("train", "val", "test")}
    assert not (names["train"] & names["test"]) and not (names["val"] & names["test"])
    assert not (names["train"] & names["val"])
    assert len(names["train"] | names["val"] | names["test"]) == 1623
    # A class is its character turned by a multiple of 90 degrees: rot090 is rot000 turned once.
    first = data.train.images[data.train.labels == 0][:, 0].numpy()
    second = data.train.images[data.train.labels == 1][:, 0].numpy()
    assert np.allclose(np.rot90(first, 1, axes=(1, 2)), second)
    trainval = std.load_standard("vinyals_trainval", _data_folder(tmp_path, "tv"), base_url="http://127.0.0.1:9",
                                 split_url="http://127.0.0.1:9")
    assert trainval.characters == {"train": 1200, "test": 423} and trainval.val is None


def test_split_lists_are_downloaded_with_pinned_checksums(tmp_path):
    lists = {f"{p}.txt": (SPLIT_DIR / f"{p}.txt").read_bytes() for p in std.SPLIT_SHA256}
    with OmniglotTestServer(lists) as server:
        path = std.fetch_split_list("test", tmp_path, server.base("good"))
        assert path == tmp_path / "splits" / "vinyals" / "test.txt" and path.read_bytes() == lists["test.txt"]
        with pytest.raises(og.OmniglotDataError, match="is not the published val list"):
            std.fetch_split_list("val", tmp_path / "other", server.base("corrupt"))
        assert not (tmp_path / "other" / "splits" / "vinyals" / "val.txt").exists()  # nothing half-written


def test_a_bad_line_in_a_split_list_names_file_and_line(tmp_path):
    path = tmp_path / "test.txt"
    path.write_text("Greek/character01/rot000\nGreek/character01/rot045\n")
    with pytest.raises(og.OmniglotDataError, match=r"test.txt:2: not an Alphabet/characterNN/rotDDD class"):
        std.read_split_list(path)


SMOKE = ["prototypical_networks", "matching_networks", "relation_network", "siamese", "omniglot_maml"]


@pytest.mark.parametrize("device", ["cpu", "cuda", "mps"])
@pytest.mark.parametrize("name", SMOKE)
def test_standard_smoke_run_on_every_available_device(name, device, tmp_path, capsys, monkeypatch):
    if device not in available_devices():
        pytest.skip(f"no {device} device on this machine")
    folder = _data_folder(tmp_path)
    monkeypatch.setenv(og.BASE_URL_ENV, "http://127.0.0.1:9")  # offline: only the folder can supply data
    code = main(["repro", "run", name, "--config", "standard_smoke", "--data-dir", str(folder), "--device", device,
                 "--work-dir", str(tmp_path / "runs"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "5way1shot_acc_pct:" in out
    assert (tmp_path / "runs" / name / "standard_smoke" / "standard.best.pt").exists()  # validation picked a model
