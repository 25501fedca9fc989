"""``mlatlas bench``: time and memory of our meta-learning core against ``higher`` (and learn2learn)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from mlatlas.paths import project_root


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="benchmark our MAML core against the higher library (time per meta-iteration, peak memory)",
        description="For each configuration (sinusoid MLP and 4-layer conv net, 1 and 5 inner steps, first and "
        "second order) check that every implementation gives the same meta-gradient, then time meta-iterations "
        "(interleaved, median and interquartile range) and measure peak memory in a fresh process per "
        "implementation. Ours runs as the reproductions run it and, on the sinusoid, also in its memory-lean "
        "mode (ours-lean: a few tasks per call; on the long inner loop, inner steps also recomputed). Prints a "
        "table; --json/--markdown keep the results. A full run takes about 12 minutes on a quiet 2-core machine, "
        "much longer under load; --quick takes under a minute.",
    )
    p.add_argument("--quick", action="store_true", help="tiny configurations and 2 rounds: a smoke test, not a result")
    p.add_argument("--repeats", type=int, help="timed rounds per configuration (default 7, --quick 2)")
    p.add_argument("--warmup", type=int, default=2, help="untimed meta-iterations per implementation first (default 2)")
    p.add_argument("--memory-runs", type=int, metavar="N",
                   help="fresh processes measuring peak memory per configuration and implementation, median "
                   "reported (default 3, --quick 1; 0 skips memory)")
    p.add_argument("--json", type=Path, metavar="OUT", help="write the full results as JSON to OUT")
    p.add_argument("--markdown", type=Path, metavar="OUT", help="write the results table as Markdown to OUT")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.add_argument("--render", type=Path, metavar="JSON",
                   help="do not benchmark: print (and with --markdown write) the tables of a recorded results file")
    p.set_defaults(func=cmd_bench)


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def render_recorded(path: Path, markdown: Path | None) -> int:
    from mlatlas.outputs.bench_page import render_bench_page, render_table

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        table, page = render_table(data), render_bench_page(data)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: {path}: not a readable `mlatlas bench --json` results file ({type(exc).__name__}: {exc})",
              file=sys.stderr)
        return 1
    print(table)
    if markdown:
        write_atomically(markdown, page)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from mlatlas.outputs.bench_page import render_bench_page, render_table
    from reproductions.bench import meta_bench

    if args.render:
        return render_recorded(args.render, args.markdown)
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 7)
    memory_runs = args.memory_runs if args.memory_runs is not None else (1 if args.quick else 3)
    if repeats < 1 or args.warmup < 1 or memory_runs < 0:
        print("error: --repeats and --warmup must be at least 1, --memory-runs at least 0", file=sys.stderr)
        return 2
    root = Path(args.root) if args.root else project_root()
    command = " ".join(["mlatlas bench"] + (["--quick"] if args.quick else []) + [f"--repeats {repeats}"]
                       + [f"--memory-runs {memory_runs}"])
    try:
        data = meta_bench.run(root, quick=args.quick, repeats=repeats, warmup=args.warmup,
                              memory_runs=memory_runs, command=command, progress=not args.no_progress)
    except meta_bench.DisagreementError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(render_table(data))
    if args.json:
        write_atomically(args.json, json.dumps(data, indent=2) + "\n")
    if args.markdown:
        write_atomically(args.markdown, render_bench_page(data))
    return 0
