"""The registry of reproductions and their YAML configs.

A reproduction is a subpackage ``reproductions/<name>/`` whose ``__init__.py`` defines ``REPRODUCTION``, a
:class:`Reproduction`, and keeps its configs in ``reproductions/<name>/configs/*.yaml``. See
``reproductions/README.md`` for a worked example.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

import reproductions


@dataclass
class RunContext:
    """How a run was asked for: everything a reproduction's ``run`` needs besides its config."""

    config_name: str  # the config's file stem, e.g. "sinusoid_5shot"; names the run folder and the record
    device: str = "auto"  # as given on the command line; resolve with runtime.pick_device
    work_dir: Path = Path("runs")  # checkpoints go here (not committed)
    root: Path = Path(".")  # project checkout (for the commit and the results folder)
    command: str = ""  # the exact command, copied into records
    fresh: bool = False  # ignore an existing checkpoint
    eval_only: bool = False  # evaluate the finished checkpoint, do not train
    write_record: bool = True  # False for smoke runs and plain `repro eval`
    progress: bool = True
    only_seeds: list[int] | None = None  # `--seeds`: train only these seeds of the config's list, record nothing


@dataclass
class Reproduction:
    name: str  # the subpackage name, e.g. "maml"
    paper: str  # catalog id of the reproduced paper, e.g. "maml"
    summary: str  # one line for `mlatlas repro list`
    run: Callable[[dict, RunContext], dict[str, float]]  # trains/evaluates, may write records, returns metrics
    package_dir: Path = field(default=Path("."))
    seed_fanout: bool = False  # whether `run` honours RunContext.only_seeds (seeds trained in separate processes)
    splits_tasks: bool = False  # whether it trains through core.training with task shares (`--nproc N`)

    @property
    def configs_dir(self) -> Path:
        return self.package_dir / "configs"

    @property
    def results_dir(self) -> Path:
        return self.package_dir / "results"

    def config_names(self) -> list[str]:
        return sorted(p.stem for p in self.configs_dir.glob("*.yaml"))


class RegistryError(Exception):
    """A reproduction or config that cannot be used; the message says what to do."""


def discover() -> dict[str, Reproduction]:
    """Every reproduction subpackage, by name."""
    found: dict[str, Reproduction] = {}
    for info in pkgutil.iter_modules(reproductions.__path__):
        if not info.ispkg or info.name == "core":
            continue
        try:
            module = importlib.import_module(f"reproductions.{info.name}")
        except Exception as exc:  # a broken package is named, not shown as a traceback
            raise RegistryError(f"reproductions/{info.name} cannot be imported: {type(exc).__name__}: {exc}") from exc
        repro = getattr(module, "REPRODUCTION", None)
        if not isinstance(repro, Reproduction):
            continue
        if repro.name != info.name:
            raise RegistryError(f"reproductions/{info.name}: REPRODUCTION.name is {repro.name!r}, not {info.name!r}")
        repro.package_dir = Path(module.__file__).parent
        found[repro.name] = repro
    return found


def get(name: str) -> Reproduction:
    known = discover()
    if name not in known:
        raise RegistryError(f"no reproduction named {name!r}; known: {', '.join(sorted(known)) or 'none'}")
    return known[name]


def load_config(repro: Reproduction, config: str | None) -> tuple[str, dict]:
    """``(name, config)`` for a config given by name (``smoke``), file path, or ``None`` (the ``default`` config)."""
    config = config or "default"
    path = Path(config)
    if not (path.suffix in {".yaml", ".yml"} and path.exists()):
        path = repro.configs_dir / f"{config}.yaml"
    if not path.exists():
        raise RegistryError(
            f"{repro.name}: no config {config!r}; give a YAML file or one of: {', '.join(repro.config_names())}"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RegistryError(f"{path}: broken YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise RegistryError(f"{path}: a config is a mapping of settings")
    parent = data.pop("extends", None)
    if parent is not None:  # start from the named config of the same reproduction (or a file), then apply this one
        parent = str(parent)
        if parent.endswith((".yaml", ".yml")):  # a file, relative to this config: a base shared by reproductions
            parent = str((path.parent / parent).resolve())
        if Path(parent).stem == path.stem and Path(parent).resolve().parent == path.resolve().parent:
            raise RegistryError(f"{path}: a config cannot extend itself")
        data = _merged(load_config(repro, parent)[1], data)
    return path.stem, data


def _merged(base: dict, changes: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_overrides(config: dict, overrides: list[str]) -> dict:
    """Apply ``key=value`` overrides (dotted keys reach into nested mappings; values are parsed as YAML).

    Only existing keys can be set, so a typo is an error rather than a silently ignored setting.
    """
    config = copy.deepcopy(config)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise RegistryError(f"--set {item!r}: expected key=value")
        *parents, last = key.split(".")
        node = config
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise RegistryError(f"--set {item!r}: {part!r} is not a section of this config")
            node = node[part]
        if last not in node:
            raise RegistryError(f"--set {item!r}: unknown setting {key!r}; known: {', '.join(sorted(node))}")
        node[last] = yaml.safe_load(raw)
    return config


def fingerprint(config: dict) -> str:
    """A short hash of a config, stored in checkpoints so a resume never mixes configurations."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
