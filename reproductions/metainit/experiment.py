"""The scaled-down MetaInit experiment: plain networks of growing depth on Omniglot character classification,
trained from a standard initialisation, a badly scaled one, and each of them after MetaInit.

One *job* is one (depth, initialisation, seed): build the network, measure its gradient quotient, optionally
run MetaInit, then train with plain SGD and momentum. Each finished job is cached as JSON under the work folder,
so an interrupted run resumes at the first unfinished job; ``--fresh`` starts over.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from reproductions.core import recording, registry
from reproductions.core.runtime import pick_device, seed_everything
from reproductions.metainit import data, method, models

CONDITIONS = ("standard", "bad", "bad+metainit", "standard+metainit")
GQ_SEED = 12345  # the fixed random batch on which every GQ we report is measured


@dataclass
class Job:
    depth: int
    condition: str
    seed: int

    @property
    def key(self) -> str:
        return f"depth{self.depth}_{self.condition.replace('+', '-')}_seed{self.seed}"


@dataclass
class JobResult:
    depth: int
    condition: str
    seed: int
    gq_init: float  # GQ of the network as initialised (before MetaInit, if any)
    gq_start: float  # GQ when training starts (after MetaInit, if any)
    metainit_gq: list[float] = field(default_factory=list)  # GQ at each MetaInit step
    norm_ratio: dict[str, float] = field(default_factory=dict)  # tuned norm / standard-init norm, per tensor
    curve: list[dict[str, float]] = field(default_factory=list)  # one row per epoch
    diverged: bool = False
    seconds: float = 0.0

    @property
    def final(self) -> dict[str, float]:
        return self.curve[-1]


def jobs(config: dict) -> list[Job]:
    unknown = set(config["conditions"]) - set(CONDITIONS)
    if unknown:
        raise ValueError(f"conditions: unknown {sorted(unknown)}; choose from {', '.join(CONDITIONS)}")
    return [Job(d, c, s) for d in config["model"]["depths"] for c in config["conditions"]
            for s in range(config["seeds"])]


def build_model(config: dict, split: data.Split, job: Job, device: torch.device) -> nn.Module:
    """The network of ``job``: the same weight draw for every condition of one (depth, seed), so that the bad
    initialisation is exactly the standard one times ``bad_scale``."""
    m = config["model"]
    model = models.plain_mlp(split.input_shape, split.n_classes, job.depth, m["width"], m["activation"])
    scale = config["init"]["bad_scale"] if job.condition.startswith("bad") else 1.0
    generator = torch.Generator().manual_seed(1000 * job.seed + job.depth)
    models.scaled_fan_in_init_(model, m["activation"], scale, generator)
    return model.to(device)


def standard_norms(config: dict, split: data.Split, job: Job) -> dict[str, float]:
    reference = build_model(config, split, Job(job.depth, "standard", job.seed), torch.device("cpu"))
    return {name: float(p.detach().norm()) for name, p in method.tuned_parameters(reference)}


def fixed_gq(model: nn.Module, split: data.Split, config: dict, device: torch.device) -> float:
    gen = torch.Generator().manual_seed(GQ_SEED)
    x, y = method.random_batch(split.input_shape, split.n_classes, config["gq_batch"], gen, device)
    return method.model_gradient_quotient(model, x, y, eps=config["metainit"]["eps"])


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1024) -> tuple[float, float]:
    """(mean cross-entropy, error rate in %) of ``model`` on ``x``, ``y``."""
    model.eval()
    loss, wrong = 0.0, 0
    for i in range(0, len(y), batch):
        out = model(x[i:i + batch])
        loss += float(F.cross_entropy(out, y[i:i + batch], reduction="sum"))
        wrong += int((out.argmax(1) != y[i:i + batch]).sum())
    return loss / len(y), 100.0 * wrong / len(y)


def train(model: nn.Module, split: data.Split, config: dict, seed: int) -> tuple[list[dict[str, float]], bool]:
    """Minibatch SGD with momentum; one curve row per epoch. Stops early (diverged) on a non-finite loss."""
    tr = config["train"]
    opt = torch.optim.SGD(model.parameters(), lr=tr["lr"], momentum=tr["momentum"])
    gen = torch.Generator().manual_seed(seed)
    n = len(split.y_train)
    curve = []
    for epoch in range(1, tr["epochs"] + 1):
        model.train()
        perm = torch.randperm(n, generator=gen).to(split.x_train.device)
        total = 0.0
        for i in range(0, n, tr["batch_size"]):
            idx = perm[i:i + tr["batch_size"]]
            loss = F.cross_entropy(model(split.x_train[idx]), split.y_train[idx])
            if not math.isfinite(float(loss.detach())):
                curve.append({"epoch": epoch, "train_loss": float("nan"), "test_loss": float("nan"),
                              "test_error_pct": evaluate(model, split.x_test, split.y_test)[1]})
                return curve, True
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        test_loss, test_err = evaluate(model, split.x_test, split.y_test)
        curve.append({"epoch": epoch, "train_loss": total / n, "test_loss": test_loss, "test_error_pct": test_err})
    return curve, False


def run_job(config: dict, split: data.Split, job: Job, device: torch.device, progress: bool) -> JobResult:
    start = time.perf_counter()
    seed_everything(job.seed)
    model = build_model(config, split, job, device)
    gq_init = fixed_gq(model, split, config, device)
    result = JobResult(job.depth, job.condition, job.seed, gq_init, gq_init)
    if job.condition.endswith("+metainit"):
        mi = config["metainit"]
        gen = torch.Generator().manual_seed(job.seed)
        out = method.metainit(model, split.input_shape, split.n_classes, steps=mi["steps"], lr=mi["lr"],
                              momentum=mi["momentum"], eps=mi["eps"], batch_size=mi["batch_size"],
                              generator=gen, progress=progress)
        result.metainit_gq = out.gq[:-1]
        result.gq_start = fixed_gq(model, split, config, device)
        reference = standard_norms(config, split, job)
        result.norm_ratio = {name: norms[-1] / reference[name] for name, norms in out.norms.items()}
    result.curve, result.diverged = train(model, split, config, job.seed)
    result.seconds = time.perf_counter() - start
    return result


def run_all(config: dict, ctx: registry.RunContext) -> tuple[list[JobResult], str]:
    """Every job of ``config`` (cached ones are read back), and the device used."""
    torch.set_num_threads(int(config.get("threads", 1)))
    device = pick_device(ctx.device)
    split = data.load(config)
    split = data.Split(split.x_train.to(device), split.y_train.to(device), split.x_test.to(device),
                       split.y_test.to(device), split.n_classes)
    cache = Path(ctx.work_dir) / "metainit" / ctx.config_name / registry.fingerprint(
        {k: v for k, v in config.items() if k not in ("record", "threads")})
    todo = jobs(config)
    results = []
    for job in tqdm(todo, desc="metainit jobs", unit="job", disable=not ctx.progress):
        path = cache / f"{job.key}.json"
        if path.exists() and not ctx.fresh:
            results.append(JobResult(**json.loads(path.read_text(encoding="utf-8"))))
            continue
        if ctx.eval_only:
            raise ValueError(f"no finished job at {path}; run `mlatlas repro run metainit` first")
        result = run_job(config, split, job, device, ctx.progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        recording._atomic_write(path, json.dumps(asdict(result)).encode())  # a kill never leaves half a file
        results.append(result)
    return results, str(device)
