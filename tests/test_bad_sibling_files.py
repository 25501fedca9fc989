"""A bad file next to the ones a command works on (undecodable bytes, very deep nesting, a folder named
x.yaml) gives `path:line: message` from `add`, `todo` and `links`, never a traceback."""

from __future__ import annotations

import pytest
from _local_http import LocalServer

from mlatlas.cli import main
from mlatlas.contrib.links import links_in_text
from test_add_paper import add, atom, make_root

BAD = "catalog/papers/broken.yaml"


def make_bad(root, kind: str) -> None:
    path = root / BAD
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "undecodable":
        path.write_bytes(b"id: broken\ntitle: ok\nsummary: caf\xe9 \xff\xfe\n")
    elif kind == "deep":
        path.write_text("id: broken\nx: " + "[" * 20_000 + "]" * 20_000 + "\n", encoding="utf-8")
    elif kind == "folder":
        path.mkdir()


@pytest.mark.parametrize("kind, expected", [
    ("undecodable", f"{BAD}:3: file is not valid UTF-8 text"),
    ("folder", f"{BAD}: a folder, not a regular file"),
])
def test_add_names_the_bad_sibling(tmp_path, capsys, kind, expected):
    root = make_root(tmp_path, with_maml=True)
    make_bad(root, kind)
    with LocalServer({"/api/query": atom("maml.xml")}) as server:
        assert add(root, server, "1703.03400") == 1
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


def test_add_reads_a_deeply_nested_sibling_leniently(tmp_path, capsys):
    root = make_root(tmp_path, with_maml=True)
    make_bad(root, "deep")
    with LocalServer({"/api/query": atom("maml.xml")}) as server:
        assert add(root, server, "1703.03400") == 1  # maml is already there: the duplicate check still ran
    assert "already" in capsys.readouterr().err


@pytest.mark.parametrize("kind, expected", [
    ("undecodable", f"{BAD}:3: file is not valid UTF-8 text"),
    ("folder", f"{BAD}: a folder, not a regular file"),
])
def test_todo_names_the_bad_file(tmp_path, capsys, kind, expected):
    root = make_root(tmp_path, with_maml=True)
    make_bad(root, kind)
    assert main(["--root", str(root), "todo"]) == 1
    assert expected in capsys.readouterr().out


def test_todo_reads_a_deeply_nested_file(tmp_path, capsys):
    root = make_root(tmp_path, with_maml=True)
    make_bad(root, "deep")
    assert main(["--root", str(root), "todo"]) == 0


@pytest.mark.parametrize("kind, expected", [
    ("undecodable", f"{BAD}:3: file is not valid UTF-8 text"),
    ("folder", f"{BAD}: a folder, not a regular file"),
])
def test_links_names_the_bad_file_before_asking_the_network(tmp_path, capsys, kind, expected):
    root = make_root(tmp_path, with_maml=True)
    make_bad(root, kind)
    assert main(["--root", str(root), "links", "--no-cache"]) == 2
    assert expected in capsys.readouterr().err


def test_links_skip_a_deeply_nested_file_that_validate_reports():
    assert links_in_text(BAD, "x: " + "[" * 20_000 + "]" * 20_000 + "\n") == []
    assert links_in_text(BAD, "x: " + "{a: " * 5_000 + "1" + "}" * 5_000 + "\n") == []
