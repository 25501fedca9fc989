"""The Omniglot loader against a real HTTP server on 127.0.0.1 serving the official archives (and broken copies)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import stat
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from _data import OMNIGLOT
from _omniglot_server import OmniglotTestServer
from reproductions.datasets import omniglot as og

SMALL1 = "images_background_small1.zip"
NEEDED = [SMALL1, "all_runs.zip"]

pytestmark = pytest.mark.skipif(
    not all((OMNIGLOT / n).exists() for n in NEEDED),
    reason=f"the official Omniglot archives are not in {OMNIGLOT} (../shared/data/omniglot)",
)


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return {n: (OMNIGLOT / n).read_bytes() for n in NEEDED}


@pytest.fixture
def server(files):
    with OmniglotTestServer(files) as srv:
        yield srv


def fetch(name, data_dir, base, **kw):
    return og.fetch_archive(name, data_dir, base_url=base, retries=kw.pop("retries", 3), backoff=0,
                            timeout=10, progress=False, **kw)


def test_download_verify_and_decode(server, tmp_path, files):
    path = fetch(SMALL1, tmp_path, server.base("good"))
    assert path == tmp_path / SMALL1 and path.read_bytes() == files[SMALL1]
    # The request went to the official repository layout under the base URL.
    assert server.log == [("/good/python/images_background_small1.zip", None)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [SMALL1]  # pinned: nothing else is written there
    chars = og.read_character_set(path)
    assert chars.images.shape == (136, 20, 28, 28) and chars.images.dtype == np.float32
    assert chars.alphabets == ["Balinese", "Early_Aramaic", "Greek", "Korean", "Latin"]
    # ink = 1 on a white page: a small minority of pixels are inked
    assert 0.02 < chars.images.mean() < 0.3 and chars.images.max() > 0.9 and chars.images.min() >= 0
    # Second use: served from the cache without any request.
    fetch(SMALL1, tmp_path, server.base("good"))
    assert len(server.log) == 1


def test_interrupted_download_resumes_with_range(server, tmp_path, files):
    path = fetch("all_runs.zip", tmp_path, server.base("flaky"))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == og.ARCHIVES["all_runs.zip"].sha256
    assert len(server.log) == 2
    assert server.log[0][1] is None
    half = len(files["all_runs.zip"]) // 2
    # Resumed from the bytes kept on disk (up to where the connection dropped), not from zero.
    resumed_at = int(server.log[1][1].removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_at <= half
    assert not (tmp_path / "all_runs.zip.part").exists()


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    part = tmp_path / "all_runs.zip.part"
    part.write_bytes(b"stale bytes from an earlier attempt")
    path = fetch("all_runs.zip", tmp_path, server.base("norange"))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == og.ARCHIVES["all_runs.zip"].sha256


def test_gives_up_after_retries_and_keeps_partial_file(server, tmp_path):
    with pytest.raises(og.OmniglotDataError, match="download failed after 3 attempts.*run again to resume"):
        fetch("all_runs.zip", tmp_path, server.base("dropping"), retries=2)
    assert (tmp_path / "all_runs.zip.part").stat().st_size > 0
    assert [r for _, r in server.log][1:] != [None, None]  # later attempts asked to resume


@pytest.mark.parametrize("mode", ["corrupt", "truncated"])
def test_corrupt_or_truncated_download_fails_clearly(server, tmp_path, mode):
    with pytest.raises(og.OmniglotDataError) as err:
        fetch(SMALL1, tmp_path, server.base(mode))
    message = str(err.value)
    # A truncated copy already fails the pinned size; a corrupt one of the right size, the pinned SHA-256.
    assert ("bytes where the official file has" if mode == "truncated" else "SHA-256") in message
    assert "corrupt or truncated" in message and SMALL1 in message
    assert not (tmp_path / SMALL1).exists() and not (tmp_path / (SMALL1 + ".part")).exists()


def test_missing_file_is_a_clear_error(server, tmp_path):
    with pytest.raises(og.OmniglotDataError, match="HTTP 404"):
        fetch("images_background_small2.zip", tmp_path, server.base("good"))


def test_archive_already_on_disk_is_used_without_network(tmp_path):
    shutil.copy(OMNIGLOT / SMALL1, tmp_path / SMALL1)
    # Port 9 on 127.0.0.1 (discard) has no server: any request would fail.
    path = fetch(SMALL1, tmp_path, "http://127.0.0.1:9")
    assert path == tmp_path / SMALL1


def test_corrupt_archive_on_disk_fails_with_message_and_cli_exit_code(tmp_path, capsys):
    data = bytearray((OMNIGLOT / SMALL1).read_bytes())
    data[1000] ^= 0xFF
    (tmp_path / SMALL1).write_bytes(bytes(data))
    with pytest.raises(og.OmniglotDataError, match=f"{SMALL1}: SHA-256 .* does not match the pinned"):
        fetch(SMALL1, tmp_path, "http://127.0.0.1:9")
    assert (tmp_path / SMALL1).exists()  # a user's own file is never deleted
    status = og.main([SMALL1, "--data-dir", str(tmp_path), "--base-url", "http://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert status == 1 and err.startswith("error: ") and "Traceback" not in err


def test_full_archives_are_checked_against_published_checksums(tmp_path, monkeypatch):
    # A valid zip under the name of the full background set fails: its size is pinned ...
    shutil.copy(OMNIGLOT / SMALL1, tmp_path / "images_background.zip")
    with pytest.raises(og.OmniglotDataError, match="1,319,022 bytes where the official file has 9,464,212"):
        fetch("images_background.zip", tmp_path, "http://127.0.0.1:9")
    # ... and so are its SHA-256 and MD5 (checked here with the size pin lifted).
    entry = og.ARCHIVES["images_background.zip"]
    monkeypatch.setitem(og.ARCHIVES, entry.name, og.Archive(entry.name, entry.repo_path, sha256=entry.sha256))
    with pytest.raises(og.OmniglotDataError, match="SHA-256 .* does not match the pinned ad41ab67"):
        fetch("images_background.zip", tmp_path, "http://127.0.0.1:9")
    monkeypatch.setitem(og.ARCHIVES, entry.name, og.Archive(entry.name, entry.repo_path, md5=entry.md5))
    with pytest.raises(og.OmniglotDataError, match="MD5 .* does not match the pinned 68d2efa1"):
        fetch("images_background.zip", tmp_path, "http://127.0.0.1:9")


def test_pinned_small_archives_match_the_shared_copies():
    for name in NEEDED:
        data = (OMNIGLOT / name).read_bytes()
        assert len(data) == og.ARCHIVES[name].size
        assert hashlib.sha256(data).hexdigest() == og.ARCHIVES[name].sha256


def test_unpinned_archive_is_recorded_on_first_use_and_checked_after(server, tmp_path, monkeypatch, files):
    monkeypatch.setitem(og.ARCHIVES, SMALL1, og.Archive(SMALL1, "python/" + SMALL1))
    path = fetch(SMALL1, tmp_path, server.base("good"))
    observed = hashlib.sha256(files[SMALL1]).hexdigest()
    assert json.loads((tmp_path / og.CHECKSUM_FILE).read_text())[SMALL1] == observed
    # Swap in a different, structurally valid zip: the recorded checksum catches it.
    shutil.copy(OMNIGLOT / "all_runs.zip", path)
    with pytest.raises(og.OmniglotDataError, match="differs from .* recorded"):
        fetch(SMALL1, tmp_path, server.base("good"))


def test_truncated_unpinned_archive_fails_zip_check(server, tmp_path, monkeypatch):
    monkeypatch.setitem(og.ARCHIVES, SMALL1, og.Archive(SMALL1, "python/" + SMALL1))
    with pytest.raises(og.OmniglotDataError, match="not a readable zip archive"):
        fetch(SMALL1, tmp_path, server.base("truncated"))


def _zip_with(tmp_path: Path, name: str, *, symlink: bool = False) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("evil/ok.txt", "fine")
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd" if symlink else "escaped")
    path = tmp_path / "sub" / "evil.zip"
    path.parent.mkdir()
    path.write_bytes(buf.getvalue())
    return path


@pytest.mark.parametrize("member,symlink,why", [
    ("../escaped.txt", False, "climbs out"),
    ("evil/../../escaped.txt", False, "climbs out"),
    ("/tmp/escaped.txt", False, "absolute path"),
    ("evil/link", True, "symbolic link"),
])
def test_archives_with_escaping_members_are_refused(tmp_path, member, symlink, why):
    archive = _zip_with(tmp_path, member, symlink=symlink)
    with pytest.raises(og.OmniglotDataError, match=why):
        og.read_character_set(archive)
    assert not (tmp_path / "escaped.txt").exists()
    assert sorted(p.name for p in archive.parent.iterdir()) == ["evil.zip"]  # nothing half-written


def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv(og.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):  # XDG_DATA_HOME is a Linux convention
        assert og.resolve_data_dir() == tmp_path / "xdg" / "mlatlas" / "omniglot"
    monkeypatch.setenv(og.DATA_DIR_ENV, str(tmp_path / "env"))
    assert og.resolve_data_dir() == tmp_path / "env" / "omniglot"
    assert og.resolve_data_dir(tmp_path / "flag") == tmp_path / "flag"
    monkeypatch.setenv(og.BASE_URL_ENV, "http://127.0.0.1:1/mirror/")
    assert og.resolve_base_url() == "http://127.0.0.1:1/mirror"
    assert og.resolve_base_url("http://127.0.0.1:2") == "http://127.0.0.1:2"
