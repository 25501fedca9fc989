"""``mlatlas validate``, ``mlatlas render`` and ``mlatlas export``: check the catalog and write what is made from it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlatlas.outputs.bibtex import catalog_bibtex
from mlatlas.outputs.evaluation_tables import write_evaluation_tables
from mlatlas.outputs.export_json import write_catalog_json
from mlatlas.files import write_text_atomic
from mlatlas.outputs.jsonschema_export import schema_is_stale, schema_path, write_schema
from mlatlas.catalog.loader import load_catalog
from mlatlas.paths import project_root
from mlatlas.catalog.problems import Problem, relative
from mlatlas.outputs.readme import RenderError, check_readme, write_readme


def _root(args: argparse.Namespace) -> Path:
    return Path(args.root).resolve() if args.root else project_root()


def _paper_files(catalog) -> int | None:
    """Paper files read: the valid ones and those with errors."""
    return len(catalog.papers) + len(catalog.unreadable) if catalog else None


def _summary(problems: list[Problem], papers: int | None) -> str:
    errors = sum(p.severity == "error" for p in problems)
    infos = len(problems) - errors
    counted = f"{papers} paper{'s' * (papers != 1)}, " if papers is not None else ""
    verdict = "catalog is valid" if not errors else "catalog is NOT valid"
    return f"{verdict}: {counted}{errors} error{'s' * (errors != 1)}, {infos} info{'s' * (infos != 1)}"


def _print_problems(problems: list[Problem], stream=None) -> None:
    stream = stream or sys.stdout
    for problem in problems:
        print(problem.report(), file=stream)


def _valid_catalog(args: argparse.Namespace):
    """The loaded catalog, or None after printing its errors (callers then exit 1 and write nothing)."""
    catalog, problems = load_catalog(_root(args))
    errors = [p for p in problems if p.severity == "error"]
    if catalog is None or errors:
        _print_problems(errors, sys.stderr)
        print(_summary(problems, _paper_files(catalog)), file=sys.stderr)
        print("nothing was written; fix the errors above (mlatlas validate lists them too)", file=sys.stderr)
        return None
    return catalog


def cmd_validate(args: argparse.Namespace) -> int:
    catalog, problems = load_catalog(_root(args))
    _print_problems(problems)
    print(_summary(problems, _paper_files(catalog)))
    return 1 if catalog is None or any(p.severity == "error" for p in problems) else 0


def cmd_render(args: argparse.Namespace) -> int:
    catalog = _valid_catalog(args)
    if catalog is None:
        return 1
    root = catalog.root
    try:
        if args.check:
            stale = [f"README.md: generated block '{name}' is stale" for name in check_readme(catalog)]
            if schema_is_stale(root):
                stale.append(f"{relative(schema_path(root), root)}: stale JSON Schema of the paper model")
            for line in stale:
                print(line, file=sys.stderr)
            if stale:
                print("run `mlatlas render` (or `make render`) and commit the result", file=sys.stderr)
                return 1
            print("README.md and the paper JSON Schema are up to date")
            return 0
        changed_readme = write_readme(catalog)
        changed_schema = write_schema(root)
    except (RenderError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"README.md: {'updated' if changed_readme else 'already up to date'} ({len(catalog.papers)} papers)")
    print(f"{relative(schema_path(root), root)}: {'updated' if changed_schema else 'already up to date'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    catalog = _valid_catalog(args)
    if catalog is None:
        return 1
    out = Path(args.out) if args.out else catalog.root / "build" / "export"
    try:
        write_catalog_json(catalog, out / "catalog.json")
        write_text_atomic(out / "catalog.bib", catalog_bibtex(catalog))
        write_evaluation_tables(catalog, out / "evaluation-tables.json")
        write_schema(catalog.root)
    except OSError as exc:
        print(f"error: cannot write the export: {exc}", file=sys.stderr)
        return 1
    for path in (out / "catalog.json", out / "catalog.bib", out / "evaluation-tables.json", schema_path(catalog.root)):
        print(f"wrote {path}")
    return 0


def register(subparsers) -> None:
    validate = subparsers.add_parser(
        "validate",
        help="check every catalog file and the whole catalog; list all problems",
        description="Check every file under catalog/ and the reproductions' result records, then the "
        "catalog as a whole (unique ids and links, known labels, venues and topics, ...). Prints each "
        "problem as path:line: field: message and exits 1 when there is any error.",
    )
    validate.set_defaults(func=cmd_validate)

    render = subparsers.add_parser(
        "render",
        help="rewrite README.md's generated tables and the paper JSON Schema",
        description="Rewrite the generated blocks of README.md (the text between the BEGIN/END GENERATED "
        "markers; the rest is left alone) and catalog/schema/paper.schema.json. Nothing is written "
        "when the catalog has errors.",
    )
    render.add_argument("--check", action="store_true", help="write nothing; exit 1 and name what is stale")
    render.set_defaults(func=cmd_render)

    export = subparsers.add_parser(
        "export",
        help="write catalog.json, catalog.bib and evaluation-tables.json (and refresh the JSON Schema)",
        description="Write the validated catalog as versioned JSON (format: catalog/schema/README.md) "
        "and as BibTeX with stable citation keys.",
    )
    export.add_argument("--out", help="folder for catalog.json, catalog.bib and evaluation-tables.json (default: build/export/)")
    export.set_defaults(func=cmd_export)
