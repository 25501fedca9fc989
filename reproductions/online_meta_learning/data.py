"""MNIST (LeCun, Cortes & Burges): the four official IDX files, downloaded, verified and read.

Where the files are kept, in order of precedence: the ``data.data_dir`` setting (``mlatlas repro run ... --data-dir
DIR`` sets it; the files sit in DIR itself), ``$MLATLAS_DATA_DIR/mnist``, else the user data folder
(``~/.local/share/mlatlas/mnist`` on Linux). Files already there are verified and used; missing ones are downloaded
from the official site (``http://yann.lecun.com/exdb/mnist/``), then from the mirror torchvision uses, and every
file must match its published MD5 and the SHA-256 pinned below, or it is refused with an error naming it.
``python -m reproductions.online_meta_learning.data [--data-dir DIR]`` fetches and checks them ahead of time.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs
import requests

from mlatlas import netio

DATA_DIR_ENV = "MLATLAS_DATA_DIR"
BASE_URL_ENV = "MLATLAS_MNIST_URL"
SOURCES = ("http://yann.lecun.com/exdb/mnist", "https://ossci-datasets.s3.amazonaws.com/mnist")


class MnistDataError(ValueError):
    """An MNIST file that cannot be used; the message names it and says what to do."""


@dataclass(frozen=True)
class MnistFile:
    name: str
    md5: str  # as published with the dataset (and by torchvision)
    sha256: str  # measured on the official files
    size: int = 0  # bytes of the official file: a download stops there


FILES = {f.name: f for f in [
    MnistFile("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873",
              "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
    MnistFile("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432",
              "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
    MnistFile("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3",
              "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
    MnistFile("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c",
              "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
]}
SPLITS = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def resolve_data_dir(flag: str | os.PathLike | None = None) -> Path:
    """The folder holding the MNIST files: the flag, else $MLATLAS_DATA_DIR/mnist, else the user data folder."""
    if flag:
        return Path(flag).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser() / "mnist"
    return Path(platformdirs.user_data_dir("mlatlas", appauthor=False)) / "mnist"


def verify(path: Path, spec: MnistFile) -> None:
    """Raise :class:`MnistDataError` unless ``path`` has the pinned MD5 and SHA-256."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            md5.update(block)
            sha.update(block)
    if md5.hexdigest() != spec.md5 or sha.hexdigest() != spec.sha256:
        raise MnistDataError(f"{path}: checksum mismatch (SHA-256 {sha.hexdigest()}, expected {spec.sha256}); the "
                             "file is corrupt or not the official one: delete it and run again to download it afresh")


def fetch(name: str, data_dir: str | os.PathLike | None = None, *, timeout: float = 60.0) -> Path:
    """The verified path of MNIST file ``name``, downloaded into the data folder if absent."""
    spec = FILES[name]
    folder = resolve_data_dir(data_dir)
    path = folder / name
    if path.exists():
        verify(path, spec)
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MnistDataError(f"{folder}: cannot create the data folder to download {name} into "
                             f"({exc.strerror or exc}); pass --data-dir FOLDER where the files are, or a writable one") from None
    part = folder / f"{name}.part"
    sources = [os.environ[BASE_URL_ENV]] if os.environ.get(BASE_URL_ENV) else list(SOURCES)
    errors = []
    for base in sources:
        url = f"{base.rstrip('/')}/{name}"
        try:
            _download(url, part, spec, timeout)
            verify(part, spec)
        except (requests.RequestException, MnistDataError) as exc:
            errors.append(f"{url}: {exc}")
            part.unlink(missing_ok=True)
            continue
        os.replace(part, path)
        return path
    raise MnistDataError(f"{name}: could not be downloaded ({'; '.join(errors)}); put the official file in {folder} "
                         "by hand, or point --data-dir / $MLATLAS_DATA_DIR at a folder that holds it")


def _download(url: str, part: Path, spec: MnistFile, deadline: float) -> None:
    """``url`` into ``part`` within ``deadline`` seconds in all, never more than the official file's size."""
    end = time.monotonic() + deadline
    opened: list[requests.Response] = []

    def work(cancelled) -> None:
        with requests.get(url, stream=True, timeout=deadline, headers={"Accept-Encoding": "identity"}) as resp:
            opened.append(resp)
            resp.raise_for_status()
            with part.open("wb") as fh:
                for chunk in netio.chunks(resp, cancelled, end, max_bytes=spec.size or 1 << 62):
                    fh.write(chunk)

    try:
        netio.within(deadline, work, url)
    except netio.DeadlineExceeded:
        for resp in opened:
            netio.abort(resp)
        raise


def read_idx(path: Path) -> np.ndarray:
    """The array in a gzipped IDX file (uint8 images [n, 28, 28] or labels [n])."""
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise MnistDataError(f"{path}: not a readable gzip file ({exc})") from exc
    magic, ndim = int.from_bytes(raw[:4], "big"), raw[3]
    if magic not in (2049, 2051):
        raise MnistDataError(f"{path}: not an IDX file of unsigned bytes (magic number {magic})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise MnistDataError(f"{path}: holds {data.size} values where its header announces {shape}")
    return data.reshape(shape)


def load(split: str, data_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 [n, 28, 28], labels int64 [n])`` of the ``train`` (60,000) or ``test`` (10,000) split."""
    images_name, labels_name = SPLITS[split]
    images, labels = read_idx(fetch(images_name, data_dir)), read_idx(fetch(labels_name, data_dir))
    if len(images) != len(labels):
        raise MnistDataError(f"MNIST {split}: {len(images)} images but {len(labels)} labels")
    return images, labels.astype(np.int64)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m reproductions.online_meta_learning.data",
                                     description="Download and verify the four MNIST files.")
    parser.add_argument("--data-dir", default=None, help=f"folder for the files (default: {resolve_data_dir()})")
    args = parser.parse_args(argv)
    try:
        for name in FILES:
            print(f"{name}: ok -> {fetch(name, args.data_dir)}")
    except MnistDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
