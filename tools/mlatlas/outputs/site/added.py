"""When each paper joined the atlas, for "Newest additions": the git history of ``catalog/papers/``.

The ``added:`` field of an entry is a day, and whole batches of papers share one; the commit that first added a
paper's file orders them exactly (and cannot be forgotten or mistyped). So the site asks git once per build for
the commit time of every file's first appearance under ``catalog/papers/``, and falls back, paper by paper, to
the entry's ``added:`` day (at midnight UTC) when git is not installed, the folder is not a git checkout, or the
file is not committed yet. An uncommitted file counts as added now: it is the newest addition there is.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

from mlatlas.catalog.models import Paper

_MARK = "@@"


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def first_commits(root: Path) -> dict[str, dt.datetime] | None:
    """``{file name: time of the commit that first added it}`` for ``catalog/papers/*.yaml``; None without git,
    outside a checkout, or in a shallow clone (whose oldest commit would seem to add every file at once)."""
    if (_git(root, "rev-parse", "--is-shallow-repository") or "").strip() != "false":
        return None
    log = _git(root, "log", "--diff-filter=A", "--no-renames", f"--format={_MARK}%cI", "--name-only", "--",
               "catalog/papers/")
    if log is None:
        return None
    found: dict[str, dt.datetime] = {}
    when: dt.datetime | None = None
    for line in log.splitlines():  # newest commit first: the last sighting of a file is its first add
        if line.startswith(_MARK):
            when = dt.datetime.fromisoformat(line[len(_MARK):])
        elif line.strip() and when is not None:
            found[Path(line.strip()).name] = when
    return found


def added_times(root: Path, papers: dict[str, Paper], files: dict[str, Path]) -> dict[str, dt.datetime]:
    """When each paper (by id) was added: its file's first commit, else now (uncommitted), else its ``added:`` day."""
    commits = first_commits(root)
    now = dt.datetime.now(dt.timezone.utc)
    times = {}
    for pid, paper in papers.items():
        name = files[pid].name if pid in files else f"{pid}.yaml"
        if commits is not None and name in commits:
            times[pid] = commits[name]
        elif commits:  # git knows this catalog's papers, not this one: it is being added
            times[pid] = now
        else:
            times[pid] = dt.datetime.combine(paper.added, dt.time(), tzinfo=dt.timezone.utc)
    return times
