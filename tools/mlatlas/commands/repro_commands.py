"""``mlatlas repro``: list, run and evaluate the reproductions under ``reproductions/``."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from mlatlas.paths import project_root


def register(subparsers: argparse._SubParsersAction) -> None:
    repro = subparsers.add_parser(
        "repro",
        help="list, run and evaluate paper reproductions",
        description="Reproductions of meta-learning papers. Each run trains, evaluates and (for real configs) "
        "writes a result record under reproductions/<name>/results/.",
    )
    sub = repro.add_subparsers(dest="repro_command", metavar="ACTION")

    p_list = sub.add_parser("list", help="list the reproductions, their papers and configs")
    p_list.set_defaults(func=cmd_list)

    p_results = sub.add_parser(
        "results",
        help="print the recorded results as a Markdown table: ours, the paper's, the verdict and the gap",
        description="Print the result records (reproductions/*/results/*.yaml) as a Markdown table: our value with "
        "its 95%% interval and number of seeds, the paper's value, the verdict and the gap (ours minus the "
        "paper's). The verdict is 'agrees', 'better' or 'worse' only when every protocol fact the paper states "
        "matches ours ('agrees': within the combined 95%% interval, or the tolerance the config declared); "
        "otherwise 'different protocol' (naming the facts that differ, and no gap) or 'no paper number'.",
    )
    p_results.add_argument("names", nargs="*", metavar="NAME", help="only these reproductions (default: all)")
    p_results.add_argument("--grep", metavar="TEXT", help="only records whose file name, benchmark or setting "
                           "contains TEXT (case-insensitive), e.g. 10shot or 'small1'")
    p_results.add_argument("--verdict", action="append", metavar="KIND", type=_verdict_kind,
                           help="only records with this verdict: agrees, better, worse, 'different protocol' "
                           "(or different-protocol), 'no paper number' (or no-paper-number); repeatable")
    p_results.set_defaults(func=cmd_results)

    p_summary = sub.add_parser(
        "summary",
        help="one line per reproduced paper: how its records read against the paper's numbers",
        description="For each reproduced paper, one line computed from its records: per data set, how many were "
        "compared with which table and their verdicts, how many were measured under another protocol than the "
        "paper's number, how many have no paper number.",
    )
    p_summary.add_argument("papers", nargs="*", metavar="PAPER", help="only these paper ids (default: all)")
    p_summary.set_defaults(func=cmd_summary)

    for action, helptext in (
        ("run", "train a reproduction (resuming its checkpoint if any), evaluate it and write its records"),
        ("eval", "evaluate the finished checkpoint of a run again, without training"),
    ):
        p = sub.add_parser(action, help=helptext, description=helptext)
        p.add_argument("name", help="reproduction name, as `mlatlas repro list` shows it (e.g. maml)")
        p.add_argument(
            "--config",
            help="config name (e.g. smoke, sinusoid_5shot) or path to a YAML file; default: 'default'",
        )
        p.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override one setting, dotted for nested keys (e.g. --set train.iterations=500); repeatable",
        )
        p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"], help="torch device")
        p.add_argument(
            "--work-dir",
            type=Path,
            help="where checkpoints go (default: runs/ in the project checkout; not committed)",
        )
        p.add_argument(
            "--data-dir",
            type=Path,
            help="folder holding the dataset archives (downloaded there when missing; archives you already have "
            "are verified and used); default: $MLATLAS_DATA_DIR/<dataset>, else your user data folder. Only for "
            "reproductions that read a dataset (the Omniglot ones)",
        )
        p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
        if action == "run":
            p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint and start over")
            add_parallel_options(p)
            p.add_argument(
                "--no-record",
                action="store_true",
                help="do not write a result record (smoke configs never write one)",
            )
            p.add_argument(
                "--replace",
                action="store_true",
                help="replace the records this config wrote before (each is listed with the value it had); without "
                "it a run whose records exist stops before training and names them",
            )
        else:
            p.add_argument("--record", action="store_true", help="also (re)write the result records (each replaced "
                           "record is listed with the value it had)")
        p.set_defaults(func=cmd_run, action=action)

    repro.set_defaults(func=lambda args: repro.print_help() or 2)


def _verdict_kind(text: str) -> str:
    from mlatlas.records import VERDICTS

    kind = " ".join(text.replace("-", " ").replace("_", " ").split()).lower()
    if kind not in VERDICTS:
        raise argparse.ArgumentTypeError(f"unknown verdict {text!r}; one of: {', '.join(VERDICTS)}")
    return kind


def cmd_list(args: argparse.Namespace) -> int:
    from reproductions.core import registry

    try:
        known = registry.discover()
    except registry.RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, repro in sorted(known.items()):
        records = len(list(repro.results_dir.glob("*.yaml")))
        print(f"{name:<16} paper: {repro.paper:<20} {repro.summary}")
        print(f"{'':<16} configs: {', '.join(repro.config_names()) or '-'}; records: {records}")
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    from mlatlas.records import DIFFERENT_PROTOCOL, load_records, verdict
    from mlatlas.outputs.site.render import number, signed

    root = Path(args.root).resolve() if args.root else project_root()
    records, problems = load_records(root)
    for problem in problems:
        print(problem.report(), file=sys.stderr)

    def plus_minus(value: float, pm: float | None) -> str:
        return number(value) + (f" ± {number(pm)}" if pm is not None else "")

    wanted, needle, kinds = set(args.names), (args.grep or "").casefold(), set(args.verdict or ())
    unknown = wanted - {record.reproduction for _, record in records}
    if unknown:
        print(f"error: no records for {', '.join(sorted(unknown))} (see `mlatlas repro list`)", file=sys.stderr)
        return 1
    rows = []
    for path, r in records:
        if wanted and r.reproduction not in wanted:
            continue
        if needle and needle not in " ".join((path.stem, r.benchmark, r.setting)).casefold():
            continue
        v = verdict(r)
        if kinds and v.kind not in kinds:
            continue
        pv = r.paper_value
        paper = "—" if pv is None else f"{plus_minus(pv.value, pv.pm)} ({pv.table})"
        if v.kind == DIFFERENT_PROTOCOL:
            said = f"{v.kind}: {', '.join(v.differs)} differ" if v.differs else f"{v.kind}: {v.reason}"
        elif v.compared:
            said = f"{v.kind} ({v.reason})"
        else:
            said = v.kind
        cells = [r.reproduction, path.stem, r.benchmark, r.setting, f"{r.metric} {'↑' if r.higher_is_better else '↓'}",
                 plus_minus(r.value, r.ci95), str(r.n_seeds), paper, said, signed(v.gap) if v.compared else "—"]
        rows.append("| " + " | ".join(" ".join(c.split()).replace("|", "\\|") for c in cells) + " |")
    if not rows:
        print("no records match", file=sys.stderr)
        return 1
    print("| reproduction | record | benchmark | setting | metric | ours (95% CI) | seeds | paper | verdict | gap |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    return 1 if problems else 0


def cmd_summary(args: argparse.Namespace) -> int:
    from mlatlas.records import load_records, summaries

    root = Path(args.root).resolve() if args.root else project_root()
    records, problems = load_records(root)
    for problem in problems:
        print(problem.report(), file=sys.stderr)
    lines = summaries(record for _, record in records)
    unknown = set(args.papers) - set(lines)
    if unknown:
        print(f"error: no records for paper {', '.join(sorted(unknown))}", file=sys.stderr)
        return 1
    for paper, line in lines.items():
        if not args.papers or paper in args.papers:
            print(f"{paper}: {line}")
    return 1 if problems else 0


def _with_data_dir(config: dict, data_dir: Path, name: str) -> dict:
    """The config reading its dataset from ``data_dir``: where the data sits changes no result, so unlike ``--set``
    it still lets a run write its records."""
    if "data_dir" not in config.get("data", {}):
        raise ValueError(f"--data-dir: this reproduction reads no dataset files ({name} generates its data)")
    if data_dir.exists() and not data_dir.is_dir():
        raise ValueError(f"--data-dir: {data_dir} is a file, not a folder")
    return {**config, "data": {**config["data"], "data_dir": str(data_dir.expanduser().resolve())}}


def add_parallel_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nproc", type=_positive_int, default=1, metavar="N",
                   help="run on N local processes (torch.distributed, gloo on the CPU, NCCL on GPUs): each takes a "
                   "share of every meta-batch and the meta-gradients are summed; the result equals a 1-process run "
                   "up to float rounding. With --split seeds, the seeds of a multi-seed config are trained in N "
                   "processes instead and recorded together")
    p.add_argument("--split", choices=["tasks", "seeds"], default="tasks",
                   help="what --nproc divides: the tasks of each meta-batch (default) or the config's seeds")
    p.add_argument("--seeds", type=_seed_list, metavar="LIST",
                   help="train only these seeds of a multi-seed config (e.g. 0,2), writing no record: to spread "
                   "seeds over machines; then run without --seeds on the shared work dir to evaluate and record all")
    p.add_argument("--dist-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="how long a process waits for the others at a collective before the run stops with an "
                   "error (default 300)")


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return int(text)


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds separated by commas (e.g. 0,2), not {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r} names a seed twice")
    return seeds


def _config_seeds(config: dict, how: str) -> list[int]:
    seeds = config.get("seeds")
    if not isinstance(seeds, list) or len(seeds) < 2:
        raise ValueError(f"{how} needs a config with a list of seeds; this one trains one seed (seeds: {seeds!r})")
    return [int(s) for s in seeds]


def cmd_run(args: argparse.Namespace) -> int:
    from reproductions.core import distributed, recording, registry, replacing
    from reproductions.core.runtime import NonFiniteError
    from reproductions.datasets.omniglot import OmniglotDataError

    root = Path(args.root).resolve() if args.root else project_root()
    try:
        repro = registry.get(args.name)
        config_name, config = registry.load_config(repro, args.config)
        config = registry.apply_overrides(config, args.overrides)
        if args.data_dir is not None:
            config = _with_data_dir(config, args.data_dir, repro.name)
        # Smoke configs (`smoke`, `smoke_<variant>`, `<name>_smoke`), and configs that say `records: false` (demonstrations too short
        # to be results), never write a record.
        is_smoke = (config_name == "smoke" or config_name.startswith("smoke_") or config_name.endswith("_smoke")
                    or config.get("records", True) is False)
        if args.action == "run":
            write = not (args.no_record or is_smoke or args.overrides)
        else:
            write = args.record and not (is_smoke or args.overrides)
        # the mlatlas command as given to main(), never the host process's argv (pytest's, a notebook's ...); a
        # worker of `--nproc` records the command the user typed (the launcher hands it over)
        argv = getattr(args, "argv", None)
        worker = distributed.launched() or bool(os.environ.get(recording.COMMAND_ENV))
        command = recording.command_line(None if argv is None or worker else ["mlatlas", *argv])
        nproc, only_seeds = getattr(args, "nproc", 1), getattr(args, "seeds", None)
        if nproc > 1 and args.split == "tasks" and not repro.splits_tasks:
            raise ValueError("this reproduction does not train through the shared loop that splits meta-batches, so "
                             "--nproc would only repeat the same run; run it without --nproc")
        if (nproc > 1 and args.split == "seeds") or only_seeds is not None:
            if not repro.seed_fanout:
                raise ValueError("this reproduction cannot train its seeds in separate processes (--split seeds, "
                                 "--seeds); use --nproc with --split tasks")
            seeds = _config_seeds(config, "--split seeds" if only_seeds is None else "--seeds")
            if only_seeds is not None and (nproc > 1 or set(only_seeds) - set(seeds)):
                raise ValueError(f"--seeds {','.join(map(str, only_seeds))}: give seeds of the config ({seeds}) "
                                 "and no --nproc")
        if only_seeds is not None:
            write = False  # one machine's share: the run without --seeds records all seeds
        if write and recording.machine_paths(command):
            raise ValueError(f"a record's command may not name a path of this machine "
                             f"({', '.join(recording.machine_paths(command))}): give the config by name, or pass "
                             "--no-record")
        replace = getattr(args, "replace", False) or args.action == "eval"  # `eval --record` is asked to rewrite
        # checked once, by the process the user started (the workers of --nproc were started after it)
        existing = _existing_records(repro, config_name, root) if write and not worker else []
        if existing:
            listed = ", ".join(_shown(p, root) for p in existing[:4]) + (" ..." if len(existing) > 4 else "")
            counted = f"{len(existing)} record{'s' * (len(existing) != 1)} ({listed})"
            if not replace:
                raise replacing.RecordsExist(
                    f"config {config_name!r} already has {counted}; nothing was run. Pass --replace to run and "
                    "replace them (each is listed with the value it had), or --no-record to run without recording")
            print(f"note: this run replaces the {counted} of config {config_name!r} when it ends", file=sys.stderr)
        ctx = registry.RunContext(
            config_name=config_name,
            device=args.device,
            work_dir=args.work_dir or root / "runs",
            root=root,
            command=command,
            fresh=getattr(args, "fresh", False) or (is_smoke and args.action == "run"),
            eval_only=args.action == "eval",
            write_record=write,
            progress=not args.no_progress,
            only_seeds=only_seeds,
        )
        if nproc > 1:
            status = _launch(args, repro.name, config, command, nproc)
            if status or args.split == "tasks":
                return status
            print(f"{repro.name}: every seed is trained; evaluating and recording them together")
            ctx.fresh = False  # the workers started afresh where asked; the merge reads their checkpoints
        with distributed_group(ctx, args):
            # a run's records are all written or none, and replace committed ones only when asked
            with replacing.policy(replace) as ledger, recording.all_or_none():
                metrics = repro.run(config, ctx)
            main = distributed.is_main()
        if not main:  # rank 0 reports
            return 0
    except distributed.RankFailure as exc:
        print(f"error: {args.name}: {exc}", file=sys.stderr)
        return 1
    except (registry.RegistryError, NonFiniteError, OmniglotDataError, ValueError, KeyError) as exc:
        message = f"missing setting {exc}" if isinstance(exc, KeyError) else str(exc)
        print(f"error: {args.name}: {message}", file=sys.stderr)
        return 1
    except OSError as exc:  # an unwritable or impossible work/data folder, a full disk
        where = exc.filename or "a file"
        print(f"error: {args.name}: cannot write {where}: {exc.strerror or exc}; pass --work-dir / --data-dir a "
              "writable folder", file=sys.stderr)
        return 1
    if ctx.only_seeds is not None:  # one share of the seeds: its metrics are not the run's
        print(f"{args.name}: trained seed{'s' if len(ctx.only_seeds) > 1 else ''} "
              f"{', '.join(map(str, ctx.only_seeds))}; run the command without --seeds (on the same work dir) to "
              "evaluate and record every seed")
        return 0
    for key, value in (metrics or {}).items():
        print(f"{key}: {value:.4f}")
    if args.overrides and args.action == "run" and not args.no_record:
        print("note: --set changes the config, so no record was written (records name an unmodified config)")
    elif write:
        _print_ledger(ledger, root)
    return 0


def _shown(path: Path, root: Path) -> str:
    path, root = path.resolve(), root.resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _existing_records(repro, config_name: str, root: Path) -> list[Path]:
    """The records this reproduction and config wrote before (committed results a new run would replace)."""
    from reproductions.core import replacing

    return replacing.records_of({repro.results_dir, root / "reproductions" / repro.name / "results"},
                                repro.name, config_name)


def _print_ledger(ledger, root: Path) -> None:
    from reproductions.core.replacing import describe

    new = [w for w in ledger.written if w.previous is None]
    replaced = [w for w in ledger.written if w.previous is not None]
    print(f"records: {len(new)} new, {len(replaced)} replaced")
    for w in new:
        print(f"  new       {_shown(w.path, root)}")
    for w in replaced:
        print(f"  replaced  {_shown(w.path, root)} (was {w.previous}; now {describe(w.path)})")


def _launch(args: argparse.Namespace, name: str, config: dict, command: str, nproc: int) -> int:
    """Start the worker processes of ``--nproc`` and wait for them; 0 when all ended well. (``cmd_run`` has checked
    that a ``--split seeds`` config lists its seeds.)"""
    from mlatlas.commands import launch

    argv = args.argv if getattr(args, "argv", None) is not None else sys.argv[1:]
    if args.split == "tasks":
        status, failure = launch.task_workers(argv, nproc, command, args.dist_timeout)
    else:
        seeds = [int(s) for s in config["seeds"]]
        groups = [seeds[i::nproc] for i in range(min(nproc, len(seeds)))]
        status, failure = launch.seed_workers(argv, groups, command)
    if status:
        print(f"error: {name}: {failure}; the run stopped (run the same command again to resume from the last "
              "checkpoint)", file=sys.stderr)
        return 1
    return 0


@contextlib.contextmanager
def distributed_group(ctx, args: argparse.Namespace):
    """Inside a worker that ``--nproc`` (or ``torchrun``) started: join the process group for the run, and let
    only rank 0 write records."""
    from reproductions.core import distributed, runtime

    if not distributed.launched():
        yield
        return
    distributed.start(runtime.pick_device(ctx.device), getattr(args, "dist_timeout", distributed.DEFAULT_TIMEOUT_S))
    ctx.write_record = ctx.write_record and distributed.is_main()
    ctx.progress = ctx.progress and distributed.is_main()
    try:
        yield
    finally:
        distributed.stop()
