"""How long the website takes to build: for the real catalog, and for a generated catalog of N papers.

    python benchmarks/site_build.py                 # real catalog + 10,000 generated papers
    python benchmarks/site_build.py --papers 2000   # a smaller generated catalog
    python benchmarks/site_build.py --papers 0      # the real catalog only

The generated papers are copies of the real entries with new ids, titles and links (so the catalog's
cross-file checks pass); each build is a real ``mkdocs build --strict`` in a subprocess, timed end to end.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from tqdm import tqdm

PROJECT_ROOT = Path(__file__).resolve().parent.parent
HEADER = "# yaml-language-server: $schema=../schema/paper.schema.json\n"


def build(root: Path, out: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of ``mkdocs build --strict`` of the catalog at ``root``; exits when the build fails.

    CPU time (user + system of the build process) is reported too because this machine is shared:
    the wall time depends on what else runs, the CPU time much less."""
    env = {**os.environ, "MLATLAS_ROOT": str(root), "NO_MKDOCS_2_WARNING": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(PROJECT_ROOT / "mkdocs.yml"), "-d", str(out)],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
    )
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"build failed:\n{result.stderr}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def generated_paper(source: dict, i: int) -> dict:
    """A new, valid entry made from a real one: unique id, title, arXiv id and repository links."""
    paper = {k: v for k, v in source.items() if k not in ("links", "corrections", "reproductions", "results")}
    paper["id"] = f"gen-{i:05d}-{source['id']}"[:64].rstrip("-")
    paper["title"] = f"{source['title']} (generated variant {i})"
    paper["ids"] = {"arxiv": f"2101.{10000 + i:05d}"}
    code = dict(source["code"])
    code["repositories"] = [
        {**repo, "url": f"https://github.com/example/{paper['id']}-{j}"} for j, repo in enumerate(code.get("repositories", []))
    ]
    paper["code"] = code
    paper["needs_code"] = False
    return paper


def generate_catalog(root: Path, n: int) -> None:
    """The real catalog (papers, resources, result records) topped up with generated papers to ``n`` in all."""
    shutil.copytree(PROJECT_ROOT / "catalog", root / "catalog")
    for package in (PROJECT_ROOT / "reproductions").glob("*/__init__.py"):
        target = root / "reproductions" / package.parent.name
        target.mkdir(parents=True)
        (target / "__init__.py").write_text("")
        if (package.parent / "results").is_dir():
            shutil.copytree(package.parent / "results", target / "results")
    papers_dir = root / "catalog" / "papers"
    sources = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted(papers_dir.glob("*.yaml"))]
    for i in tqdm(range(n - len(sources)), desc="generating papers", unit="paper", mininterval=2):
        paper = generated_paper(sources[i % len(sources)], i)
        text = HEADER + yaml.safe_dump(paper, allow_unicode=True, sort_keys=False, default_flow_style=None)
        (papers_dir / f"{paper['id']}.yaml").write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--papers", type=int, default=10_000, help="size of the generated catalog (0: skip it)")
    args = parser.parse_args(argv)

    n_real = len(list((PROJECT_ROOT / "catalog" / "papers").glob("*.yaml")))
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="mlatlas-site-bench-") as tmp:
        tmp = Path(tmp)
        wall, cpu = build(PROJECT_ROOT, tmp / "real")
        print(f"real catalog ({n_real} papers): {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
        if args.papers:
            generate_catalog(tmp / "generated", args.papers)
            wall, cpu = build(tmp / "generated", tmp / "generated-site")
            pages = sum(1 for _ in (tmp / "generated-site").rglob("index.html"))
            print(f"generated catalog ({args.papers} papers, {pages} pages): {wall:.1f} s wall, {cpu:.1f} s CPU")
            print(f"load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall time depends on it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
