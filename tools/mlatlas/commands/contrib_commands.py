"""Contributor commands: ``mlatlas add`` (draft an entry from arXiv), ``mlatlas todo`` (what a draft
still needs) and ``mlatlas links`` (check the catalog's links)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mlatlas.contrib.add_paper import AddError, add_papers, leftover_todos
from mlatlas.contrib.arxiv import API_URL_ENV, DEFAULT_API_URL, DELAY_ENV, ArxivClient, ArxivError
from mlatlas.contrib.links import (
    CACHE_FILE,
    LinkCache,
    LinkChecker,
    LinksError,
    changed_links,
    collect_links,
    format_table,
    json_report,
    report_rows,
)
from mlatlas.paths import project_root

ARXIV_STAMP = Path(".mlatlas-cache") / "arxiv-last-request"  # spaces requests across runs
from mlatlas.catalog.problems import relative


def _root(args) -> Path:
    return Path(args.root).resolve() if getattr(args, "root", None) else project_root()


def _at_least(kind, minimum=0):
    def parse(text: str):
        value = kind(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names it in errors: "invalid float value: 'abc'"
    return parse


# ------------------------------------------------------------------------------------------------


def run_add(args) -> int:
    root = _root(args)
    client = ArxivClient(
        api_url=args.api_url, delay=args.delay, timeout=args.timeout, retries=args.retries, stamp=root / ARXIV_STAMP,
        progress=lambda line: print(f"mlatlas add: {line}", file=sys.stderr, flush=True),
    )
    try:
        files = add_papers(root, args.papers, client, paper_id=args.id, dry_run=args.dry_run)
    except (AddError, ArxivError) as exc:
        print(f"mlatlas add: {exc}; nothing was written", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. a full disk or a read-only checkout
        print(f"mlatlas add: could not read or write the catalog: {exc}", file=sys.stderr)
        print("nothing was written", file=sys.stderr)
        return 1
    if args.dry_run:
        for path, text in files.items():
            print(f"--- {relative(path, root)} (dry run, not written)\n{text}")
        return 0
    written = {relative(path, root) for path in files}
    for name in sorted(written):
        print(f"wrote {name}")
    print("now fill in these lines (CONTRIBUTING.md explains each field):")
    for problem in leftover_todos(root):
        if problem.path in written:
            print(f"  {problem}")
    print("then run `mlatlas validate && mlatlas todo` until both are clean, and `mlatlas render`.")
    return 0


def run_todo(args) -> int:
    root = _root(args)
    problems = leftover_todos(root)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} line(s) still marked TODO(contributor)", file=sys.stderr)
        return 1
    print("no TODO(contributor) markers left")
    return 0


def run_links(args) -> int:
    root = _root(args)
    try:
        refs = changed_links(root, args.changed_since) if args.changed_since else collect_links(root)
    except LinksError as exc:
        print(f"mlatlas links: {exc}", file=sys.stderr)
        return 2
    checker = LinkChecker(timeout=args.timeout, retries=args.retries, per_host=args.per_host, workers=args.workers)
    cache = None if args.no_cache else LinkCache(root / CACHE_FILE, ttl=args.cache_ttl * 3600)
    results = checker.check((r.url for r in refs), cache=cache, progress=sys.stderr.isatty() and not args.json)
    rows = report_rows(refs, results)
    if args.json:
        print(json_report(rows, args.changed_since))
    else:
        if args.changed_since:
            print(f"links added or changed since {args.changed_since}:")
        print(format_table(rows, show_ok=args.all))
    return 1 if any(r["status"] == "dead" for r in rows) else 0


# ------------------------------------------------------------------------------------------------


def register(subparsers) -> None:
    add = subparsers.add_parser(
        "add",
        help="draft a catalog entry from arXiv",
        description=(
            "Fetch a paper's metadata from the arXiv API and write catalog/papers/<id>.yaml with the facts "
            "filled in and the editorial fields marked TODO(contributor). Several papers at once are all "
            "written or none is. A paper already in the catalog is refused."
        ),
        epilog="example: mlatlas add arXiv:1703.03400 https://arxiv.org/abs/1803.02999",
    )
    add.add_argument("papers", nargs="+", metavar="PAPER", help="arXiv id or URL, e.g. 1703.03400, arXiv:1703.03400")
    add.add_argument("--id", help="catalog id (file name) for the entry; default: made from the title")
    add.add_argument("--dry-run", action="store_true", help="print the draft instead of writing it")
    add.add_argument(
        "--api-url",
        default=os.environ.get(API_URL_ENV, DEFAULT_API_URL),
        help=f"arXiv API query URL (default: ${API_URL_ENV} or {DEFAULT_API_URL})",
    )
    add.add_argument(
        "--delay",
        type=_at_least(float),
        default=os.environ.get(DELAY_ENV, "3"),  # a string default goes through `type`, so a bad value is a clean error
        help=f"seconds between requests; arXiv asks for at least 3 (default: ${DELAY_ENV} or 3)",
    )
    add.add_argument("--timeout", type=_at_least(float), default=20.0, help="seconds for each whole request, connecting to last byte (default 20)")
    add.add_argument("--retries", type=_at_least(int), default=3, help="retries after a failure (default 3)")
    add.set_defaults(func=run_add)

    todo = subparsers.add_parser(
        "todo",
        help="list lines still marked TODO(contributor)",
        description="List every catalog line still marked TODO(contributor) by `mlatlas add`; exits 1 if any.",
    )
    todo.set_defaults(func=run_todo)

    links = subparsers.add_parser(
        "links",
        help="check the catalog's links",
        description=(
            "Check every link in the catalog, or only those added since a git ref. A link is DEAD only on a "
            "definite answer (404, 410, a host name that does not exist); time-outs, resets, 5xx and rate "
            "limits are UNKNOWN and never fail. Exit status 1 when a link is dead."
        ),
        epilog="pull requests run: mlatlas links --changed-since origin/main",
    )
    links.add_argument("--changed-since", metavar="REF", help="only links new or changed since this git ref")
    links.add_argument("--json", action="store_true", help="print a JSON report instead of a table")
    links.add_argument("--all", action="store_true", help="list ok links in the table too")
    links.add_argument("--timeout", type=_at_least(float), default=10.0, help="seconds for each whole request, connecting to last byte (default 10)")
    links.add_argument("--retries", type=_at_least(int), default=2, help="retries of a failed request (default 2)")
    links.add_argument("--per-host", type=_at_least(int, 1), default=2, help="parallel requests per host (default 2)")
    links.add_argument("--workers", type=_at_least(int, 1), default=8, help="parallel requests in all (default 8)")
    links.add_argument("--no-cache", action="store_true", help=f"ignore and do not update {CACHE_FILE}")
    links.add_argument(
        "--cache-ttl", type=_at_least(float), default=24.0, help="hours a cached ok/dead answer is trusted (default 24)"
    )
    links.set_defaults(func=run_links)
