"""The ``mlatlas`` command. Each subcommand lives in its own module exposing ``register(subparsers)``;
``register`` adds the subparser and sets ``func`` (called with the parsed args, returns an exit status)."""

from __future__ import annotations

import argparse
import importlib
import sys

from mlatlas import __version__

# Modules that contribute subcommands, in the order --help lists them.
COMMAND_MODULES = [
    "mlatlas.commands.catalog_commands",
    "mlatlas.commands.repro_commands",
    "mlatlas.commands.contrib_commands",
    "mlatlas.commands.bench_commands",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlatlas",
        description="Meta-Learning Atlas: validate and render the catalog, run reproductions.",
    )
    parser.add_argument("--version", action="version", version=f"mlatlas {__version__}")
    parser.add_argument("--root", help="project checkout to work on (default: found from the current folder)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command as given (records name it)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
