"""Omniglot outside the meta-training distribution: MAML against two recurrent meta-learners (SNAIL-style and
MetaNet) on test characters that are sheared or scaled at test time only (Finn & Levine 2018, the Omniglot half of
their Figure 3; its exact settings are our reconstruction, see README.md).

Every learner meta-trains on the standard Omniglot protocol (:mod:`reproductions.datasets.omniglot_standard`: the
1,200 train+val characters x 4 rotations, 28x28) with the same episodes and budget, through the shared episodic
loop (:func:`omniglot_benchmark.train_one`: checkpoints, exact resume). Then each is tested on the same N-way K-shot
episodes of the 423 test characters, drawn once with a fixed seed, with every support and query image sheared by an
angle or scaled by a factor (:func:`shear`, :func:`scale`); the unshifted episodes are the in-distribution point.

* ``maml``: second-order MAML with the 4-block strided network (:mod:`reproductions.omniglot_maml`).
* ``snail``: the SNAIL-style learner of :mod:`snail` reading ``[embedding, one-hot label, is_query]`` for the
  support images, then one query image; the embedding is the same 4-block network, trained end to end.
* ``metanet``: Meta Networks (:mod:`metanet`): fast weights generated from support-set loss gradients, the base
  learner's read back for each query by attention over the support representations; the same 4-block network as
  the trunk of its base learner and of its representation learner.

Each recurrent learner is compared with MAML by the paired difference of their accuracy drops (:func:`summary`).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reproductions.core import recording, registry
from reproductions.core.runtime import pick_device
from reproductions.core.tasks import EpisodeSampler
from reproductions.datasets import omniglot_standard
from reproductions.datasets.omniglot_benchmark import Episode, conv4, make_episode, train_one
from reproductions.maml_universality.metanet import MetaNetClassifier
from reproductions.maml_universality.snail import SNAIL
from reproductions.omniglot_maml.method import OmniglotMAML

NAME = "maml_universality"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
CODE_PATHS = ["reproductions/maml_universality", ":(exclude)reproductions/maml_universality/results",
              "reproductions/core", "reproductions/omniglot_maml", "reproductions/datasets"]
TEST_SEED = 20180216  # the test episodes: the same characters and drawings for every shift and method
IDENTITY = {"shear": 0.0, "scale": 1.0}
UNITS = {"shear": "shear angle (radians)", "scale": "scale factor"}


# --------------------------------------------------------------------------------------------------
# The shifts
# --------------------------------------------------------------------------------------------------


def affine(images: Tensor, matrix: Tensor) -> Tensor:
    """Move the content of ``images`` [n, 1, S, S] by the 2x2 ``matrix`` about the image centre: a point at
    ``p`` (normalised coordinates in [-1, 1], x to the right, y down) goes to ``matrix @ p``. Bilinear sampling,
    background (0) outside the image."""
    if images.shape[0] == 0:
        return images
    inverse = torch.linalg.inv(matrix.double()).to(images.dtype)
    theta = torch.cat([inverse, torch.zeros(2, 1, dtype=images.dtype)], 1).to(images.device)
    grid = F.affine_grid(theta.expand(images.shape[0], 2, 3), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def shear(images: Tensor, angle: float) -> Tensor:
    """Horizontal shear by ``angle`` radians: ``(x, y) -> (x + tan(angle) y, y)``, so a vertical stroke leans by
    ``angle`` (for a positive angle its lower end moves right). 0 is the identity."""
    return affine(images, torch.tensor([[1.0, math.tan(angle)], [0.0, 1.0]]))


def scale(images: Tensor, factor: float) -> Tensor:
    """Zoom about the centre by ``factor``: below 1 the character shrinks, above 1 it grows (and may be cut at the
    border). 1 is the identity."""
    return affine(images, torch.tensor([[factor, 0.0], [0.0, factor]]))


SHIFTS = {"shear": shear, "scale": scale}


def shifted(kind: str, value: float):
    """The test-time transform of one grid point (None for the identity: the images are left untouched)."""
    if kind not in SHIFTS:
        raise ValueError(f"shift kind must be one of {', '.join(SHIFTS)}, not {kind!r}")
    if float(value) == IDENTITY[kind]:
        return None
    return lambda x: SHIFTS[kind](x.float(), float(value))


# --------------------------------------------------------------------------------------------------
# The recurrent learner on images
# --------------------------------------------------------------------------------------------------


class SnailClassifier(nn.Module):
    """Convolutional embedding + SNAIL over ``[embedding, one-hot label, is_query]``: the N*K support images with
    their labels, then one query image (label slot zero, flag one); the logits at the query position classify it.
    Every query gets its own sequence, so no query reads another; as in MAML (Finn et al.'s convention), batch norm
    normalises the support images and the query images each with their own batch statistics."""

    def __init__(self, n_way: int, k_shot: int, channels: int, filters: int, key: int, value: int):
        super().__init__()
        self.n_way = n_way
        self.embed = conv4(channels, batch_stats=True, strided=True)
        self.snail = SNAIL(n_way * k_shot + 1, filters, key, value, in_features=channels + n_way + 1,
                           out_features=n_way)

    def forward(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        s, q = self.embed(support_x), self.embed(query_x)  # batch norm: each set with its own statistics, as MAML
        labels = F.one_hot(support_y, self.n_way).to(s.dtype)
        support = torch.cat([s, labels, torch.zeros_like(labels[:, :1])], 1)  # [S, F]
        query = torch.cat([q, torch.zeros(len(q), self.n_way + 1, dtype=q.dtype, device=q.device)], 1)
        query[:, -1] = 1.0
        seq = torch.cat([support.unsqueeze(0).expand(len(q), *support.shape), query.unsqueeze(1)], 1)
        return self.snail(seq)[:, -1]  # [Q, n_way]


class SupportSetReader:
    """The episodic-method interface of the Omniglot benchmark (``build``, ``loss``, ``scores``) for a recurrent
    learner called as ``model(support_x, support_y, query_x) -> logits``; ``make(method, train)`` builds it from the
    config's sections. In training the support set is read in a random order (the sampler groups it by class), so
    that position carries no label."""

    def __init__(self, make):
        self.make = make

    def build(self, config: dict) -> nn.Module:
        return self.make(config["method"], config["train"])

    def loss(self, model: nn.Module, episode: Episode) -> Tensor:
        order = torch.randperm(len(episode.support_y), device=episode.support_y.device)
        logits = model(episode.support_x[order], episode.support_y[order], episode.query_x)
        return F.cross_entropy(logits, episode.query_y)

    def scores(self, model: nn.Module, episode: Episode) -> Tensor:
        return model(episode.support_x, episode.support_y, episode.query_x).detach()


def snail_of(m: dict, tr: dict) -> SnailClassifier:
    return SnailClassifier(tr["n_way"], tr["k_shot"], m["channels"], m["filters"], m["key"], m["value"])


def metanet_of(m: dict, tr: dict) -> MetaNetClassifier:
    return MetaNetClassifier(tr["n_way"], m["channels"], m["hidden"], m["key"], m["generator_hidden"])


KINDS = ("maml", "snail", "metanet")


def method_of(spec: dict):
    kind = spec.get("kind")
    if kind == "maml":
        return OmniglotMAML(first_order=bool(spec.get("first_order", False)))
    if kind == "snail":
        return SupportSetReader(snail_of)
    if kind == "metanet":
        return SupportSetReader(metanet_of)
    raise registry.RegistryError(f"methods.*.kind: {kind!r} is not one of {', '.join(KINDS)} for the omniglot "
                                 "experiment")


# --------------------------------------------------------------------------------------------------
# Train, evaluate under every shift, record
# --------------------------------------------------------------------------------------------------


def check(config: dict) -> None:
    for name, spec in config["methods"].items():
        method_of(spec)
    for name in config.get("run_methods") or []:
        if name not in config["methods"]:
            raise registry.RegistryError(f"run_methods: {name!r} is not one of the config's methods "
                                         f"({', '.join(config['methods'])})")
    tr, ev = config["train"], config["eval"]
    if [tr["n_way"], tr["k_shot"]] != list(ev["setting"]):
        raise registry.RegistryError(f"eval.setting {ev['setting']} must be the training setting "
                                     f"[{tr['n_way']}, {tr['k_shot']}] (the recurrent learners are built for it)")
    for kind in ev["shifts"]:
        if kind not in SHIFTS:
            raise registry.RegistryError(f"eval.shifts.{kind}: not one of {', '.join(SHIFTS)}")


def points(config: dict) -> list[tuple[str, float]]:
    """Every (kind, value) evaluated; the identity once, as ("none", 0)."""
    out = [("none", 0.0)]
    for kind, values in config["eval"]["shifts"].items():
        out += [(kind, float(v)) for v in values if float(v) != IDENTITY[kind]]
    return out


def key(kind: str, value: float) -> str:
    return "none" if kind == "none" else f"{kind}={value!r}"


def evaluate(method, model: nn.Module, pool, config: dict, device, progress: bool) -> dict[str, list[float]]:
    """Accuracy (percent) per test episode at every grid point; the same episodes at every point."""
    ev = config["eval"]
    n_way, k_shot = ev["setting"]
    model.eval()
    out = {}
    from tqdm import tqdm

    for kind, value in tqdm(points(config), desc="shifts", disable=not progress):
        sampler = EpisodeSampler(pool.labels, n_way, k_shot, ev["n_query"], np.random.default_rng(TEST_SEED))
        transform = None if kind == "none" else shifted(kind, value)
        accs = []
        with torch.no_grad():
            for _ in range(ev["episodes"]):
                episode = make_episode(pool, sampler, device, transform)
                accs.append(100.0 * (method.scores(model, episode).argmax(1) == episode.query_y).float().mean().item())
        out[key(kind, value)] = accs
    return out


def run(config: dict, ctx: registry.RunContext) -> dict[str, float]:
    check(config)
    torch.set_num_threads(int(config.get("threads", 1)))
    device = pick_device(ctx.device)
    data_cfg = config["data"]
    data_of = omniglot_standard.LazyStandardData(data_cfg, getattr(ctx, "data_dir", None))

    folder = Path(ctx.work_dir) / NAME / ctx.config_name
    curve_episodes = int(config["train"].get("curve_episodes", 0))
    results: dict[str, dict] = {}
    chosen = config.get("run_methods") or list(config["methods"])  # a subset computes those jobs ahead, no record
    for name, spec in config["methods"].items():
        if name not in chosen:
            continue
        method = method_of(spec)
        job = {**config, "method": {k: v for k, v in spec.items() if k != "label"}}
        fp = registry.fingerprint({k: job[k] for k in ("seed", "method", "train", "eval", "data")})
        cache = folder / f"omniglot_{name}_{fp}.json"
        if cache.exists() and not ctx.fresh and not ctx.eval_only:
            results[name] = json.loads(cache.read_text(encoding="utf-8"))
            continue
        data = data_of()

        def curve_point(model: nn.Module, method=method) -> dict[str, float]:
            # Learning curve only (never used to pick a model): unshifted test episodes from their own seed.
            if not curve_episodes:
                return {}
            n_way, k_shot = config["eval"]["setting"]
            sampler = EpisodeSampler(data.test.labels, n_way, k_shot, config["eval"]["n_query"],
                                     np.random.default_rng(TEST_SEED + 1))
            model.eval()
            with torch.no_grad():
                accs = [100.0 * (method.scores(model, ep).argmax(1) == ep.query_y).float().mean().item()
                        for ep in (make_episode(data.test, sampler, device) for _ in range(curve_episodes))]
            return {"test_acc_pct": float(np.mean(accs))}

        model, state = train_one(method, NAME, job, ctx, f"omniglot_{name}", device, data.train, curve_point,
                                 prepare=lambda m: omniglot_standard._channels_last(m, device))
        start = time.perf_counter()
        accs = evaluate(method, model, data.test, config, device, ctx.progress)
        results[name] = {"eval": accs, "curve": state.curve, "seconds": state.seconds,
                         "eval_seconds": time.perf_counter() - start, "device": str(device),
                         "parameters": sum(p.numel() for p in model.parameters()),
                         "commit": recording.git_commit(ctx.root, CODE_PATHS)}  # a cached job keeps where it ran
        cache.parent.mkdir(parents=True, exist_ok=True)
        recording._atomic_write(cache, json.dumps(results[name]).encode())
    if ctx.write_record and set(results) == set(config["methods"]):
        write_all(config, ctx, data_of.for_records(), results)
    metrics = {}
    for name in results:
        for kind, value in points(config):
            metrics[f"{name}_{key(kind, value)}_acc_pct"] = float(np.mean(results[name]["eval"][key(kind, value)]))
    return metrics


# --------------------------------------------------------------------------------------------------
# Records, summary table and figure
# --------------------------------------------------------------------------------------------------


def grid(config: dict, kind: str) -> list[float]:
    """The values of one shift's axis, the identity included, sorted."""
    return sorted({float(v) for v in config["eval"]["shifts"][kind]} | {IDENTITY[kind]})


def accs_at(result: dict, kind: str, value: float) -> np.ndarray:
    k = "none" if value == IDENTITY[kind] else key(kind, value)
    return np.asarray(result["eval"][k], dtype=np.float64)


def stem_of(kind: str, value: float) -> str:
    return f"{kind}_{'m' if value < 0 else ''}{abs(value):.2f}".replace(".", "p")


def describe_shift(kind: str, value: float) -> str:
    if kind == "none":
        return "none (unshifted test images)"
    if kind == "shear":
        return f"horizontal shear by {value:g} rad (x -> x + tan({value:g}) y) of every support and query image"
    return f"scale by {value:g} about the image centre of every support and query image"


def write_all(config: dict, ctx: registry.RunContext, data, results: dict, results_dir: Path | None = None) -> list[Path]:
    """One record per learner and grid point (the unshifted one carries the learning curve), the summary table and
    the figure."""
    results_dir = results_dir or RESULTS_DIR
    tr, ev, rec = config["train"], config["eval"], config["record"]
    n_way, k_shot = ev["setting"]
    prefix = ctx.config_name
    commit = recording.git_commit(ctx.root, CODE_PATHS)
    provenance = recording.provenance((results[name].get("commit", "") for name in config["methods"]), commit)
    budget = (f"{tr['iterations']:,} meta-iterations of {tr['meta_batch']} episodes of {tr['n_way']}-way "
              f"{tr['k_shot']}-shot ({tr['n_query']} queries per class), Adam {tr['lr']}, the same for each learner; "
              f"one training seed ({config['seed']})")
    written = []
    for name, spec in config["methods"].items():
        result = results[name]
        facts = {"method": spec.get("label", name),
                 **{f"method_{k}": v for k, v in spec.items() if k != "label" and isinstance(v, (str, int, float, bool))},
                 "parameters": result["parameters"]}
        for kind, value in points(config):
            accs = np.asarray(result["eval"][key(kind, value)], dtype=np.float64)
            mean, ci = recording.mean_ci95(accs)
            protocol = {
                "data": data.describe(), "split": data.split,
                "train_characters": data.characters["train"], "test_characters": data.characters["test"],
                "train_way": tr["n_way"], "train_shot": tr["k_shot"], "train_queries": tr["n_query"],
                "episodes_per_update": tr["meta_batch"], "train_updates": tr["iterations"],
                "test_way": n_way, "test_shot": k_shot, "test_queries": ev["n_query"], "test_episodes": len(accs),
                "test_shift": describe_shift(kind, value), **facts,
            }
            stem = f"{prefix}_{name}_{'unshifted' if kind == 'none' else stem_of(kind, value)}"
            notes = (f"{' '.join(rec['notes'].split())} The same {len(accs)} test episodes (fixed seed) at every "
                     f"shift and for every learner; 95% interval over episodes (Student t), one training seed. "
                     f"Every point of the curves: {prefix}_summary.md / .png.{provenance}")
            written.append(recording.write_record(
                results_dir, stem, root=ctx.root, code_paths=CODE_PATHS, command=ctx.command or
                f"mlatlas repro run {NAME} --config {ctx.config_name}", device=result["device"],
                wall_time_s=result["seconds"] + result["eval_seconds"], commit=commit,
                curve=result["curve"] if kind == "none" else None, paper=rec["paper"], reproduction=NAME,
                benchmark=f"Omniglot {n_way}-way {k_shot}-shot, test characters under shear or scale "
                          "(standard protocol)",
                setting=f"{spec.get('label', name)}; test shift: {describe_shift(kind, value)}",
                metric="accuracy", unit="%", higher_is_better=True, value=round(mean, 2), ci95=round(ci, 2),
                n_eval_tasks=len(accs), n_seeds=1, budget=budget, protocol=protocol, notes=notes[:2000],
            ))
    text, png = summary(config, results, prefix)
    recording._atomic_write(results_dir / f"{prefix}_summary.md", text.encode())
    recording._atomic_write(results_dir / f"{prefix}_summary.png", png)
    return written + [results_dir / f"{prefix}_summary.md", results_dir / f"{prefix}_summary.png"]


def drop_difference(results: dict, a: str, b: str, kind: str, value: float) -> tuple[float, float]:
    """(drop of ``a``) - (drop of ``b``) from the unshifted point to ``value``, in accuracy points, with a paired
    95% interval over the episodes (every learner and shift sees the same episodes). Positive: ``a`` loses more."""
    da = accs_at(results[a], kind, IDENTITY[kind]) - accs_at(results[a], kind, value)
    db = accs_at(results[b], kind, IDENTITY[kind]) - accs_at(results[b], kind, value)
    return recording.mean_ci95(da - db)


def comparisons(config: dict) -> tuple[str | None, list[str]]:
    """(the MAML learner's name, the learners compared with it): every other learner of the config against the
    first one of kind ``maml``; none without one."""
    names = list(config["methods"])
    reference = next((n for n in names if config["methods"][n].get("kind") == "maml"), None)
    return reference, [n for n in names if reference is not None and n != reference]


def summary(config: dict, results: dict, config_name: str = "omniglot") -> tuple[str, bytes]:
    """The table of every point (markdown) and the figure: accuracy against shear and against scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ev, names = config["eval"], list(config["methods"])
    kinds = list(ev["shifts"])
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 4.2), dpi=100, squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        values = grid(config, kind)
        for name in names:
            stats = [recording.mean_ci95(accs_at(results[name], kind, v)) for v in values]
            ax.errorbar(values, [m for m, _ in stats], [c for _, c in stats], marker="o", markersize=3, capsize=2,
                        label=config["methods"][name].get("label", name))
        ax.axvline(IDENTITY[kind], color="grey", alpha=0.4, linestyle=":", label="training images (no shift)")
        ax.set_xlabel(UNITS[kind])
        ax.set_ylabel(f"{ev['setting'][0]}-way {ev['setting'][1]}-shot accuracy (%)")
        ax.set_ylim(0, 100)
        ax.axhline(100 / ev["setting"][0], color="black", alpha=0.3, linewidth=0.8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower center")
    title = (f"Omniglot test characters under shear and scale ({ev['setting'][0]}-way {ev['setting'][1]}-shot, "
             f"{ev['episodes']} episodes per point, 95% CI)")
    fig.suptitle(title, fontsize=10)
    fig.text(0.5, 0.005, "Ours only: the paper's curves could not be read (see README). Dark line: chance.",
             ha="center", fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    png = recording.figure_png(fig)
    plt.close(fig)

    labels = [config["methods"][n].get("label", n) for n in names]
    lines = [f"<!-- Generated by `mlatlas repro run maml_universality --config {config_name}`; do not edit by hand. -->",
             f"# {title}", "",
             f"Accuracy in percent (mean ± 95% CI over the same {ev['episodes']} test episodes at every point). "
             f"The learners meta-trained on unshifted images only, {config['train']['iterations']:,} meta-iterations "
             f"of {config['train']['meta_batch']} episodes each (one training seed).", ""]
    label = {n: config["methods"][n].get("label", n) for n in names}
    reference, others = comparisons(config)
    for kind in kinds:
        head = f"| {UNITS[kind]} | " + " | ".join(labels)
        rule = "| ---: | " + " | ".join("---:" for _ in labels)
        for other in others:
            head += f" | drop of {label[reference]} − drop of {label[other]} (paired)"
            rule += " | ---:"
        lines += [f"## Accuracy against {kind}", "", head + " |", rule + " |"]
        for v in grid(config, kind):
            cells = ["{:.1f} ± {:.1f}".format(*recording.mean_ci95(accs_at(results[n], kind, v))) for n in names]
            for other in others:
                cells.append("—" if v == IDENTITY[kind] else
                             "{:+.1f} ± {:.1f}".format(*drop_difference(results, reference, other, kind, v)))
            lines.append(f"| {v:g} | " + " | ".join(cells) + " |")
        lines.append("")
    if len(others) == 1:
        lines += [f"A negative last column means {label[reference]} loses less accuracy than {label[others[0]]} "
                  "between the unshifted episodes and that shift (the paper's claim); the interval is over "
                  "episodes, paired.", ""]
    elif others:
        lines += [f"A negative value in a column \"drop of {label[reference]} − drop of X\" means {label[reference]} "
                  "loses less accuracy than X between the unshifted episodes and that shift (the paper's claim); "
                  "the interval is over episodes, paired.", ""]
    lines += ["## Training", "", "| learner | parameters | training (s) | evaluation (s) |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {lab} | {results[n]['parameters']:,} | {results[n]['seconds']:.0f} | {results[n]['eval_seconds']:.0f} |"
              for n, lab in zip(names, labels)]
    return "\n".join(lines) + "\n", png
