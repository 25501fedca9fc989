"""MNIST (LeCun, Cortes & Burges): download, verify and read the four official files.

Where the files are kept, in order of precedence: ``data_dir`` (a ``--data-dir`` flag or a config key) itself,
else ``$MLATLAS_DATA_DIR/mnist``, else the platform's user data folder (``~/.local/share/mlatlas/mnist`` on Linux).
A file already there (copied by hand or from an earlier run) is verified and used, never fetched again.

Each file is pinned by its size, the MD5 published with the dataset (the sums torchvision checks) and the
SHA-256 we measured on copies byte-identical to the official downloads; a file that fails any of them is an error
naming it. Downloads come from the official page (``http://yann.lecun.com/exdb/mnist``), which often refuses
automated clients, then from the mirror torchvision uses; ``--base-url`` / ``$MLATLAS_MNIST_URL`` replaces both.
The download itself (streaming to ``<name>.part``, retries, resume with an HTTP Range request) is the one of
:mod:`reproductions.datasets.omniglot`.

The files are gzipped IDX: a big-endian header (magic 2051 and count, rows, columns for images; magic 2049 and
count for labels) followed by unsigned bytes.

    python -m reproductions.datasets.mnist [--data-dir DIR]    # fetch and verify all four files
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests

from reproductions.datasets import omniglot

DATA_DIR_ENV = omniglot.DATA_DIR_ENV
BASE_URL_ENV = "MLATLAS_MNIST_URL"
BASE_URLS = ("http://yann.lecun.com/exdb/mnist", "https://ossci-datasets.s3.amazonaws.com/mnist")
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049


class MnistDataError(ValueError):
    """A problem with the MNIST files that the user can act on; the message names the file and what to do."""


@dataclass(frozen=True)
class File:
    name: str
    size: int
    md5: str
    sha256: str


FILES = {f.name: f for f in [
    File("train-images-idx3-ubyte.gz", 9912422, "f68b3c2dcbeaaa9fbdd348bbdeb94873",
         "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    File("train-labels-idx1-ubyte.gz", 28881, "d53e105ee54ea40749a09fcbcd1e9432",
         "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    File("t10k-images-idx3-ubyte.gz", 1648877, "9fb629c4189551a2d022fa330f9573f3",
         "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    File("t10k-labels-idx1-ubyte.gz", 4542, "ec29112dd5afa0611ce80d1b7f02629c",
         "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
]}
SPLITS = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000)}


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding the MNIST files: ``data_dir``, else ``$MLATLAS_DATA_DIR/mnist``, else the user data dir."""
    return omniglot.dataset_folder("mnist", data_dir)


def verify(path: Path, file: File) -> None:
    """Raise :class:`MnistDataError` unless ``path`` has the pinned size, MD5 and SHA-256."""
    hint = "The file is corrupt or not the official one; delete it and run again to download a fresh copy."
    size = path.stat().st_size
    if size != file.size:
        raise MnistDataError(f"{path}: {size:,} bytes where the official file has {file.size:,}. {hint}")
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
            md5.update(block)
    if md5.hexdigest() != file.md5:
        raise MnistDataError(f"{path}: MD5 {md5.hexdigest()} does not match the published {file.md5}. {hint}")
    if sha.hexdigest() != file.sha256:
        raise MnistDataError(f"{path}: SHA-256 {sha.hexdigest()} does not match the pinned {file.sha256}. {hint}")


def fetch(name: str, data_dir: str | os.PathLike | None = None, *, base_url: str | None = None,
          retries: int = 2, timeout: float = 30.0, progress: bool = True,
          deadline: float = omniglot.DOWNLOAD_DEADLINE_S) -> Path:
    """The verified path of MNIST file ``name`` in the data folder, downloaded first if it is absent. ``timeout``
    bounds each read, ``deadline`` all attempts at one address together."""
    if name not in FILES:
        raise MnistDataError(f"unknown MNIST file {name!r}; known: {', '.join(FILES)}")
    file = FILES[name]
    folder = resolve_data_dir(data_dir)
    path = folder / name
    if path.exists():
        verify(path, file)
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MnistDataError(f"{folder}: cannot create the data folder to download {name} into ({exc}); pass "
                             f"--data-dir FOLDER where the files are, or a writable one") from exc
    part = folder / (name + ".part")
    chosen = base_url or os.environ.get(BASE_URL_ENV)
    errors = []
    for base in [chosen] if chosen else BASE_URLS:
        url = f"{base.rstrip('/')}/{name}"
        try:
            omniglot._download(url, part, session=requests.Session(), retries=retries, timeout=timeout,
                               backoff=1.0, progress=progress, deadline=deadline,
                               max_size=file.size)  # stop at the pinned size
        except omniglot.OmniglotDataError as exc:  # the shared downloader's error: try the next address
            errors.append(str(exc))
            continue
        try:
            verify(part, file)
        except MnistDataError as exc:
            part.unlink(missing_ok=True)
            raise MnistDataError(f"downloaded {url} but it failed verification (deleted it): {exc}") from None
        os.replace(part, path)
        return path
    raise MnistDataError(f"could not download {name} ({' / '.join(errors)}) Put the official file in {folder} "
                         f"(or pass --data-dir / set ${DATA_DIR_ENV} to a folder holding mnist/{name}), or set "
                         f"${BASE_URL_ENV} to a mirror.")


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The array in a gzipped IDX file whose header must start with ``magic`` (2051 images, 2049 labels)."""
    try:
        with gzip.open(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise MnistDataError(f"{path}: not a readable gzip file ({exc})") from None
    dims = 3 if magic == IMAGE_MAGIC else 1
    header = 4 * (1 + dims)
    if len(data) < header or struct.unpack(">I", data[:4])[0] != magic:
        raise MnistDataError(f"{path}: not an IDX file with magic number {magic}")
    shape = struct.unpack(f">{dims}I", data[4:header])
    if len(data) != header + int(np.prod(shape)):
        raise MnistDataError(f"{path}: header announces shape {shape} but the file holds {len(data) - header} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def load(split: str = "train", data_dir: str | os.PathLike | None = None, **fetch_kwargs) -> tuple[np.ndarray, np.ndarray]:
    """``(images [n, 28, 28] uint8, labels [n] uint8)`` of the official ``train`` (60,000) or ``test`` (10,000)
    set, fetched and verified first when needed."""
    if split not in SPLITS:
        raise MnistDataError(f"unknown MNIST split {split!r}; use 'train' or 'test'")
    images_name, labels_name, count = SPLITS[split]
    images = read_idx(fetch(images_name, data_dir, **fetch_kwargs), IMAGE_MAGIC)
    labels = read_idx(fetch(labels_name, data_dir, **fetch_kwargs), LABEL_MAGIC)
    if len(images) != count or len(labels) != count or images.shape[1:] != (28, 28) or labels.max() > 9:
        raise MnistDataError(f"MNIST {split}: expected {count} 28x28 images with labels 0-9, got {images.shape} "
                             f"and {labels.shape}")
    return images, labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reproductions.datasets.mnist", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", help=f"folder holding the files (default: ${DATA_DIR_ENV}/mnist or the user "
                                           "data folder)")
    parser.add_argument("--base-url", help=f"download from this address instead (also ${BASE_URL_ENV})")
    args = parser.parse_args(argv)
    try:
        for name in FILES:
            print(fetch(name, args.data_dir, base_url=args.base_url))
    except MnistDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
