"""Write a result record: the YAML (validated by ``mlatlas.records.ResultRecord``), its learning curve as CSV and
a plot as PNG. The environment (commit, hardware, library versions, date) is filled in automatically."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import yaml
from scipy import stats

from mlatlas.records import ResultRecord, machine_paths
from reproductions.core import replacing


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval (Student t over the given values)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size < 2:
        return float(arr.mean()), 0.0
    half = stats.t.ppf(0.975, arr.size - 1) * arr.std(ddof=1) / np.sqrt(arr.size)
    return float(arr.mean()), float(half)


def mean_ci95_over_seeds_and_tasks(losses: np.ndarray) -> tuple[float, float]:
    """Mean of a [seeds, tasks] array of scores (every seed evaluated on the same tasks) and the half-width of its
    95% interval: with one seed, over tasks; with several, the Student-t interval over the seeds' means (training
    variability) and the interval over tasks of each task's mean over seeds (task sampling), added in quadrature."""
    losses = np.asarray(losses, dtype=np.float64)
    if losses.shape[0] == 1:
        return mean_ci95(losses[0])
    _, over_tasks = mean_ci95(losses.mean(axis=0))
    _, over_seeds = mean_ci95(losses.mean(axis=1))
    return float(losses.mean()), float(np.hypot(over_tasks, over_seeds))


# Records and their curves are outputs, not code: writing one must never make the next record "-dirty".
RESULTS_PATHSPEC = ":(exclude,glob)reproductions/*/results/**"


def git_commit(root: Path, paths: Iterable[str] = ()) -> str:
    """Short commit of ``root``'s HEAD, with ``-dirty`` when any of ``paths`` (default: all) has uncommitted
    changes, untracked files included. Results folders never count."""
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--", *(list(paths) or ["."]), RESULTS_PATHSPEC)
    except (OSError, subprocess.CalledProcessError):
        return "0000000-dirty"  # not a git checkout: the code cannot be pinned
    return f"{commit}-dirty" if dirty else commit


def hardware_description(device: str) -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{os.cpu_count()}-core {platform.machine()} CPU ({model})"
    try:
        import torch

        if torch.cuda.is_available():
            text += f", GPU {torch.cuda.get_device_name(0)}"
        elif device == "mps":
            text += ", Apple MPS"
        else:
            text += ", no GPU used"
    except ImportError:
        pass
    return text


def library_versions() -> dict[str, str]:
    import matplotlib
    import scipy
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "matplotlib": matplotlib.__version__,
    }


_staged: list[list[tuple[str, Path]]] = []  # open all_or_none() batches: (temp file, final path)


def _stage(path: Path, data: bytes) -> str:
    """Write ``data`` to a flushed temp file next to ``path``; returns the temp file's name."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        _discard([(tmp, path)])
        raise
    return tmp


def _discard(pairs: Sequence[tuple[str, Path]]) -> None:
    for tmp, _ in pairs:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _publish(pairs: Sequence[tuple[str, Path]]) -> None:
    try:
        for tmp, final in pairs:
            os.replace(tmp, final)
    finally:
        _discard(pairs)


def _write_all(files: Sequence[tuple[Path, bytes]]) -> None:
    """Write every file or none: all go to temp files first, then are renamed into place (at the end of the
    enclosing :func:`all_or_none` batch when there is one)."""
    pairs: list[tuple[str, Path]] = []
    try:
        for path, data in files:
            pairs.append((_stage(path, data), path))
    except BaseException:
        _discard(pairs)
        raise
    if _staged:
        _staged[-1].extend(pairs)
    else:
        _publish(pairs)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write one file now (flushed temp file, then rename), outside any batch: for work files such as caches."""
    _publish([(_stage(path, data), path)])


@contextlib.contextmanager
def all_or_none() -> Iterator[None]:
    """Records written inside are renamed into place together when the block ends without an error; when it
    raises (or is interrupted), none of them is written and their temp files are removed."""
    if _staged:  # nested: the outer batch decides
        yield
        return
    _staged.append([])
    try:
        yield
    except BaseException:
        _discard(_staged.pop())
        raise
    _publish(_staged.pop())


def _curve_csv(rows: Sequence[dict[str, float]]) -> bytes:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def figure_png(fig) -> bytes:
    """A finished matplotlib figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _curve_png(rows: Sequence[dict[str, float]], title: str, ylabel: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    x = [row["iteration"] for row in rows]
    for column in dict.fromkeys(k for row in rows for k in row if k != "iteration"):
        ax.plot(x, [row.get(column, float("nan")) for row in rows], label=column)
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel(ylabel)
    ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return figure_png(fig)


def write_record(
    results_dir: Path,
    stem: str,
    *,
    root: Path,
    code_paths: Iterable[str],
    command: str,
    device: str,
    wall_time_s: float,
    curve: Sequence[dict[str, float]] | None = None,
    commit: str | None = None,
    **fields,
) -> Path:
    """Validate and write ``<results_dir>/<stem>.yaml`` (plus ``<stem>.csv`` and ``<stem>.png`` when a curve is
    given). ``fields`` are the :class:`ResultRecord` fields other than ``environment``, ``curve`` and ``plot``.
    ``code_paths`` are the folders whose uncommitted changes mark the commit ``-dirty``; ``commit`` overrides the
    look-up (so that several records of one run name the same commit). Returns the YAML path.
    """
    paths = machine_paths(command)
    if paths:
        raise ValueError(f"the recorded command names a path of this machine ({', '.join(paths)}); "
                         "run it with the default work and data folders, or a config inside the checkout")
    results_dir.mkdir(parents=True, exist_ok=True)
    data = dict(fields)
    if curve:
        data["curve"], data["plot"] = f"{stem}.csv", f"{stem}.png"
    data["environment"] = {
        "command": command,
        "commit": commit or git_commit(root, code_paths),
        "hardware": hardware_description(device),
        "device": device,
        "versions": library_versions(),
        "wall_time_s": round(float(wall_time_s), 1),
        "date": dt.datetime.now(dt.timezone.utc).date(),
    }
    record = ResultRecord.model_validate(data)  # raises before anything is written
    files: list[tuple[Path, bytes]] = []
    if curve:
        title = f"{record.reproduction}: {record.benchmark}\n{record.setting}"
        files.append((results_dir / f"{stem}.csv", _curve_csv(curve)))
        files.append((results_dir / f"{stem}.png", _curve_png(curve, title, record.metric)))
    text = yaml.safe_dump(record.model_dump(mode="json", exclude_none=True), sort_keys=False, allow_unicode=True)
    path = results_dir / f"{stem}.yaml"
    replacing.check(path)  # an existing record is replaced only when the run was asked to (--replace)
    files.append((path, text.encode()))
    _write_all(files)  # the YAML last: a record never names a curve that is not there
    return path


def provenance(ran_at: Iterable[str], commit: str) -> str:
    """A sentence for the notes of records written at ``commit`` from results computed at ``ran_at`` (read back from
    a run's cache): empty when they are the same commit."""
    at = sorted({c or "unknown" for c in ran_at})
    if at == [commit]:
        return ""
    return (f" The results were computed at commit {', '.join(at)} and read back from the run's cache; the record was "
            "written at the commit below.")


# Options that say where files sit on the machine that ran the command, not what was computed: a record's command
# leaves them out, so that it names no path of that machine and reruns anywhere with the defaults.
MACHINE_OPTIONS = ("--work-dir", "--data-dir", "--root")
# Flags that say what may happen to the files, not what is computed: left out of a record's command too.
FILE_FLAGS = ("--replace",)
COMMAND_ENV = "MLATLAS_COMMAND"  # set by `mlatlas repro run --nproc` for its workers


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command as the user typed it (``mlatlas ...`` when run through the console script), without the
    :data:`MACHINE_OPTIONS` and their values and the :data:`FILE_FLAGS`."""
    if argv is None and os.environ.get(COMMAND_ENV):  # a worker of `--nproc`: the command the user typed
        return os.environ[COMMAND_ENV]
    argv = list(sys.argv if argv is None else argv)
    if argv and Path(argv[0]).name in {"mlatlas", "__main__.py"}:
        argv[0] = "mlatlas"
    return shlex.join(arg for arg in without_options(argv, MACHINE_OPTIONS) if arg not in FILE_FLAGS)


def without_options(argv: Sequence[str], options: Sequence[str]) -> list[str]:
    """``argv`` without each of ``options`` and its value (``--opt VALUE`` or ``--opt=VALUE``)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in options:
            skip = True
        elif not arg.startswith(tuple(f"{option}=" for option in options)):
            kept.append(arg)
    return kept

