"""Network reads with an overall deadline and size caps.

``--timeout`` style limits in requests bound each socket read, not the request: a server that sends one byte a
second holds a client for ever. :func:`within` runs one whole request (connect, headers, body) in a daemon
thread and gives up after ``seconds``, closing the connection it can reach; :func:`read_body` reads a streamed
body under byte caps (what travelled and what it decodes to) and a deadline.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import requests

T = TypeVar("T")


class DeadlineExceeded(requests.Timeout):
    """The whole operation took longer than its deadline (a :class:`requests.Timeout`, so callers that handle
    time-outs handle this one too)."""


class TooLarge(requests.RequestException):
    """The answer is larger than the cap."""


def within(seconds: float, fn: Callable[[threading.Event], T], what: str = "the server") -> T:
    """``fn(cancelled)`` run to completion within ``seconds`` or :class:`DeadlineExceeded`. ``fn`` should
    check ``cancelled`` between reads and stop writing anything once it is set."""
    cancelled = threading.Event()
    box: dict[str, object] = {}

    def work() -> None:
        try:
            box["value"] = fn(cancelled)
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=work, name="mlatlas-net", daemon=True)
    worker.start()
    worker.join(max(0.0, seconds))
    if worker.is_alive():
        cancelled.set()
        raise DeadlineExceeded(f"{what} did not finish answering within {seconds:g} s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def abort(response: requests.Response) -> None:
    """Best effort: shut the response's socket so a read blocked on it returns now."""
    raw = getattr(response, "raw", None)
    for sock in (getattr(getattr(raw, "_connection", None), "sock", None),
                 getattr(getattr(getattr(getattr(raw, "_fp", None), "fp", None), "raw", None), "_sock", None)):
        if isinstance(sock, socket.socket):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
    try:
        response.close()
    except Exception:  # closing twice, or from another thread: nothing left to do
        pass


def chunks(response: requests.Response, cancelled: threading.Event, deadline: float, *, max_bytes: int,
           max_decoded: int | None = None, chunk_size: int = 1 << 16) -> Iterator[bytes]:
    """The decoded body of a streamed ``response`` chunk by chunk; :class:`TooLarge` as soon as more than
    ``max_bytes`` travelled (compressed) or more than ``max_decoded`` came out of decoding, and
    :class:`DeadlineExceeded` once ``time.monotonic()`` passes ``deadline`` or ``cancelled`` is set."""
    max_decoded = max_bytes if max_decoded is None else max_decoded
    decoded = 0
    for chunk in response.iter_content(chunk_size=chunk_size):
        if cancelled.is_set() or time.monotonic() > deadline:
            raise DeadlineExceeded("the answer did not arrive within the deadline")
        decoded += len(chunk)
        travelled = response.raw.tell() if hasattr(response.raw, "tell") else decoded
        if travelled > max_bytes:
            raise TooLarge(f"the answer is larger than {max_bytes:,} bytes")
        if decoded > max_decoded:
            raise TooLarge(f"the answer decodes to more than {max_decoded:,} bytes")
        yield chunk


def get_body(session: requests.Session, url: str, *, deadline_s: float, timeout: float, max_bytes: int,
             max_decoded: int | None = None, **kwargs) -> tuple[requests.Response, bytes]:
    """GET ``url`` and read its whole body within ``deadline_s`` seconds and the byte caps; the response comes
    back closed, with the body alongside."""
    end = time.monotonic() + deadline_s
    holder: dict[str, requests.Response] = {}

    def work(cancelled: threading.Event) -> tuple[requests.Response, bytes]:
        with session.get(url, stream=True, timeout=min(timeout, deadline_s), **kwargs) as response:
            holder["response"] = response
            if cancelled.is_set():
                raise DeadlineExceeded("cancelled")
            body = b"".join(chunks(response, cancelled, end, max_bytes=max_bytes, max_decoded=max_decoded))
            return response, body

    try:
        return within(deadline_s, work, url)
    except DeadlineExceeded:
        if "response" in holder:
            abort(holder["response"])
        raise


_NO_ROUTE = {errno.ENETUNREACH: "the network is unreachable", errno.EHOSTUNREACH: "there is no route to the host",
             errno.ECONNREFUSED: "the connection was refused (nothing listens on that port)"}


def unreachable(exc: BaseException) -> str | None:
    """Why a failed connection will not heal by retrying in a few seconds, in words (the host name does not
    resolve, the network or host is unreachable, the port refuses connections); None for other failures
    (time-outs, resets, server errors), which a retry may cure."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, socket.gaierror):
            return f"its name does not resolve ({current.strerror or current}; offline, or a misspelt host)"
        if isinstance(current, OSError) and current.errno in _NO_ROUTE:
            return _NO_ROUTE[current.errno]
        stack.extend(a for a in getattr(current, "args", ()) if isinstance(a, BaseException))
        stack.extend(a for a in (current.__cause__, current.__context__, getattr(current, "reason", None))
                     if isinstance(a, BaseException))
    return None
