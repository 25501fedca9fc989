"""``mkdocs serve`` rebuilds the generated pages when a catalog YAML file changes (no generated file on disk)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from test_site_browser import copy_checkout

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fetch_until(url: str, wanted: str, timeout: float) -> str:
    """The page at ``url`` once it contains ``wanted``; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                text = reply.read().decode("utf-8")
            if wanted in text:
                return text
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} never showed {wanted!r} within {timeout} s; last page started {text[:200]!r}")


def test_serve_shows_an_edited_entry_after_reload(tmp_path):
    root = tmp_path / "atlas"
    copy_checkout(root)
    paper = root / "catalog" / "papers" / "maml.yaml"
    port = _free_port()
    env = {**os.environ, "MLATLAS_ROOT": str(root), "NO_MKDOCS_2_WARNING": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "mkdocs", "serve", "-a", f"127.0.0.1:{port}",
         "-f", str(PROJECT_ROOT / "mkdocs.yml")],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/papers/maml/"
        _fetch_until(url, "Model-Agnostic Meta-Learning", timeout=120)
        text = paper.read_text(encoding="utf-8")
        paper.write_text(text.replace("title: Model-Agnostic", "title: Edited Model-Agnostic", 1), encoding="utf-8")
        _fetch_until(url, "Edited Model-Agnostic", timeout=120)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert not (PROJECT_ROOT / "site" / "docs" / "papers").exists()
