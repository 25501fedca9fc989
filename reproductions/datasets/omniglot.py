"""Omniglot (Lake, Salakhutdinov & Tenenbaum 2015): download, verify, decode and cache.

The archives come from the official repository (github.com/brendenlake/omniglot, folder ``python/``).
Where they are kept, in order of precedence:

1. ``--data-dir DIR`` (a command-line flag of every Omniglot command): the archives are in DIR itself.
   Archives already there (copied by hand, or from an earlier run) are verified and used, never re-fetched.
2. ``$MLATLAS_DATA_DIR/omniglot`` when the environment variable is set.
3. The platform's user data folder, e.g. ``~/.local/share/mlatlas/omniglot`` on Linux (honours
   ``$XDG_DATA_HOME``), ``~/Library/Application Support/mlatlas/omniglot`` on macOS.

Checksums (table :data:`ARCHIVES`). The four image archives are pinned by size and SHA-256 as published in
TensorFlow Datasets' checksum list for Omniglot (our own copies of the two small sets match it); the two full
archives are also pinned by the MD5 sums of torchvision's ``Omniglot`` class. ``all_runs.zip`` appears in neither
list: it is pinned by the SHA-256 we measured on a copy of the official file. An archive with no pinned value
(none today) has its SHA-256 written to ``checksums.json`` in the data folder on first use, and later uses must
match it (trust on first use); nothing else is ever written beside the archives. Every archive must pass a zip
integrity test. A mismatch is an error that names the file and what to do.

The two full archives may also be a *repack* of the official images (other zip bytes, same images): such an
archive is accepted when its **content digest** matches the pinned one, the SHA-256 of the text made of one line
``<member path>\t<sha256 of the member's bytes>\n`` per ``.png`` member, lines sorted by member path.

Archives are never extracted beside themselves (their folder may be read-only): images are decoded straight from
the zip, and the decoded 28x28 arrays are cached under ``$MLATLAS_CACHE_DIR/omniglot`` (else the platform's user
cache folder, e.g. ``~/.cache/mlatlas/omniglot``), keyed by the archive's SHA-256; an unwritable cache only means
no caching.

Downloads go through ``requests``, stream to ``<name>.part``, retry with exponential back-off and resume
from where they stopped with an HTTP ``Range`` request. The base URL can be changed with ``--base-url``
or ``$MLATLAS_OMNIGLOT_URL`` (a mirror, or a local test server).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import stat
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import platformdirs
import requests
from PIL import Image
from tqdm import tqdm

from mlatlas import netio

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master"
BASE_URL_ENV = "MLATLAS_OMNIGLOT_URL"
DATA_DIR_ENV = "MLATLAS_DATA_DIR"
CACHE_DIR_ENV = "MLATLAS_CACHE_DIR"
CHECKSUM_FILE = "checksums.json"
DOWNLOAD_DEADLINE_S = 1800.0  # all attempts for one archive (a few MB): minutes on a slow line, never for ever
IMAGE_SIZE = 28  # the resolution used by Vinyals et al. 2016 and most later few-shot work


class OmniglotDataError(RuntimeError):
    """A problem with the Omniglot files that the user can act on; the message says what to do."""


@dataclass(frozen=True)
class Archive:
    name: str  # file name, e.g. "images_background.zip"
    repo_path: str  # path inside the official repository
    size: int | None = None  # pinned size in bytes, when published
    sha256: str | None = None  # pinned SHA-256, when known
    md5: str | None = None  # pinned MD5, when published
    pin_source: str = ""  # where the pinned values come from
    content_digest: str | None = None  # pinned digest of the images, for repacks (see the module docstring)


ARCHIVES: dict[str, Archive] = {
    a.name: a
    for a in [
        Archive(
            "images_background.zip",
            "python/images_background.zip",
            size=9464212,
            sha256="ad41ab679c8b5d90b271ef46be6987cc81211774a695c29dcc5367b2b26ee640",
            md5="68d2efa1b9178cc56df9314c21c6e718",
            pin_source="size and SHA-256: TensorFlow Datasets url_checksums/omniglot.txt; MD5: torchvision",
            content_digest="75288906d655255988a488b7e81923d9c2194356d17b82642d9c51b19bd58594",
        ),
        Archive(
            "images_evaluation.zip",
            "python/images_evaluation.zip",
            size=6462886,
            sha256="1f61a8f3366785b057fc117d9228e78a16e3d976c8953b2a10fcc74cf0609cee",
            md5="6b91aef0f799c5bb55b94e3f2daec811",
            pin_source="size and SHA-256: TensorFlow Datasets url_checksums/omniglot.txt; MD5: torchvision",
            content_digest="8e90acd002099b58eaaf049e5d5d404f36553a151330c05a2c9c30cde54f4d42",
        ),
        Archive(
            "images_background_small1.zip",
            "python/images_background_small1.zip",
            size=1319022,
            sha256="f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4",
            pin_source="TensorFlow Datasets url_checksums/omniglot.txt (matches our copy of the official file)",
        ),
        Archive(
            "images_background_small2.zip",
            "python/images_background_small2.zip",
            size=1580917,
            sha256="3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f",
            pin_source="TensorFlow Datasets url_checksums/omniglot.txt (matches our copy of the official file)",
        ),
        Archive(
            "all_runs.zip",
            "python/one-shot-classification/all_runs.zip",
            size=352787,
            sha256="437c1eeab0af8484112e1b4cc0f3d541ec727f7c47b9b202da738af9dfd6c325",
            pin_source="measured on a copy of the official file (no published checksum)",
        ),
    ]
}


# --------------------------------------------------------------------------------------------------
# Where things live
# --------------------------------------------------------------------------------------------------


def dataset_folder(dataset: str, flag: str | os.PathLike | None = None) -> Path:
    """The folder that holds a data set's files: the flag, else $MLATLAS_DATA_DIR/<dataset>, else the user data dir
    (shared by every data set the reproductions download: omniglot, mnist)."""
    if flag:
        return Path(flag).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser() / dataset
    return Path(platformdirs.user_data_dir("mlatlas", appauthor=False)) / dataset


def resolve_data_dir(flag: str | os.PathLike | None = None) -> Path:
    """The folder that holds the Omniglot archives: the flag, else $MLATLAS_DATA_DIR/omniglot, else the user data dir."""
    return dataset_folder("omniglot", flag)


def resolve_cache_dir() -> Path:
    """Where decoded images are cached: $MLATLAS_CACHE_DIR/omniglot, else the user cache folder."""
    env = os.environ.get(CACHE_DIR_ENV)
    base = Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("mlatlas", appauthor=False))
    return base / "omniglot"


def resolve_base_url(flag: str | None = None) -> str:
    return (flag or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")


# --------------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------------


def _digests(path: Path) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.hexdigest()


def _read_recorded(data_dir: Path) -> dict[str, str]:
    path = data_dir / CHECKSUM_FILE
    if not path.exists():
        return {}
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise OmniglotDataError(f"{path}: unreadable checksum record ({exc}); delete it to start afresh") from exc
    return {k: v for k, v in recorded.items() if isinstance(v, str)}


def _record(data_dir: Path, name: str, sha256: str) -> None:
    recorded = _read_recorded(data_dir)
    if recorded.get(name) == sha256:
        return
    recorded[name] = sha256
    try:
        _atomic_write_text(data_dir / CHECKSUM_FILE, json.dumps(recorded, indent=2, sort_keys=True) + "\n")
    except OSError:  # a read-only folder of archives: the pinned checksums still protect them
        pass


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def content_digest(path: Path) -> str:
    """SHA-256 of ``<member>\t<sha256 of its bytes>\n`` over the archive's ``.png`` members, sorted by path."""
    with zipfile.ZipFile(path) as zf:
        lines = sorted(f"{info.filename}\t{hashlib.sha256(zf.read(info)).hexdigest()}\n"
                       for info in zf.infolist() if info.filename.endswith(".png"))
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def verify_archive(path: Path, archive: Archive, data_dir: Path) -> str:
    """Check ``path`` against the pinned and recorded checksums and the zip structure; return its SHA-256.

    An archive whose bytes are not the official file's is still accepted when the archive pins a content digest
    and its images match it (a repack). Raises :class:`OmniglotDataError` naming the file, the expected and
    observed values and the remedy.
    """
    size = path.stat().st_size
    hint = "The file is corrupt or truncated; delete it and run again to download a fresh copy."
    sha256, md5 = _digests(path)
    mismatch = None
    if archive.size is not None and size != archive.size:
        mismatch = f"{size:,} bytes where the official file has {archive.size:,}"
    elif archive.sha256 and sha256 != archive.sha256:
        mismatch = f"SHA-256 {sha256} ({size:,} bytes) does not match the pinned {archive.sha256}"
    elif archive.md5 and md5 != archive.md5:
        mismatch = f"MD5 {md5} ({size:,} bytes) does not match the pinned {archive.md5}"
    try:
        if mismatch and archive.content_digest is None:
            raise OmniglotDataError(f"{path}: {mismatch}. {hint}")
        if mismatch:
            digest = content_digest(path)
            if digest != archive.content_digest:
                raise OmniglotDataError(
                    f"{path}: neither the official file ({mismatch}) nor a repack of its images (content digest "
                    f"{digest} where the official images give {archive.content_digest}). {hint}"
                )
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise OmniglotDataError(f"{path}: not a readable zip archive ({exc}). {hint}") from exc
    if bad is not None:
        raise OmniglotDataError(f"{path}: member {bad!r} fails its CRC check. {hint}")
    recorded = _read_recorded(data_dir).get(archive.name)
    if recorded and recorded != sha256:
        raise OmniglotDataError(
            f"{path}: SHA-256 {sha256} differs from {recorded}, recorded in {data_dir / CHECKSUM_FILE} "
            f"when this archive was first verified. {hint}"
        )
    if not (archive.sha256 or archive.content_digest):  # nothing pinned: trust on first use, check ever after
        _record(data_dir, archive.name, sha256)
    return sha256


# --------------------------------------------------------------------------------------------------
# Download with retry and resume
# --------------------------------------------------------------------------------------------------


class _Interrupted(Exception):
    """The connection ended before the announced number of bytes arrived."""


def _download(url: str, part: Path, *, session: requests.Session, retries: int, timeout: float,
              backoff: float, progress: bool, deadline: float = DOWNLOAD_DEADLINE_S, max_size: int | None = None) -> None:
    """Stream ``url`` into ``part``, resuming with a Range request after each interruption. All attempts
    together end within ``deadline`` seconds; a body longer than ``max_size`` (the pinned size) is cut off."""
    last_error: Exception | None = None
    end = time.monotonic() + deadline
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(backoff * 2 ** (attempt - 1), max(0.0, end - time.monotonic())))
        if time.monotonic() >= end:
            last_error = netio.DeadlineExceeded(f"no complete download within {deadline:g} s")
            break
        opened: list[requests.Response] = []
        try:
            outcome = netio.within(end - time.monotonic(), lambda cancelled: _attempt(
                url, part, session, timeout, progress, end, max_size, cancelled, opened), url)
        except netio.DeadlineExceeded as exc:
            for resp in opened:
                netio.abort(resp)
            last_error = netio.DeadlineExceeded(f"no complete download within {deadline:g} s")
            break
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                _Interrupted) as exc:
            last_error = exc
            continue
        if outcome is None:
            return
        last_error = outcome
    kept = f"The partial file {part} is kept; run again to resume" if part.exists() else "Run again"
    raise OmniglotDataError(
        f"{url}: download failed after {attempt + 1} attempts ({last_error}). {kept}, or put {part.name.removesuffix('.part')} "
        f"in {part.parent} by hand (or pass --data-dir FOLDER where it already is)."
    )


def _attempt(url: str, part: Path, session: requests.Session, timeout: float, progress: bool, end: float,
             max_size: int | None, cancelled, opened: list) -> Exception | None:
    """One request of :func:`_download`: None when ``part`` is complete, the reason to try again otherwise."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with session.get(url, headers=headers, stream=True, timeout=timeout) as resp:
        opened.append(resp)
        if resp.status_code == 416:  # our partial file is not a prefix the server knows: start over
            part.unlink(missing_ok=True)
            return _Interrupted(f"server refused to resume at byte {have}")
        if resp.status_code == 404:
            raise OmniglotDataError(f"{url}: not found (HTTP 404); check --base-url / ${BASE_URL_ENV}")
        if resp.status_code >= 500:
            return requests.HTTPError(f"HTTP {resp.status_code}")
        if resp.status_code not in (200, 206):
            raise OmniglotDataError(f"{url}: HTTP {resp.status_code} {resp.reason}")
        resumed = resp.status_code == 206 and have > 0
        if resumed and not resp.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
            part.unlink(missing_ok=True)  # the server resumed somewhere else: start over
            return _Interrupted(f"unexpected Content-Range {resp.headers.get('Content-Range')!r}")
        if not resumed:
            have = 0  # the server sent the whole file
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length is not None and length.isdigit() else None
        if max_size is not None and total is not None and total > max_size:
            raise OmniglotDataError(f"{url}: the server announces {total:,} bytes, more than the pinned "
                                    f"{max_size:,}; check --base-url / ${BASE_URL_ENV}")
        limit = (max_size - have) if max_size is not None else 1 << 62
        with part.open("ab" if resumed else "wb") as fh, tqdm(
            total=total, initial=have, unit="B", unit_scale=True, desc=part.name.removesuffix(".part"),
            disable=not progress, leave=False,
        ) as bar:
            try:
                for chunk in netio.chunks(resp, cancelled, end, max_bytes=limit):
                    fh.write(chunk)
                    bar.update(len(chunk))
            except netio.TooLarge:
                fh.close()
                part.unlink(missing_ok=True)
                raise OmniglotDataError(f"{url}: the download grew past the pinned size of {max_size:,} bytes "
                                        f"(deleted it); check --base-url / ${BASE_URL_ENV}") from None
        got = part.stat().st_size
        if total is not None and got != total:
            raise _Interrupted(f"received {got:,} of {total:,} bytes")
        return None


def fetch_archive(name: str, data_dir: str | os.PathLike | None = None, *, base_url: str | None = None,
                  retries: int = 4, timeout: float = 30.0, backoff: float = 1.0, progress: bool = True,
                  session: requests.Session | None = None, deadline: float = DOWNLOAD_DEADLINE_S) -> Path:
    """Return the verified path of archive ``name`` in the data folder, downloading it if it is absent (all
    attempts within ``deadline`` seconds)."""
    if name not in ARCHIVES:
        raise OmniglotDataError(f"unknown Omniglot archive {name!r}; known: {', '.join(ARCHIVES)}")
    archive = ARCHIVES[name]
    folder = resolve_data_dir(data_dir)
    path = folder / name
    if path.exists():
        verify_archive(path, archive, folder)
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OmniglotDataError(f"{folder}: cannot create the data folder to download {name} into ({exc}); "
                                f"pass --data-dir FOLDER where the archives are, or a writable one") from exc
    url = f"{resolve_base_url(base_url)}/{archive.repo_path}"
    part = folder / (name + ".part")
    _download(url, part, session=session or requests.Session(), retries=retries, timeout=timeout,
              backoff=backoff, progress=progress, deadline=deadline, max_size=archive.size)
    try:
        verify_archive(part, archive, folder)
    except OmniglotDataError as exc:
        part.unlink(missing_ok=True)
        raise OmniglotDataError(f"downloaded {url} but it failed verification (deleted it): {exc}") from exc
    os.replace(part, path)
    return path


# --------------------------------------------------------------------------------------------------
# Images, decoded straight from the archive
# --------------------------------------------------------------------------------------------------


def _check_member(info: zipfile.ZipInfo, archive_path: Path) -> None:
    """Refuse an archive with members that would escape a folder if extracted: such an archive is not Omniglot."""
    name = info.filename
    pure = PurePosixPath(name.replace("\\", "/"))
    mode = info.external_attr >> 16
    problem = None
    if pure.is_absolute() or (len(name) > 1 and name[1] == ":"):
        problem = "is an absolute path"
    elif ".." in pure.parts:
        problem = "climbs out of the target folder"
    elif stat.S_ISLNK(mode):
        problem = "is a symbolic link"
    if problem:
        raise OmniglotDataError(f"{archive_path}: member {name!r} {problem}; refusing to read this archive")


def load_image(source, size: int | None = IMAGE_SIZE) -> np.ndarray:
    """Read one Omniglot PNG as float32 with ink = 1 and paper = 0, resized to ``size`` x ``size``."""
    with Image.open(source) as img:
        img = img.convert("L")
        if size is not None and img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.LANCZOS)
        pixels = np.asarray(img, dtype=np.float32) / 255.0
    return np.clip(1.0 - pixels, 0.0, 1.0)


@dataclass
class CharacterSet:
    """All drawings of a set of characters: ``images[c, d]`` is drawing ``d`` of character ``c``."""

    images: np.ndarray  # [characters, drawings, size, size], float32, ink = 1
    names: list[str]  # "Alphabet/characterNN"

    @property
    def alphabets(self) -> list[str]:
        return sorted({n.split("/")[0] for n in self.names})

    def subset(self, keep) -> CharacterSet:
        idx = [i for i, n in enumerate(self.names) if keep(n)]
        return CharacterSet(self.images[idx], [self.names[i] for i in idx])

    def __len__(self) -> int:
        return len(self.names)


def read_character_set(archive_path: Path, size: int = IMAGE_SIZE) -> CharacterSet:
    """Decode every ``<top>/Alphabet/characterNN/*.png`` member of an images archive (nothing is written)."""
    try:
        with zipfile.ZipFile(archive_path) as zf:
            members = zf.infolist()
            for info in members:
                _check_member(info, archive_path)
            by_char: dict[str, list[zipfile.ZipInfo]] = {}
            for info in members:
                parts = PurePosixPath(info.filename).parts
                if info.filename.endswith(".png") and len(parts) >= 3:
                    by_char.setdefault(f"{parts[-3]}/{parts[-2]}", []).append(info)
            if not by_char:
                raise OmniglotDataError(f"{archive_path}: no Alphabet/character/*.png members; is this an Omniglot "
                                        f"images archive?")
            names = sorted(by_char)
            counts = {len(by_char[n]) for n in names}
            if len(counts) != 1:
                raise OmniglotDataError(f"{archive_path}: characters have differing numbers of drawings "
                                        f"{sorted(counts)}")
            stacks = []
            for name in tqdm(names, desc=f"decoding {archive_path.name}", unit="char", leave=False):
                infos = sorted(by_char[name], key=lambda i: i.filename)
                stacks.append(np.stack([load_image(io.BytesIO(zf.read(i)), size) for i in infos]))
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise OmniglotDataError(f"{archive_path}: cannot read the images ({exc}); delete the file and run again "
                                f"to download a fresh copy") from exc
    return CharacterSet(np.stack(stacks), names)


@functools.lru_cache(maxsize=4)
def _cached_character_set(archive_path: Path, sha256: str, size: int) -> CharacterSet:
    """Decoded images of a verified archive, from the on-disk cache when it has them (keyed by the archive's
    SHA-256, so a changed archive is decoded anew). Treat the arrays as read-only."""
    cache = resolve_cache_dir() / f"{archive_path.name.removesuffix('.zip')}-{sha256[:16]}-{size}px.npz"
    try:
        with np.load(cache, allow_pickle=False) as npz:
            return CharacterSet(npz["images"], [str(n) for n in npz["names"]])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        pass  # absent or unreadable: decode again
    chars = read_character_set(archive_path, size)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=f".{cache.name}.", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, images=chars.images, names=np.array(chars.names))
            os.replace(tmp, cache)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError:
        pass  # an unwritable cache only costs decoding again next time
    return chars


def load_images(name: str, data_dir=None, size: int = IMAGE_SIZE, **fetch_kwargs) -> CharacterSet:
    """Fetch (if needed), verify and decode one images archive (e.g. ``images_background_small1.zip``)."""
    if not name.startswith("images_"):
        raise OmniglotDataError(f"{name} is not an images archive")
    path = fetch_archive(name, data_dir, **fetch_kwargs)
    return _cached_character_set(path.resolve(), _digests(path)[0], size)


def main(argv: list[str] | None = None) -> int:
    """``python -m reproductions.datasets.omniglot``: download and verify archives ahead of time."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m reproductions.datasets.omniglot",
        description="Download and verify the Omniglot archives in the data folder.",
    )
    parser.add_argument("archives", nargs="*", default=list(ARCHIVES), metavar="ARCHIVE",
                        help=f"archives to fetch (default: all of {', '.join(ARCHIVES)})")
    add_data_arguments(parser)
    args = parser.parse_args(argv)
    try:
        for name in args.archives:
            path = fetch_archive(name, args.data_dir, base_url=args.base_url)
            print(f"{name}: ok -> {path}")
    except OmniglotDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def add_data_arguments(parser) -> None:
    """The ``--data-dir`` / ``--base-url`` flags shared by every command that reads Omniglot."""
    parser.add_argument(
        "--data-dir", default=None,
        help=f"folder holding the Omniglot archives (default: ${DATA_DIR_ENV}/omniglot if set, else "
             f"{resolve_data_dir()}); archives already there are verified and used as they are",
    )
    parser.add_argument(
        "--base-url", default=None,
        help=f"where to download from (default: ${BASE_URL_ENV}, else {DEFAULT_BASE_URL})",
    )


if __name__ == "__main__":
    raise SystemExit(main())
