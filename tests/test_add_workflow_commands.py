"""The contributor workflow's files name real commands: every `mlatlas ...` line in the GitHub workflows,
the pre-commit hooks and CONTRIBUTING.md parses with the real CLI, and every `make` target exists.
A renamed subcommand or option fails here instead of in a contributor's pull request."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from mlatlas.cli import build_parser

REPO = Path(__file__).resolve().parents[1]


def _shell_lines() -> list[tuple[str, str]]:
    """(file, command line) for every shell command the workflow files run or tell people to run."""
    found = []
    for name in (".github/workflows/ci.yml", ".github/workflows/links-weekly.yml"):
        for job in yaml.safe_load((REPO / name).read_text())["jobs"].values():
            found += [(name, line) for step in job["steps"] for line in step.get("run", "").splitlines()]
    hooks = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    found += [(".pre-commit-config.yaml", h["entry"]) for repo in hooks["repos"] for h in repo["hooks"]]
    guide = (REPO / "CONTRIBUTING.md").read_text()
    for block in re.findall(r"```bash\n(.*?)```", guide, re.DOTALL):
        found += [("CONTRIBUTING.md", line) for line in block.splitlines()]
    found += [("CONTRIBUTING.md", span) for span in re.findall(r"`([^`\n]+)`", guide)]
    return found


def _invocations(program: str) -> list[tuple[str, list[str]]]:
    """Each call of ``program``, its arguments with placeholders (<id>, ${{ ... }}) made concrete."""
    calls = []
    for name, line in _shell_lines():
        line = re.sub(r"\$\{\{[^}]*\}\}", "main", line)
        line = re.sub(r"<[^>]*>", "1703.03400", line)
        for command in re.split(r"&&|\|\||;|\|", line.split(" #", 1)[0]):
            words = shlex.split(command.split(">", 1)[0].replace("env NO_MKDOCS_2_WARNING=1", ""))
            if len(words) > 1 and words[0] == program:  # a bare "mlatlas" is a name, not a call
                calls.append((name, words[1:]))
    return calls


@pytest.mark.parametrize("where, args", _invocations("mlatlas"), ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_every_mlatlas_command_they_name_exists(where, args):
    try:
        parsed = build_parser().parse_args(args)
    except SystemExit as exc:
        pytest.fail(f"{where}: `mlatlas {' '.join(args)}` does not parse (exit {exc.code})")
    assert getattr(parsed, "func", None), f"{where}: `mlatlas {' '.join(args)}` names no subcommand"


def test_the_workflows_run_the_documented_checks():
    ci = yaml.safe_load((REPO / ".github/workflows/ci.yml").read_text())
    runs = " ".join(step.get("run", "") for job in ci["jobs"].values() for step in job["steps"])
    for check in ("mlatlas validate", "mlatlas todo", "mlatlas render --check", "mlatlas links --changed-since",
                  "make test", "mkdocs build --strict"):
        assert check in runs
    assert "pull_request" in ci[True]  # YAML 1.1 reads the key `on` as True
    weekly = (REPO / ".github/workflows/links-weekly.yml").read_text()
    assert "mlatlas links --json" in weekly and "schedule" in weekly


def test_make_targets_they_name_exist():
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, re.MULTILINE))
    calls = _invocations("make")
    assert calls
    for name, args in calls:
        assert args and args[0] in targets, f"{name}: `make {' '.join(args)}` is not a Makefile target"
