"""Every network operation ends within its overall deadline, even against a server that sends one byte a
second; downloads stop at the pinned size and `add` caps what it reads, compressed and decompressed. Real
servers on 127.0.0.1."""

from __future__ import annotations

import gzip
import socket
import threading
import time

import pytest
import requests

from mlatlas import netio
from mlatlas.contrib.arxiv import ArxivClient, ArxivError
from mlatlas.contrib.links import LinkChecker

DEADLINE = 1.0
SLACK = 3.0  # the test machine is shared and busy; one byte a second would take minutes


class Trickle:
    """A raw TCP server on 127.0.0.1 that answers every connection one byte a second: either its headers
    (``headers=True``) or, after prompt headers announcing ``length`` bytes, its body."""

    def __init__(self, headers: bool = False, length: int = 10_000):
        self.headers, self.length = headers, length
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def url(self, path: str = "/x") -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}{path}"

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {self.length}\r\n\r\n".encode()
        slow = head if self.headers else b"a" * self.length
        try:
            conn.recv(65536)
            if not self.headers:
                conn.sendall(head)
            for i in range(len(slow)):
                if self.stop.is_set():
                    break
                conn.sendall(slow[i:i + 1])
                time.sleep(1.0)
        except OSError:
            pass
        finally:
            conn.close()

    def __enter__(self) -> "Trickle":
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.sock.close()


class Fixed:
    """A raw TCP server answering every request at once with ``head`` + ``body`` (no Content-Length check)."""

    def __init__(self, head: bytes, body: bytes):
        self.reply = head + body
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        threading.Thread(target=self._serve, daemon=True).start()

    def url(self, path: str = "/x") -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}{path}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                conn.recv(65536)
                conn.sendall(self.reply)
            except OSError:
                pass
            finally:
                conn.close()

    def __enter__(self) -> "Fixed":
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()


@pytest.fixture(params=["slow headers", "slow body"])
def trickle(request):
    with Trickle(headers=request.param == "slow headers") as server:
        yield server


def timed(fn, *args, **kwargs):
    start = time.monotonic()
    try:
        fn(*args, **kwargs)
    except Exception as exc:  # the caller checks what was raised
        return time.monotonic() - start, exc
    return time.monotonic() - start, None


def test_get_body_gives_up_at_the_deadline(trickle):
    took, exc = timed(netio.get_body, requests.Session(), trickle.url(), deadline_s=DEADLINE, timeout=5.0,
                      max_bytes=1 << 20)
    assert isinstance(exc, netio.DeadlineExceeded) and took < DEADLINE + SLACK


def test_add_asks_arxiv_within_its_deadline(trickle):
    client = ArxivClient(api_url=trickle.url("/api/query"), delay=0, timeout=DEADLINE, retries=1, backoff=0.01)
    took, exc = timed(client.fetch, ["1703.03400"])
    assert isinstance(exc, ArxivError) and "no answer within" in str(exc)
    assert took < 2 * DEADLINE + SLACK  # two attempts


def test_links_checks_within_its_deadline(trickle):
    checker = LinkChecker(timeout=DEADLINE, retries=0, backoff=0.01, per_host=2, workers=2, dns_control="localhost")
    start = time.monotonic()
    result = checker.check_one(trickle.url("/page"))
    if trickle.headers:
        assert result.status == "unknown" and "timed out" in result.note
    else:  # links reads only the status line and headers, never the body
        assert result.status == "ok"
    assert time.monotonic() - start < DEADLINE + SLACK


def test_omniglot_download_ends_at_its_overall_deadline(trickle, tmp_path):
    from reproductions.datasets import omniglot

    took, exc = timed(omniglot.fetch_archive, "images_background.zip", tmp_path, base_url=trickle.url(""),
                      retries=5, timeout=5.0, backoff=0.01, progress=False, deadline=DEADLINE)
    assert isinstance(exc, omniglot.OmniglotDataError) and "within" in str(exc)
    assert took < DEADLINE + SLACK


def test_split_list_download_ends_at_its_deadline(trickle, tmp_path):
    from reproductions.datasets import omniglot, omniglot_standard

    took, exc = timed(omniglot_standard.fetch_split_list, "train", tmp_path, base_url=trickle.url(""),
                      timeout=DEADLINE)
    assert isinstance(exc, omniglot.OmniglotDataError) and took < DEADLINE + SLACK
    assert not (tmp_path / "splits" / "vinyals" / "train.txt").exists()


def test_mnist_download_ends_at_its_deadline(trickle, tmp_path, monkeypatch):
    from reproductions.datasets import mnist

    monkeypatch.setenv(mnist.BASE_URL_ENV, trickle.url(""))
    took, exc = timed(mnist.fetch, "t10k-labels-idx1-ubyte.gz", tmp_path, timeout=DEADLINE, deadline=DEADLINE,
                      progress=False)
    assert isinstance(exc, mnist.MnistDataError) and took < DEADLINE + SLACK
    assert not (tmp_path / "t10k-labels-idx1-ubyte.gz").exists()


def test_a_download_stops_at_the_pinned_size(tmp_path):
    from reproductions.datasets import omniglot

    # no Content-Length: only counting the bytes can stop it
    with Fixed(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", b"z" * 300_000) as server:
        part = tmp_path / "a.zip.part"
        with pytest.raises(omniglot.OmniglotDataError, match="pinned size of 1,000 bytes"):
            omniglot._download(server.url("/a.zip"), part, session=requests.Session(), retries=0, timeout=5.0,
                               backoff=0.01, progress=False, deadline=30.0, max_size=1000)
        assert not part.exists()
        # an announced length over the pin is refused before reading
        with Fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n", b"z" * 300_000) as announced:
            with pytest.raises(omniglot.OmniglotDataError, match="more than the pinned"):
                omniglot._download(announced.url("/a.zip"), part, session=requests.Session(), retries=0,
                                   timeout=5.0, backoff=0.01, progress=False, deadline=30.0, max_size=1000)


def test_mnist_download_stops_at_the_official_size(tmp_path, monkeypatch):
    from reproductions.datasets import mnist

    with Fixed(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", b"z" * 100_000) as server:
        monkeypatch.setenv(mnist.BASE_URL_ENV, server.url(""))
        with pytest.raises(mnist.MnistDataError, match="pinned size of 4,542 bytes"):
            mnist.fetch("t10k-labels-idx1-ubyte.gz", tmp_path, timeout=30.0, retries=0, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_add_caps_the_answer_as_sent(tmp_path):
    body = b"<feed>" + b"x" * 50_000 + b"</feed>"
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    with Fixed(head, body) as server:
        client = ArxivClient(api_url=server.url("/api/query"), delay=0, timeout=10, retries=0, max_bytes=10_000)
        with pytest.raises(ArxivError, match="larger than 10,000 bytes"):
            client.fetch(["1703.03400"])


def test_add_caps_the_answer_once_decompressed(tmp_path):
    bomb = gzip.compress(b"\0" * 5_000_000, compresslevel=9)  # ~5 KB that inflate to 5 MB
    assert len(bomb) < 10_000
    head = (f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n\r\n").encode()
    with Fixed(head, bomb) as server:
        client = ArxivClient(api_url=server.url("/api/query"), delay=0, timeout=10, retries=0, max_bytes=10_000)
        with pytest.raises(ArxivError, match="decodes to more than 40,000 bytes"):
            client.fetch(["1703.03400"])
