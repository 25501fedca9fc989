"""How long do `mlatlas validate` and `mlatlas render` take on a 10,000-paper catalog?

Generates a synthetic catalog (the real vocabularies, papers shaped like real entries, every one with its
own id, title, arXiv id and repository) in a temporary folder, then times loading + all checks and
rendering README.md, each on a cold start of the catalog (files read and parsed anew).

    python benchmarks/catalog_scale.py [--papers 10000] [--repeat 3]

Goal: validate + render under 2 seconds on a 2-core machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import platform
import random
import resource
import shutil
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from mlatlas.catalog.loader import load_catalog
from mlatlas.paths import project_root
from mlatlas.outputs.readme import BLOCKS, BEGIN, END, write_readme
from mlatlas.catalog.yamlio import compose, read_yaml

PAPER = """# yaml-language-server: $schema=../schema/paper.schema.json
id: {id}
title: "{title}"
method: {method}
authors: [{authors}]
date: {date}
year: {year}
venue: {venue} {year}
labels:
  framework: [{framework}]
  type: [{type}]
  modality: [{modality}]
topics: [{topics}]
ids:
  arxiv: "{arxiv}"
code:
  status: official
  repositories:
    - url: https://github.com/bench-{n}/{id}
      official: true
      framework: PyTorch
summary: >-
  Synthetic benchmark entry number {n}: learns an initialisation from which a few gradient steps on a
  new task's small training set already generalise well; shown on few-shot classification and regression.
results:
  - benchmark: Omniglot
    setting: 5-way 1-shot
    metric: accuracy
    value: {value}
    pm: 0.4
    unit: "%"
    source:
      paper: {id}
      table: Table 1
added: 2026-11-22
"""

WORDS = "meta learning gradient task shot few adaptive memory metric prototype network transfer fast".split()


def generate(root: Path, n_papers: int, seed: int = 0) -> None:
    real = project_root()
    shutil.copytree(real / "catalog" / "vocab", root / "catalog" / "vocab")
    (root / "reproductions").mkdir()
    papers = root / "catalog" / "papers"
    papers.mkdir(parents=True)
    vocab = read_yaml(root / "catalog" / "vocab" / "labels.yaml").data["families"]
    labels = {fam["id"]: [lab["id"] for lab in fam["labels"]] for fam in vocab}
    topics = [t["id"] for t in read_yaml(root / "catalog" / "vocab" / "topics.yaml").data["topics"]]
    venues = [v["id"] for v in read_yaml(root / "catalog" / "vocab" / "venues.yaml").data["venues"]]
    rng = random.Random(seed)
    for n in tqdm(range(n_papers), desc="generating papers", unit="paper"):
        date = dt.date(2000, 1, 1) + dt.timedelta(days=rng.randrange(9000))
        pid = f"bench-{n:05d}"
        text = PAPER.format(
            id=pid,
            n=n,
            title=" ".join(rng.choice(WORDS) for _ in range(6)).capitalize() + f" {n}",
            method=f"M{n}",
            authors=", ".join(f"Author {rng.randrange(1000)}" for _ in range(rng.randrange(1, 5))),
            date=date.isoformat(),
            year=date.year,
            venue=rng.choice(venues),
            framework=rng.choice(labels["framework"]),
            type=rng.choice(labels["type"]),
            modality=rng.choice(labels["modality"]),
            topics=", ".join(rng.sample(topics, rng.randrange(1, 3))),
            arxiv=f"{date.year % 100:02d}{date.month:02d}.{n:05d}",
            value=round(rng.uniform(40, 99), 1),
        )
        (papers / f"{pid}.yaml").write_text(text, encoding="utf-8")
    blocks = "\n\n".join(f"{BEGIN.format(name=b)}\n{END.format(name=b)}" for b in BLOCKS)
    (root / "README.md").write_text(f"# Benchmark atlas\n\n{blocks}\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--papers", type=int, default=10_000, help="papers to generate (default 10000)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the best and all are reported")
    parser.add_argument(
        "--breakdown", action="store_true",
        help="also time each stage alone in this process (CPU seconds), including the floor of PyYAML itself",
    )
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="mlatlas-bench-") as tmp:
        root = Path(tmp)
        generate(root, args.papers)
        runs = []
        for _ in range(args.repeat):
            start, cpu_start = time.perf_counter(), _cpu()
            catalog, problems = load_catalog(root)
            loaded = time.perf_counter()
            errors = [p for p in problems if p.severity == "error"]
            assert catalog is not None and not errors, errors[:5]
            write_readme(catalog)
            done = time.perf_counter()
            runs.append((loaded - start, done - loaded, done - start, _cpu() - cpu_start))
        size = (root / "README.md").stat().st_size
        stages = _breakdown(root) if args.breakdown else {}
    print(f"machine: {os.cpu_count()} cores {platform.machine()}, python {platform.python_version()}")
    print(f"load average before/after: {load_before[0]:.1f} / {os.getloadavg()[0]:.1f} (other work shares the cores)")
    print(f"{args.papers} papers, README.md {size / 1e6:.1f} MB")
    for i, (load, render, total, cpu) in enumerate(runs, 1):
        print(f"run {i}: validate {load:.2f} s + render {render:.2f} s = {total:.2f} s wall, {cpu:.2f} s CPU")
    best = min(runs, key=lambda r: r[2])
    print(f"best: {best[2]:.2f} s wall, {best[3]:.2f} s CPU (goal: under 2 s)")
    if stages:
        print("stages alone, one process, CPU seconds:")
        for name, seconds in stages.items():
            print(f"  {seconds:6.2f}  {name}")


def _breakdown(root: Path) -> dict[str, float]:
    """CPU seconds of each stage of validate + render on its own, in this process. The first two lines are
    PyYAML's own floor: libyaml's events for every file, and PyYAML's composer building its node tree (the
    least Python work any PyYAML-based reader does, here with our quick tag resolver)."""
    import yaml

    from mlatlas.catalog.checks import check_catalog
    from mlatlas.catalog.models import Paper
    from mlatlas.outputs.readme import render_blocks

    paths = sorted((root / "catalog" / "papers").glob("*.yaml"))
    texts = [p.read_text(encoding="utf-8") for p in paths]
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    out: dict[str, float] = {}

    def timed(name: str, work):
        gc.collect()
        gc.disable()  # as the loader does: no cycles here, and collections would scan the growing heap
        start = time.process_time()
        result = work()
        out[name] = time.process_time() - start
        gc.enable()
        return result

    timed("libyaml events only (yaml.parse, no Python objects kept)", lambda: [sum(1 for _ in yaml.parse(t, Loader=loader)) for t in texts])
    timed("PyYAML compose with our resolver (node trees, no values)", lambda: [compose(t) for t in texts])
    docs = timed("our reader: read + parse to Python values (read_yaml)", lambda: [read_yaml(p) for p in paths])
    timed("pydantic validation of every paper", lambda: [Paper.model_validate(d.data) for d in docs])
    catalog, _ = load_catalog(root)
    timed("cross-file and vocabulary checks", lambda: check_catalog(catalog))
    timed("rendering the README blocks", lambda: render_blocks(catalog))
    return out


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the parsing workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    main()
