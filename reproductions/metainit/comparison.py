"""MetaInit against a standard and a data-dependent initialisation on real images (MNIST), each initialisation with
its own learning rate tuned on a validation split.

Protocol (our reconstruction at CPU scale, see README.md):

1. Data: the official MNIST training set split into ``n_train`` training images (the first ones) and ``n_val``
   validation images (the last ones); the official 10,000 test images are touched only for the final numbers.
   Pixels are standardised with the training images' mean and standard deviation.
2. Network: a plain ReLU MLP (no normalisation, no skip connections), the same for every initialisation.
3. Initialisations: ``standard`` (He et al. 2015 fan-in Gaussian, biases 0), ``lsuv`` (orthonormal, then layer by
   layer unit-variance pre-activations on a batch of training images), ``metainit`` (the standard draw, then
   MetaInit on random inputs and labels).
4. Tuning: for every initialisation, training seed 0 is trained once per learning rate of the grid; the rate with
   the lowest final validation error is chosen (a run whose loss became non-finite counts as diverged and cannot
   be chosen). A choice on an edge of the grid is reported.
5. Final: the other seeds are trained at the chosen rate; the test error of all seeds (seed 0's from its tuning
   run) gives the mean and its 95% interval.

Each finished training run is cached as JSON under the work folder, and each initialised network as a state dict,
so an interrupted run resumes and MetaInit runs once per seed, not once per learning rate.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from reproductions.core import recording, registry
from reproductions.core.runtime import pick_device, seed_everything
from reproductions.datasets import mnist
from reproductions.metainit import data, experiment, lsuv, method, models

CONDITIONS = ("standard", "lsuv", "metainit")
INPUT_SHAPE = (1, 28, 28)
N_CLASSES = 10


@dataclass
class Data:
    train: data.Split  # training images, with the validation images in the x_test / y_test slots
    x_test: torch.Tensor
    y_test: torch.Tensor


@dataclass
class RunResult:
    condition: str
    lr: float
    seed: int
    val_error: float  # % after the last epoch (100 when diverged)
    test_error: float  # %
    test_loss: float
    train_loss: float  # mean over the last epoch
    diverged: bool
    gq_init: float  # gradient quotient of the initialised network (fixed random batch)
    preact_var: list[float] = field(default_factory=list)  # each layer's pre-activation variance on validation images
    curve: list[dict[str, float]] = field(default_factory=list)  # per epoch: train loss, validation loss and error
    seconds: float = 0.0


def load_data(config: dict) -> Data:
    d = config["data"]
    images, labels = mnist.load("train", d.get("data_dir"), progress=False)
    test_images, test_labels = mnist.load("test", d.get("data_dir"), progress=False)
    n_train, n_val = d["n_train"], d["n_val"]
    if n_train + n_val > len(images):
        raise ValueError(f"data.n_train + data.n_val must be at most {len(images)}, got {n_train} + {n_val}")
    train, val = images[:n_train].astype(np.float32), images[len(images) - n_val:].astype(np.float32)
    mean, std = float(train.mean()), float(train.std())

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((a.astype(np.float32) - mean) / std)[:, None])

    def target(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.int64))

    split = data.Split(tensor(train), target(labels[:n_train]), tensor(val), target(labels[len(labels) - n_val:]),
                       N_CLASSES)
    return Data(split, tensor(test_images), target(test_labels))


def initialise(config: dict, condition: str, seed: int, d: Data) -> nn.Module:
    """The initialised network of (``condition``, ``seed``): the same weight draw for ``standard`` and
    ``metainit``; LSUV's data batch is drawn from the training images with the same seed."""
    m = config["model"]
    model = models.plain_mlp(INPUT_SHAPE, N_CLASSES, m["depth"], m["width"], m["activation"])
    generator = torch.Generator().manual_seed(1000 * seed + m["depth"])
    if condition == "lsuv":
        batch = torch.randperm(len(d.train.y_train), generator=generator)[: config["lsuv"]["batch_size"]]
        lsuv.lsuv_(model, d.train.x_train[batch], tol=config["lsuv"]["tol"], max_iter=config["lsuv"]["max_iter"],
                   generator=generator)
        return model
    models.scaled_fan_in_init_(model, m["activation"], 1.0, generator)
    if condition == "metainit":
        mi = config["metainit"]
        method.metainit(model, INPUT_SHAPE, N_CLASSES, steps=mi["steps"], lr=mi["lr"], momentum=mi["momentum"],
                        eps=mi["eps"], batch_size=mi["batch_size"], generator=torch.Generator().manual_seed(seed))
    return model


def train_one(config: dict, d: Data, model: nn.Module, condition: str, lr: float, seed: int,
              device: torch.device) -> RunResult:
    start = time.perf_counter()
    seed_everything(seed)
    model = model.to(device)
    gq = experiment.fixed_gq(model, d.train, config, device)
    var = lsuv.output_variances(model, d.train.x_test[:1000].to(device))
    curve, diverged = experiment.train(model, d.train, {"train": {**config["train"], "lr": lr}}, seed)
    test_loss, test_error = experiment.evaluate(model, d.x_test.to(device), d.y_test.to(device))
    last = curve[-1]
    rows = [{"epoch": r["epoch"], "train_loss": r["train_loss"], "val_loss": r["test_loss"],
             "val_error_pct": r["test_error_pct"]} for r in curve]
    return RunResult(condition, lr, seed, 100.0 if diverged else last["test_error_pct"], test_error, test_loss,
                     last["train_loss"], diverged, gq, var, rows, time.perf_counter() - start)


def chosen_lr(tuning: list[RunResult]) -> float | None:
    """The learning rate with the lowest final validation error among runs that did not diverge (None if all did)."""
    ok = [r for r in tuning if not r.diverged and math.isfinite(r.val_error)]
    return min(ok, key=lambda r: (r.val_error, r.lr)).lr if ok else None


def lr_edge(grid: list[float], lr: float | None) -> str | None:
    """A phrase when the chosen rate is the smallest or largest of the grid (a better one may lie beyond it)."""
    if lr is None or len(grid) < 2 or min(grid) < lr < max(grid):
        return None
    return f"learning rate {lr:g} is at the {'lower' if lr == min(grid) else 'upper'} end of the grid {grid}"


class Runner:
    """Runs (or reads back) the jobs of one config, caching finished runs and initialised networks."""

    def __init__(self, config: dict, ctx: registry.RunContext):
        self.config, self.ctx = config, ctx
        self.device = pick_device(ctx.device)
        self.cache = Path(ctx.work_dir) / "metainit" / ctx.config_name / registry.fingerprint(
            {k: v for k, v in config.items() if k not in ("record", "threads")})
        self.data: Data | None = None

    def _data(self) -> Data:
        if self.data is None:
            self.data = load_data(self.config)
        return self.data

    def _initial(self, condition: str, seed: int) -> nn.Module:
        path = self.cache / f"init_{condition}_seed{seed}.pt"
        m = self.config["model"]
        model = models.plain_mlp(INPUT_SHAPE, N_CLASSES, m["depth"], m["width"], m["activation"])
        if path.exists() and not self.ctx.fresh:
            model.load_state_dict(torch.load(path, weights_only=True))
            return model
        model = initialise(self.config, condition, seed, self._data())
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), path)
        return model

    def job(self, condition: str, lr: float, seed: int) -> RunResult:
        path = self.cache / f"{condition}_lr{lr:g}_seed{seed}.json"
        if path.exists() and not self.ctx.fresh:
            return RunResult(**json.loads(path.read_text(encoding="utf-8")))
        if self.ctx.eval_only:
            raise ValueError(f"no finished run at {path}; run `mlatlas repro run metainit --config "
                             f"{self.ctx.config_name}` first")
        result = train_one(self.config, self._data(), self._initial(condition, seed), condition, lr, seed, self.device)
        path.parent.mkdir(parents=True, exist_ok=True)
        recording._atomic_write(path, json.dumps(asdict(result)).encode())
        return result


def run_all(config: dict, ctx: registry.RunContext) -> tuple[dict[str, dict], str]:
    """``{condition: {"tuning": [RunResult per lr], "lr": chosen, "edge": phrase or None, "final": [RunResult per
    seed]}}`` and the device used."""
    torch.set_num_threads(int(config.get("threads", 1)))
    runner = Runner(config, ctx)
    grid = [float(v) for v in config["lr_grid"]]
    unknown = set(config["conditions"]) - set(CONDITIONS)
    if unknown:
        raise ValueError(f"conditions: unknown {sorted(unknown)}; choose from {', '.join(CONDITIONS)}")
    out: dict[str, dict] = {}
    total = len(config["conditions"]) * (len(grid) + config["seeds"] - 1)
    with tqdm(total=total, desc="metainit mnist runs", unit="run", disable=not ctx.progress) as bar:
        for condition in config["conditions"]:
            tuning = []
            for lr in grid:
                tuning.append(runner.job(condition, lr, 0))
                bar.update()
            lr = chosen_lr(tuning)
            final = [next(r for r in tuning if r.lr == lr)] if lr is not None else []
            for seed in range(1, config["seeds"]):
                if lr is not None:
                    final.append(runner.job(condition, lr, seed))
                bar.update()
            out[condition] = {"tuning": tuning, "lr": lr, "edge": lr_edge(grid, lr), "final": final}
    return out, str(runner.device)
