"""Omniglot on the papers' own protocol: the full data, the Vinyals et al. class split, 28x28 images, 1,000 test episodes.

Data. All 1,623 characters of the official background and evaluation archives (:mod:`omniglot`), split into
classes as Vinyals et al. (2016) did and as Snell et al. published the lists with Prototypical Networks
(github.com/jakesnell/prototypical-networks, ``data/omniglot/splits/vinyals/``, MIT licence, (c) 2017 Jake Snell):
1,028 training, 172 validation and 423 test characters, each turned by 0, 90, 180 and 270 degrees into four classes
(``Alphabet/characterNN/rotDDD``, one per line). The lists are downloaded with pinned SHA-256 sums into
``<data dir>/splits/vinyals/`` (or read from there). Two splits are offered:

* ``vinyals``: train / val / test as published (Prototypical Networks, Matching Networks, Relation Network).
* ``vinyals_trainval``: training on 1,200 characters and testing on the other 423, the sizes Vinyals et al. (Matching
  Networks), Finn et al. (MAML) and Sung et al. (Relation Network) state. Their 1,200 were drawn at random (MAML's
  code: a seeded shuffle of a directory listing, which cannot be replayed); we take the published train + val lists
  (``trainval``, 1,200 characters) for training and the published 423 test characters, which has their sizes but not
  necessarily their characters. There is no validation split: the last model is tested.

Every record says which split it used.

Images: the official PNGs resized to 28x28 (Lanczos, ink = 1), rotated by multiples of 90 degrees.

Training (:func:`run`): the method's episodes on training classes with the core loop (checkpoints, exact resume,
``iterations`` may be raised to continue a finished run); every ``eval_every`` episodes the accuracy on
``val_episodes`` validation episodes, and the best model so far is kept (validation-based model selection, as
Snell et al.'s code does; its patience of 200 epochs of 100 episodes never ends a capped CPU run first). Test:
N-way K-shot episodes on test classes, ``episodes`` of them (1,000 as in the papers), mean accuracy and 95% interval.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests
import torch
from torch import Tensor, nn

from mlatlas import netio
from reproductions.core import recording, registry, training
from reproductions.core.runtime import pick_device
from reproductions.datasets import omniglot
from reproductions.datasets.omniglot_benchmark import EpisodicMethod, Pool, heldout_accuracy, train_one

SPLIT_BASE_URL = "https://raw.githubusercontent.com/jakesnell/prototypical-networks/master/data/omniglot/splits/vinyals"
SPLIT_URL_ENV = "MLATLAS_OMNIGLOT_SPLIT_URL"
SPLIT_SHA256 = {  # measured on the published lists; the same values are in ../shared/README.md
    "train": "984522c194c30fb678ce53304a160a42faf5403ad4f9a67010f32dd3a35738e0",
    "val": "11f99e54faee3e26f53d3231c1cceac5bf7b8730e9be31cb6dab256551dc0c1a",
    "test": "845264cc5c156180828ccf17915668b17ee21424d0170df6e7d81676aa5d1204",
    "trainval": "5276ae50c755596d0bff7f2284e85625695549a85ee6e36b6491ad1e5d1cc26a",
}
SPLIT_CHARACTERS = {"train": 1028, "val": 172, "test": 423, "trainval": 1200}
SPLITS = {  # split name -> (training list, validation list or None, test list)
    "vinyals": ("train", "val", "test"),
    "vinyals_trainval": ("trainval", None, "test"),
}
CLASS_LINE = re.compile(r"^[A-Za-z0-9_().'-]+/character\d\d/rot(000|090|180|270)$")
ARCHIVES = ("images_background.zip", "images_evaluation.zip")
MAX_SPLIT_BYTES = 1 << 20  # a class list is ~30 KB


# --------------------------------------------------------------------------------------------------
# The class lists
# --------------------------------------------------------------------------------------------------


def fetch_split_list(part: str, data_dir=None, base_url: str | None = None, timeout: float = 30.0) -> Path:
    """The verified path of ``splits/vinyals/<part>.txt`` in the data folder, downloaded if absent."""
    if part not in SPLIT_SHA256:
        raise omniglot.OmniglotDataError(f"unknown split list {part!r}; known: {', '.join(SPLIT_SHA256)}")
    path = omniglot.resolve_data_dir(data_dir) / "splits" / "vinyals" / f"{part}.txt"
    if not path.exists():
        url = f"{(base_url or os.environ.get(SPLIT_URL_ENV) or SPLIT_BASE_URL).rstrip('/')}/{part}.txt"
        try:
            resp, body = netio.get_body(requests.Session(), url, deadline_s=timeout, timeout=timeout,
                                        max_bytes=MAX_SPLIT_BYTES)
        except requests.RequestException as exc:  # time-outs, the overall deadline and the size cap too
            raise omniglot.OmniglotDataError(f"{url}: download failed ({exc}); put {part}.txt in {path.parent} "
                                             f"by hand or pass --data-dir FOLDER where it is") from exc
        if resp.status_code != 200:
            raise omniglot.OmniglotDataError(f"{url}: HTTP {resp.status_code}; check ${SPLIT_URL_ENV}")
        _check_sha256(url, body, part)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            omniglot._atomic_write_text(path, body.decode("utf-8"))
        except OSError as exc:
            raise omniglot.OmniglotDataError(f"{path.parent}: cannot write the split list ({exc}); pass a "
                                             f"writable --data-dir") from exc
        return path
    _check_sha256(path, path.read_bytes(), part)
    return path


def _check_sha256(where, content: bytes, part: str) -> None:
    digest = hashlib.sha256(content).hexdigest()
    if digest != SPLIT_SHA256[part]:
        raise omniglot.OmniglotDataError(f"{where}: SHA-256 {digest} is not the published {part} list's "
                                         f"{SPLIT_SHA256[part]}; delete it to download it again")


def read_split_list(path: Path) -> list[str]:
    """The ``Alphabet/characterNN/rotDDD`` classes of a list, checked line by line."""
    classes = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not CLASS_LINE.match(line):
            raise omniglot.OmniglotDataError(f"{path}:{number}: not an Alphabet/characterNN/rotDDD class: {line!r}")
        classes.append(line)
    return classes


# --------------------------------------------------------------------------------------------------
# Pools of the standard split
# --------------------------------------------------------------------------------------------------


@dataclass
class StandardData:
    split: str
    train: Pool
    val: Pool | None
    test: Pool
    characters: dict[str, int]  # characters per part, e.g. {"train": 1028, "val": 172, "test": 423}

    def describe(self) -> str:
        parts = " / ".join(f"{n:,} {part}" for part, n in self.characters.items())
        which = ("Vinyals et al. split as published with Prototypical Networks" if self.split == "vinyals" else
                 "the published train+val lists for training, the published test list")
        return f"full Omniglot, {which} ({parts} characters, x4 rotations as classes), 28x28"


def pool_of(classes: list[str], characters: dict[str, np.ndarray]) -> Pool:
    """A pool with one class per ``Alphabet/characterNN/rotDDD`` line (images turned counter-clockwise)."""
    missing = sorted({c.rsplit("/", 1)[0] for c in classes} - characters.keys())
    if missing:
        raise omniglot.OmniglotDataError(f"the split names characters absent from the archives: {missing[:3]}")
    stacks = [np.rot90(characters[c.rsplit("/", 1)[0]], int(c[-3:]) // 90, axes=(1, 2)) for c in classes]
    images = np.ascontiguousarray(np.stack(stacks))  # [classes, drawings, S, S]
    n, drawings = images.shape[:2]
    return Pool(torch.from_numpy(images.reshape(n * drawings, 1, *images.shape[2:])), np.repeat(np.arange(n), drawings))


def load_standard(split: str = "vinyals", data_dir=None, base_url: str | None = None,
                  split_url: str | None = None) -> StandardData:
    """Training, validation and test pools of ``split`` (``vinyals`` or ``vinyals_trainval``)."""
    if split not in SPLITS:
        raise ValueError(f"data.split must be one of {', '.join(SPLITS)}, not {split!r}")
    characters: dict[str, np.ndarray] = {}
    for archive in ARCHIVES:
        chars = omniglot.load_images(archive, data_dir, base_url=base_url)
        characters.update(zip(chars.names, chars.images))
    pools, counts = [], {}
    for part, role in zip(SPLITS[split], ("train", "val", "test")):
        if part is None:
            pools.append(None)
            continue
        classes = read_split_list(fetch_split_list(part, data_dir, split_url))
        counts[role] = len(classes) // 4
        pools.append(pool_of(classes, characters))
    return StandardData(split, *pools, characters=counts)


def described(split: str) -> StandardData:
    """The split's description and character counts, without reading any image (for records written from the
    caches of finished jobs)."""
    if split not in SPLITS:
        raise ValueError(f"data.split must be one of {', '.join(SPLITS)}, not {split!r}")
    counts = {role: SPLIT_CHARACTERS[part] for part, role in zip(SPLITS[split], ("train", "val", "test"))
              if part is not None}
    return StandardData(split, None, None, None, characters=counts)


class LazyStandardData:
    """The pools of a config's ``data`` section, read the first time they are needed, so that a run whose jobs
    are all cached never reads an image. Calling it returns the pools; :meth:`for_records` returns them if they were
    read, else the split's description."""

    def __init__(self, data_cfg: dict, data_dir=None):
        self.data_cfg, self.data_dir, self.loaded = data_cfg, data_dir, None

    def __call__(self) -> StandardData:
        if self.loaded is None:
            cfg = self.data_cfg
            self.loaded = load_standard(cfg["split"], self.data_dir or cfg.get("data_dir"), cfg.get("base_url"),
                                        cfg.get("split_url"))
        return self.loaded

    def for_records(self) -> StandardData:
        return self.loaded if self.loaded is not None else described(self.data_cfg["split"])


# --------------------------------------------------------------------------------------------------
# A whole reproduction on the standard protocol
# --------------------------------------------------------------------------------------------------


def _channels_last(model: nn.Module, device: torch.device) -> nn.Module:
    # On the CPU the 4-block network runs about 1.7x faster in channels_last (measured on 60-way episodes).
    return model.to(memory_format=torch.channels_last) if device.type == "cpu" else model


def run(method: EpisodicMethod, name: str, paper: str, config: dict, ctx: registry.RunContext) -> dict[str, float]:
    """Train on the training classes (best model by validation accuracy), test on the test classes, write records."""
    torch.set_num_threads(config.get("threads", 1))
    device = pick_device(ctx.device)
    data_cfg, tr, ev = config["data"], config["train"], config["eval"]
    start = time.perf_counter()
    data = load_standard(data_cfg["split"], getattr(ctx, "data_dir", None) or data_cfg.get("data_dir"),
                         data_cfg.get("base_url"), data_cfg.get("split_url"))
    ckpt = Path(ctx.work_dir) / name / ctx.config_name / "standard.pt"
    best_path = ckpt.with_suffix(".best.pt")
    if ctx.fresh:
        best_path.unlink(missing_ok=True)

    def validate(model: nn.Module) -> dict[str, float]:
        if data.val is None:  # no validation split: the last model is the one tested
            return {}
        accs = heldout_accuracy(method, model, data.val, tr["val_way"], tr["k_shot"], tr["val_query"],
                                tr["val_episodes"], config["seed"] + 500, device)
        acc = float(np.mean(accs))
        best = _best(best_path)["val_acc_pct"] if best_path.exists() else -1.0
        if acc > best:  # strictly better: the first of equal peaks is kept, as best_iteration() reads the curve
            training.save_checkpoint(best_path, {"learner": model.state_dict(), "val_acc_pct": acc})
        return {"val_acc_pct": acc}

    model, state = train_one(method, name, config, ctx, "standard", device, data.train, validate,
                             prepare=lambda m: _channels_last(m, device))
    if best_path.exists():
        model.load_state_dict(_best(best_path)["learner"])
    metrics: dict[str, float] = {}
    results = []
    for n_way, k_shot in ev["settings"]:
        accs = heldout_accuracy(method, model, data.test, n_way, k_shot, ev["n_query"], ev["episodes"],
                                config["seed"] + 1000, device)
        acc, ci = recording.mean_ci95(accs)
        key = f"{n_way}way{k_shot}shot"
        metrics[f"{key}_acc_pct"] = acc
        results.append((key, n_way, k_shot, acc, ci, len(accs)))
    if ctx.write_record:
        _write_records(name, paper, config, ctx, data, results, state, state.seconds + time.perf_counter() - start,
                       device)
    return metrics


def best_iteration(state) -> int | None:
    """The training episode at which the validation accuracy peaked (the model that was tested)."""
    rows = [r for r in state.curve if "val_acc_pct" in r]
    return int(max(rows, key=lambda r: r["val_acc_pct"])["iteration"]) if rows else None


def _best(path: Path) -> dict:
    """The model that validated best so far (digest checked, loaded without code)."""
    payload = training.load_checkpoint(path, version=None)
    if not isinstance(payload.get("learner"), dict) or not isinstance(payload.get("val_acc_pct"), float):
        raise training.CheckpointError(f"{path}: not a best-model checkpoint; delete it or start afresh (--fresh)")
    return payload


def _write_records(name, paper, config, ctx, data: StandardData, results, state, wall, device) -> None:
    rec, tr, ev = config["record"], config["train"], config["eval"]
    batch = tr.get("meta_batch", 1)
    unit = f"{tr['iterations']:,} updates of {batch} episodes" if batch > 1 else f"{tr['iterations']:,} episodes"
    best = best_iteration(state)
    chosen = (f"; tested with the model of episode {best:,}, best of {tr['val_episodes']} {tr['val_way']}-way "
              f"validation episodes every {tr['eval_every']:,}" if best is not None else "; the last model is tested")
    budget = (f"{unit} of {tr['n_way']}-way {tr['k_shot']}-shot ({tr['n_query']} queries per class){chosen}; "
              f"{state.seconds / 60:.0f} minutes of training on {config.get('threads', 1)} CPU thread(s) of a "
              f"2-core machine shared with other jobs")
    for key, n_way, k_shot, value, ci, n in results:
        protocol = {  # the facts a paper may state; each one it states must match for a verdict
            "data": data.describe(), "split": data.split,
            "train_characters": data.characters["train"], "test_characters": data.characters["test"],
            "train_way": tr["n_way"], "train_shot": tr["k_shot"], "train_queries": tr["n_query"],
            "episodes_per_update": batch, "train_updates": tr["iterations"],
            "test_way": n_way, "test_shot": k_shot, "test_queries": ev["n_query"], "test_episodes": n,
            **{f"method_{k}": v for k, v in config["method"].items() if isinstance(v, (str, int, float, bool))},
            **rec.get("protocol", {}),
        }
        paper_value = rec.get("paper_values", {}).get(key)
        recording.write_record(
            Path(ctx.root) / "reproductions" / name / "results", f"{ctx.config_name}_{key}",
            root=ctx.root, code_paths=[f"reproductions/{name}", "reproductions/datasets", "reproductions/core"],
            command=ctx.command or f"mlatlas repro run {name} --config {ctx.config_name}",
            device=str(device), wall_time_s=wall, paper=paper, reproduction=name,
            benchmark=f"Omniglot {n_way}-way {k_shot}-shot (standard protocol, test classes)",
            setting=(f"{data.describe()}; trained on {tr['n_way']}-way {tr['k_shot']}-shot episodes with "
                     f"{tr['n_query']} queries per class; {ev['n_query']} test queries per class"),
            metric="accuracy", unit="%", higher_is_better=True, value=round(value, 2), ci95=round(ci, 2),
            n_eval_tasks=n, budget=budget, protocol=protocol, paper_value=paper_value,
            tolerance=rec.get("tolerance"), notes=(rec.get("notes") or "").strip() or None, curve=state.curve,
        )
