"""Anything in the catalog or a records folder that is not a regular file inside the repository is refused with
its path and never read: a link to a device or FIFO, a link leading outside, a folder named like a YAML file."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mlatlas.catalog.loader import load_catalog

PAPER = "catalog/papers/gamma.yaml"
RECORD = "reproductions/toy_repro/results/second.yaml"


def validate(tree, timeout: float = 60) -> tuple[int, str]:
    """`mlatlas validate` in its own process, so that a hang fails the test instead of stalling it."""
    code = "import sys; from mlatlas.cli import main; sys.exit(main(['--root', sys.argv[1], 'validate']))"
    done = subprocess.run([sys.executable, "-c", code, str(tree.root)], capture_output=True, text=True,
                          timeout=timeout)
    return done.returncode, done.stdout + done.stderr


def errors(tree) -> list[str]:
    _, problems = load_catalog(tree.root)
    return [str(p) for p in problems if p.severity == "error"]


@pytest.mark.parametrize("where", [PAPER, RECORD])
@pytest.mark.parametrize("kind, message", [
    ("fifo", "a FIFO, not a regular file"),
    ("link to fifo", "a FIFO, not a regular file"),
    ("link to /dev/zero", "outside the repository"),
    ("link to /dev/urandom", "outside the repository"),
    ("link outside", "outside the repository"),
    ("folder", "a folder, not a regular file"),
])
def test_a_special_file_is_refused_by_validate_without_hanging(tree, tmp_path, where, kind, message):
    path = tree.path(where)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "link to fifo":
        os.mkfifo(tree.path("catalog/pipe"))  # inside the repository, yet not a file
        path.symlink_to(tree.path("catalog/pipe"))
    elif kind.startswith("link to /dev/"):
        path.symlink_to(kind.removeprefix("link to "))
    elif kind == "link outside":
        outside = tmp_path / "outside.yaml"
        outside.write_text(tree.read("catalog/papers/alpha.yaml").replace("id: alpha", "id: gamma"), encoding="utf-8")
        path.symlink_to(outside)
    else:
        path.mkdir()
    code, out = validate(tree)
    assert code == 1
    assert f"{where}: " in out and message in out, out
    assert "Traceback" not in out


def test_a_device_is_refused_by_its_kind_before_a_byte_is_read():
    from pathlib import Path

    from mlatlas.catalog.yamlio import YamlError, read_yaml

    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero on this system")
    with pytest.raises(YamlError, match="a device, not a regular file"):
        read_yaml(Path("/dev/zero"))  # without a root: the kind check alone must stop it


def test_a_link_to_a_regular_file_inside_the_repository_is_read(tree):
    target = tree.path("catalog/papers/alpha.yaml")
    moved = tree.path("catalog/shared-alpha.yaml")
    moved.write_text(target.read_text(encoding="utf-8"), encoding="utf-8")
    target.unlink()
    target.symlink_to(moved)
    assert errors(tree) == []


def test_a_link_outside_the_catalog_through_a_linked_folder_is_refused(tree, tmp_path):
    outside = tmp_path / "elsewhere" / "results"
    outside.mkdir(parents=True)
    (outside / "omniglot.yaml").write_text(tree.read("reproductions/toy_repro/results/omniglot.yaml"),
                                           encoding="utf-8")
    tree.path("reproductions/evil").symlink_to(tmp_path / "elsewhere")
    found = errors(tree)
    assert any(e.startswith("reproductions/evil/results/omniglot.yaml: a link to") for e in found), found
