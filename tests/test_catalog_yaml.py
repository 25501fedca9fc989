"""Malformed files give one precise `path:line: field: message` problem each, never a traceback."""

from __future__ import annotations

import pytest

from mlatlas.cli import main
from mlatlas.catalog.loader import load_catalog, load_valid_catalog
from mlatlas.catalog.problems import CatalogError
from mlatlas.catalog.yamlio import MAX_BYTES

ALPHA = "catalog/papers/alpha.yaml"


def problems_of(tree):
    catalog, problems = load_catalog(tree.root)
    return [str(p) for p in problems if p.severity == "error"]


def test_fixture_catalog_is_valid(tree):
    catalog = load_valid_catalog(tree.root)
    assert list(catalog.papers) == ["alpha", "beta"]  # sorted by date
    assert [rec.paper for _, rec in catalog.records] == ["beta"]
    assert [d.id for d in catalog.resources["datasets"]] == ["toyset"]


@pytest.mark.parametrize(
    "old, new, expected",
    [
        # broken YAML: an unclosed flow sequence
        ("topics: [few-shot-learning]", "topics: [few-shot-learning\nfoo: 1", f"{ALPHA}:14: broken YAML"),
        # wrong type: a list where text is expected
        ("method: Alpha", "method: [Alpha]", f"{ALPHA}:4: method: expected text, got a list ['Alpha']"),
        # missing required field
        ("venue: ICML 2017\n", "", f"{ALPHA}:2: venue: required field is missing"),
        # duplicate key
        ("year: 2017\n", "year: 2017\nyear: 2017\n", f"{ALPHA}:8: duplicate key 'year' (each key may appear once)"),
        # unknown field, with a suggestion
        ("method: Alpha", "methd: Alpha", f"{ALPHA}:4: methd: unknown field 'methd' — did you mean 'method'?"),
        # a nested field: the line of the item, the full field path
        (
            "    - url: https://github.com/example/alpha",
            "    - url: http://github.com/example/alpha",
            f"{ALPHA}:19: code.repositories.0.url: only https links are allowed",
        ),
        # year must agree with date
        ("year: 2017", "year: 2018", f"{ALPHA}:7: year: year 2018 does not agree with date 2017-03-09"),
        # pattern explained in words
        ('arxiv: "1703.00001"', 'arxiv: "arXiv:1703.00001"', f"{ALPHA}:15: ids.arxiv: 'arXiv:1703.00001' is not an arXiv id"),
        ("venue: ICML 2017", "venue: ICML", f"{ALPHA}:8: venue: 'ICML' is not '<venue> <year>'"),
        # a bad date
        ("date: 2017-03-09", "date: 2017-13-09", f"{ALPHA}:6: date: '2017-13-09' is not a date (month value is outside expected range of 1-12)"),
        # code status contradicting its repositories (a model-level rule of a nested model)
        ("status: official", "status: none", f"{ALPHA}:16: code: status 'none' cannot list repositories"),
    ],
    ids=["broken-yaml", "wrong-type", "missing", "duplicate-key", "unknown-field", "nested", "year-date", "arxiv", "venue", "date", "code"],
)
def test_malformed_paper_is_reported_precisely(tree, old, new, expected):
    tree.edit(ALPHA, old, new)
    found = problems_of(tree)
    assert any(p.startswith(expected) for p in found), found


def test_alias_bomb_is_refused_before_it_expands(tree):
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    tree.write(ALPHA, "\n".join(lines) + "\n")
    assert problems_of(tree) == [
        f"{ALPHA}:1: YAML anchors and aliases (&name, *name) are not allowed; write the value out in full"
    ]


def test_anchor_without_alias_is_refused_too(tree):
    tree.edit(ALPHA, "method: Alpha", "method: &m Alpha")
    assert any(p.startswith(f"{ALPHA}:4: YAML anchors") for p in problems_of(tree))


def test_huge_file_is_refused_without_parsing(tree):
    tree.write(ALPHA, "#" * (MAX_BYTES + 99) + "\n")
    assert problems_of(tree) == [f"{ALPHA}: file is {MAX_BYTES + 100:,} bytes, over the limit of {MAX_BYTES:,} bytes (256 KiB) for one file"]


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", f"{ALPHA}:1: the file holds no data"),
        (b"- just\n- a list\n", f"{ALPHA}:1: expected a mapping of 'field: value' lines at the top level"),
        (b"id: alpha\ntitle: \xff\xfe\n", f"{ALPHA}:2: file is not valid UTF-8 text"),
        (b"id: !!python/object:os.system ls\n", f"{ALPHA}:1: unsupported YAML tag 'tag:yaml.org,2002:python/object:os.system'"),
        (b"id: !!binary aGVsbG8=\n", f"{ALPHA}:1: unsupported YAML tag 'tag:yaml.org,2002:binary'"),
        (b"id: alpha\n---\nid: beta\n", f"{ALPHA}:2: broken YAML: expected a single document"),
        (b"? [a, b]\n: c\n", f"{ALPHA}:1: mapping keys must be plain text"),
        (b"x: " + b"[" * 5000 + b"]" * 5000 + b"\n", f"{ALPHA}"),
        (b"id: alpha\nofficial: !!bool maybe\n", f"{ALPHA}:2: cannot read value 'maybe' as bool"),
        (b"id: alpha\ndate: !!timestamp soon\n", f"{ALPHA}:2: cannot read value 'soon' as timestamp"),
        (b"id: !!set alpha\n", f"{ALPHA}:1: unsupported YAML tag 'tag:yaml.org,2002:set'"),
    ],
    ids=[
        "empty", "top-level-list", "not-utf8", "python-tag", "binary-tag", "two-documents", "complex-key",
        "deep-nesting", "bool-tag-misfit", "timestamp-tag-misfit", "set-tag-on-text",
    ],
)
def test_unreadable_files(tree, content, expected):
    tree.path(ALPHA).write_bytes(content)
    found = problems_of(tree)
    assert len(found) >= 1 and found[0].startswith(expected), found
    assert all(p.startswith(ALPHA) for p in found)


def test_every_problem_of_every_file_is_reported_in_one_run(tree):
    tree.edit(ALPHA, "method: Alpha", "method: [Alpha]")
    tree.edit(ALPHA, "year: 2017", "year: 2018")
    tree.edit("catalog/papers/beta.yaml", "venue: NeurIPS 2019", "venue: NIPS 2019")
    found = problems_of(tree)
    assert len(found) == 3, found
    assert found[2] == "catalog/papers/beta.yaml:7: venue: unknown venue 'NIPS 2019' — did you mean 'NeurIPS 2019'?"


def test_broken_vocabulary_stops_loading_with_its_own_problem(tree):
    tree.edit("catalog/vocab/labels.yaml", 'color: "#6c757d"', 'color: "grey"')
    catalog, problems = load_catalog(tree.root)
    assert catalog is None
    assert [str(p).split(": ")[0] for p in problems] == ["catalog/vocab/labels.yaml:8"]
    with pytest.raises(CatalogError):
        load_valid_catalog(tree.root)


def test_result_record_problems_have_lines(tree):
    tree.edit("reproductions/toy_repro/results/omniglot.yaml", "value: 97.1", "value: high")
    found = problems_of(tree)
    assert found[0].startswith("reproductions/toy_repro/results/omniglot.yaml:8: value: expected a number, got 'high'")


@pytest.mark.parametrize("command", [["validate"], ["render"], ["render", "--check"], ["export"]])
def test_cli_reports_problems_and_writes_nothing(tree, capsys, command, tmp_path):
    readme_before = tree.read("README.md")
    tree.edit(ALPHA, "method: Alpha", "method: [Alpha]")
    out_dir = tmp_path / "out"
    args = ["--root", str(tree.root), *command] + (["--out", str(out_dir)] if command == ["export"] else [])
    assert main(args) == 1
    captured = capsys.readouterr()
    assert f"{ALPHA}:4: error: method: expected text" in captured.out + captured.err
    assert "Traceback" not in captured.out + captured.err
    assert "1 error" in captured.out + captured.err
    assert tree.read("README.md") == readme_before
    assert not (tree.root / "catalog" / "schema" / "paper.schema.json").exists()
    assert not out_dir.exists()


def test_validate_passes_and_reports_infos(tree, capsys):
    tree.edit("catalog/papers/beta.yaml", "reproductions: [toy_repro]\n", "")
    tree.path("reproductions/toy_repro/results/omniglot.yaml").unlink()
    assert main(["--root", str(tree.root), "validate"]) == 0
    out = capsys.readouterr().out
    assert "catalog/papers/beta.yaml:15: needs_code: needs code and has no reproduction yet [info]" in out
    assert out.strip().endswith("catalog is valid: 2 papers, 0 errors, 1 info")


def test_parallel_parsing_gives_the_same_catalog_and_problems(tree, monkeypatch):
    from mlatlas.catalog import yamlio

    tree.copy_paper("alpha", "gamma", ("method: Alpha", "method: [Alpha]"))
    tree.write("catalog/papers/delta.yaml", "a: &x 1\nb: *x\n")
    sequential = load_catalog(tree.root)
    monkeypatch.setattr(yamlio, "PARALLEL_FROM", 2)  # force the process pool on a tiny catalog
    parallel = load_catalog(tree.root)
    assert [str(p) for p in parallel[1]] == [str(p) for p in sequential[1]]
    assert len(parallel[1]) == 2
    assert list(parallel[0].papers.values()) == list(sequential[0].papers.values())


def test_console_command_exit_status_without_traceback(tree):
    import subprocess
    import sys

    tree.write(ALPHA, "a: &a [1, 2]\nb: [*a, *a]\n")
    run = subprocess.run(
        [sys.executable, "-m", "mlatlas.cli", "--root", str(tree.root), "validate"],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 1
    assert f"{ALPHA}:1: error: YAML anchors and aliases" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr
