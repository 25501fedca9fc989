"""Committed records are replaced only when asked, and never without saying which.

``mlatlas repro run`` with a real config writes records under ``reproductions/<name>/results/``. A record already
there is the committed result of an earlier run: a run replaces it only with ``--replace``. Before training, the
command looks for the records the same reproduction and config wrote before (:func:`records_of`) and stops when
there are any; at the end, :func:`check` refuses any other record a run would overwrite (nothing of the run is
written then; its checkpoint remains, so the run resumes there with ``--replace``). Every record written is
noted as new or replaced, with the value it replaces (:class:`Ledger`), and the command prints that list.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml


class RecordsExist(ValueError):
    """A run would overwrite records it was not asked to replace."""


@dataclass
class Written:
    path: Path
    previous: str | None  # what the replaced record said (value, commit, date); None for a new record


@dataclass
class Ledger:
    replace: bool
    written: list[Written] = field(default_factory=list)


_ledgers: list[Ledger] = []


@contextlib.contextmanager
def policy(replace: bool) -> Iterator[Ledger]:
    """Within the block, records that exist are replaced only when ``replace``; the ledger lists each record written.
    Outside any block (library use, tests writing to their own folders) records are written as before."""
    ledger = Ledger(replace)
    _ledgers.append(ledger)
    try:
        yield ledger
    finally:
        _ledgers.remove(ledger)


def _read(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def describe(path: Path) -> str:
    """What a record on disk says, in a few words: '52.3 ± 1.1, commit abc1234, 2026-11-30'."""
    data = _read(path)
    env = data.get("environment") if isinstance(data.get("environment"), dict) else {}
    value, ci = data.get("value"), data.get("ci95")
    said = "?" if value is None else f"{value:g}" if isinstance(value, (int, float)) else str(value)
    if isinstance(ci, (int, float)):
        said += f" ± {ci:g}"
    facts = [said] + [f"{k} {env[k]}" if k == "commit" else str(env[k]) for k in ("commit", "date") if env.get(k)]
    return ", ".join(facts)


def check(path: Path) -> None:
    """Called for each record before it is staged: refuses to overwrite one unless the policy says replace, and
    notes it in the ledger."""
    if not _ledgers:
        return
    ledger = _ledgers[-1]
    previous = describe(path) if path.exists() else None
    if previous is not None and not ledger.replace:
        raise RecordsExist(f"{path.name} is already recorded ({previous}); nothing was written. Pass --replace "
                           "to replace it (the run resumes from its checkpoint), or --no-record")
    ledger.written.append(Written(path, previous))


def _invocation(command: str) -> tuple[str, str] | None:
    """(reproduction, config name) of a recorded ``mlatlas repro run|eval NAME [--config C]`` command."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if "repro" not in words:
        return None
    rest = words[words.index("repro") + 1:]
    if len(rest) < 2 or rest[0] not in ("run", "eval"):
        return None
    config = "default"
    for i, word in enumerate(rest):
        if word == "--config" and i + 1 < len(rest):
            config = rest[i + 1]
        elif word.startswith("--config="):
            config = word.split("=", 1)[1]
    return rest[1], Path(config).stem if config.endswith((".yaml", ".yml")) else config


def records_of(folders: Iterable[Path], name: str, config_name: str) -> list[Path]:
    """The records in ``folders`` that a run of reproduction ``name`` with config ``config_name`` wrote."""
    found: set[Path] = set()
    for folder in folders:
        for path in sorted(Path(folder).glob("*.yaml")) if Path(folder).is_dir() else []:
            env = _read(path).get("environment")
            command = env.get("command") if isinstance(env, dict) else None
            if isinstance(command, str) and _invocation(command) == (name, config_name):
                found.add(path.resolve())
    return sorted(found)
