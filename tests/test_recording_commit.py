"""A record names the commit of the code that produced it; writing records must not make that code look dirty."""

from __future__ import annotations

import subprocess
from pathlib import Path

from reproductions.core.recording import git_commit


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def test_results_never_dirty_the_commit_but_code_does(tmp_path):
    package = tmp_path / "reproductions" / "toy"
    (package / "results").mkdir(parents=True)
    (package / "method.py").write_text("x = 1\n")
    (package / "results" / "a.yaml").write_text("value: 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    head = _git(tmp_path, "rev-parse", "--short=12", "HEAD")

    (package / "results" / "a.yaml").write_text("value: 2\n")  # a record rewritten
    (package / "results" / "b.csv").write_text("step,loss\n")  # and a new curve
    assert git_commit(tmp_path, ["reproductions/toy"]) == head
    assert git_commit(tmp_path) == head

    (package / "method.py").write_text("x = 2\n")  # the code itself changed
    assert git_commit(tmp_path, ["reproductions/toy"]) == f"{head}-dirty"
    assert git_commit(tmp_path) == f"{head}-dirty"
