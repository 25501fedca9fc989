"""`mlatlas add` without a usable network: it says what it waits for (host, attempt, how long) as it waits, and
fails at once, in one line, when waiting cannot help (nothing listens, the host name does not resolve).

Real sockets on 127.0.0.1 (a closed port, a slow server) and a real name look-up; no mocks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _local_http import LocalServer, Reply

from mlatlas.cli import main
from test_add_paper import atom, make_root, snapshot


def closed_port_url() -> str:
    with LocalServer({}) as server:
        url = server.url("/api/query")
    return url  # the server is closed now: nothing listens on that port


def test_a_closed_port_fails_at_once_in_one_line(tmp_path, capsys):
    root = make_root(tmp_path, with_maml=False)
    before = snapshot(root)
    url = closed_port_url()
    host = url.split("/")[2]
    started = time.monotonic()
    # the defaults: 3 retries with backoff 3, 6 and 12 s would have waited 21 s in silence
    code = main(["--root", str(root), "add", "1703.03400", "--api-url", url, "--delay", "3"])
    elapsed = time.monotonic() - started
    assert code == 1 and elapsed < 2.5, elapsed
    assert capsys.readouterr().err.splitlines() == [
        f"mlatlas add: asking {host} for 1703.03400 (attempt 1 of 4, waiting up to 20 s)",
        f"mlatlas add: cannot reach {host}: the connection was refused (nothing listens on that port); "
        "nothing was written",
    ]
    assert snapshot(root) == before


def test_a_host_name_that_does_not_resolve_fails_at_once(tmp_path, capsys):
    host = "export.arxiv.invalid"  # RFC 6761: names under .invalid never resolve
    try:
        socket.getaddrinfo(host, 443)
        pytest.skip("this machine's resolver answers for .invalid names")
    except socket.gaierror:
        pass
    root = make_root(tmp_path, with_maml=False)
    started = time.monotonic()
    code = main(["--root", str(root), "add", "1703.03400", "--api-url", f"https://{host}/api/query", "--delay", "3"])
    assert code == 1 and time.monotonic() - started < 10  # one name look-up, no retries
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"mlatlas add: asking {host} for 1703.03400 (attempt 1 of 4")
    assert lines[1].startswith(f"mlatlas add: cannot reach {host}: its name does not resolve (")
    assert lines[1].endswith("; offline, or a misspelt host); nothing was written")


def test_a_slow_server_is_waited_for_aloud(tmp_path, capsys):
    root = make_root(tmp_path, with_maml=False)
    with LocalServer({"/api/query": [Reply(200, b"", delay=1.0), atom("maml.xml")]}) as server:
        host = server.url("/").split("/")[2]
        code = main(["--root", str(root), "add", "1703.03400", "--api-url", server.url("/api/query"),
                     "--delay", "0.2", "--timeout", "0.4", "--retries", "2"])
    assert code == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"mlatlas add: asking {host} for 1703.03400 (attempt 1 of 3, waiting up to 0.4 s)",
        "mlatlas add: no answer within 0.4 s; asking again in 0.2 s",
        f"mlatlas add: asking {host} for 1703.03400 (attempt 2 of 3, waiting up to 0.4 s)",
    ]
    assert (root / "catalog" / "papers" / "model-agnostic-meta-learning.yaml").is_file()


def test_the_progress_lines_arrive_while_it_waits(tmp_path):
    """In a real process: the first line is on stderr long before the command gives up."""
    root = make_root(tmp_path, with_maml=False)
    with LocalServer({"/api/query": Reply(200, b"", delay=10)}) as server:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlatlas.cli", "--root", str(root), "add", "1703.03400", "--api-url",
             server.url("/api/query"), "--delay", "0", "--timeout", "2", "--retries", "0"],
            stderr=subprocess.PIPE, text=True, env=env, cwd=Path(__file__).parent)
        first = proc.stderr.readline()
        seen = time.monotonic()
        rest = proc.stderr.read()
        proc.wait(timeout=60)
        ended = time.monotonic()
    assert first.startswith("mlatlas add: asking 127.0.0.1:") and "(attempt 1 of 1, waiting up to 2 s)" in first
    assert ended - seen > 1.0  # printed while waiting, not at the end
    assert proc.returncode == 1 and "failed after 1 attempts: no answer within 2 s; nothing was written" in rest
