"""`mlatlas validate` reports every problem of every file in one run, in our words, each error line marked as one.

Real files in a throw-away copy of the fixture catalog (the `tree` fixture), through the real command."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from mlatlas.cli import main

ALPHA = "catalog/papers/alpha.yaml"
BETA = "catalog/papers/beta.yaml"
LINE = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): error: (?P<field>[\w.]+): (?P<message>.+)$")


def validate(tree, capsys) -> tuple[int, list[str]]:
    code = main(["--root", str(tree.root), "validate"])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.out.splitlines()


def test_a_bad_date_no_longer_hides_the_other_problems_of_its_file(tree, capsys):
    """The issue's case: an impossible date, an unknown label and a misspelt code status, all at once."""
    tree.edit(ALPHA, "date: 2017-03-09", "date: 2017-02-30")
    tree.edit(ALPHA, "type: [optimization-based]", "type: [optimisation-based]")
    tree.edit(ALPHA, "status: official", "status: oficial")
    code, lines = validate(tree, capsys)
    assert code == 1
    assert lines == [
        f"{ALPHA}:6: error: date: '2017-02-30' is not a date (day value is outside expected range); "
        "write it as YYYY-MM-DD, e.g. 2017-03-09",
        f"{ALPHA}:11: error: labels.type.0: unknown type label 'optimisation-based' — did you mean 'optimization-based'?",
        f"{ALPHA}:17: error: code.status: 'oficial' is not one of 'official', 'community', 'none' — did you mean 'official'?",
        "catalog is NOT valid: 2 papers, 3 errors, 0 infos",
    ]


def test_cross_file_problems_of_an_invalid_file_come_in_the_same_run(tree, capsys):
    """Field errors, and what the fields that passed break across the catalog: a shared arXiv id, a reproduction
    package that does not exist, an added date in the future; in two files at once."""
    tree.edit(ALPHA, "status: official", "status: oficial")
    tree.edit(ALPHA, 'arxiv: "1703.00001"', 'arxiv: "1905.00002"')  # beta's
    tree.edit(ALPHA, "added: 2026-11-22", f"added: {dt.date.today() + dt.timedelta(days=30)}")
    tree.edit(ALPHA, "summary: >-", "reproductions: [toy_repo]\nsummary: >-")
    tree.edit(BETA, "authors: [Grace Hopper]", "authors: []")
    tree.edit(BETA, "topics: [survey, few-shot-learning]", "topics: [survey, few-shot]")
    code, lines = validate(tree, capsys)
    assert code == 1
    found = {(m["path"], m["field"]): m["message"] for m in map(LINE.match, lines[:-1])}
    assert found == {
        (ALPHA, "code.status"): "'oficial' is not one of 'official', 'community', 'none' — did you mean 'official'?",
        (BETA, "ids.arxiv"): "arXiv id 1905.00002 is also used by 'alpha' (catalog/papers/alpha.yaml:15); "
                             "two entries may not share an arXiv id, DOI, title or link",
        (ALPHA, "added"): f"added {dt.date.today() + dt.timedelta(days=30)} is in the future",
        (ALPHA, "reproductions.0"): "no reproduction package reproductions/toy_repo/ — did you mean 'toy_repro'?",
        (BETA, "authors"): "needs at least 1 item, got an empty list",
        (BETA, "topics.1"): "unknown topic 'few-shot' — did you mean 'few-shot-learning'?",
    }
    assert lines[-1] == "catalog is NOT valid: 2 papers, 6 errors, 0 infos"


@pytest.mark.parametrize("old, new, expected", [
    ("status: official", "status: 3", "code.status: must be one of 'official', 'community', 'none', got 3"),
    ("      official: true", "      official: maybe", "code.repositories.0.official: expected true or false, got 'maybe'"),
    ("topics: [few-shot-learning]", "topics: few-shot-learning", "topics: expected a list ('[a, b]', or one '- item' "
     "per line), got 'few-shot-learning'"),
    ("year: 2017", "year: 2017.5", "year: expected a whole number, got 2017.5"),
    ("authors: [Ada Lovelace, Alan Turing]", "authors: Ada Lovelace", "authors: expected a list"),
    ("  A fixture paper that learns an initialisation; used by the catalog tests only.", "  Too short.",
     "summary: too short: at least 40 characters, got 10"),
    ("date: 2017-03-09", "date: 9 March 2017", "date: '9 March 2017' is not a date (invalid character in year); "
     "write it as YYYY-MM-DD"),
    ("code:\n  status: official\n  repositories:\n    - url: https://github.com/example/alpha\n      official: true\n",
     "code: official\n", "code: expected a mapping of 'field: value' lines, got 'official'"),
])
def test_messages_are_ours_not_pydantics(tree, capsys, old, new, expected):
    tree.edit(ALPHA, old, new)
    code, lines = validate(tree, capsys)
    assert code == 1 and any(line.startswith(f"{ALPHA}:") and f": error: {expected}" in line for line in lines), lines
    assert not any("Input should" in line or "should be a valid" in line for line in lines), lines


def test_a_result_record_gets_the_same_wording(tree, capsys):
    tree.edit("reproductions/toy_repro/results/omniglot.yaml", "value: 97.1", "value: high")
    code, lines = validate(tree, capsys)
    assert code == 1
    assert "reproductions/toy_repro/results/omniglot.yaml:8: error: value: expected a number, got 'high'" in lines


def test_info_lines_are_not_marked_as_errors(tree, capsys):
    tree.edit(BETA, "reproductions: [toy_repro]\n", "")
    tree.path("reproductions/toy_repro/results/omniglot.yaml").unlink()
    tree.edit(ALPHA, "status: official", "status: nonee")
    code, lines = validate(tree, capsys)
    assert code == 1
    assert f"{BETA}:15: needs_code: needs code and has no reproduction yet [info]" in lines
    assert [line for line in lines if ": error: " in line] == [
        f"{ALPHA}:17: error: code.status: 'nonee' is not one of 'official', 'community', 'none' — did you mean 'none'?"]
    assert lines[-1] == "catalog is NOT valid: 2 papers, 1 error, 1 info"


def test_render_and_export_print_the_same_marked_errors(tree, capsys, tmp_path):
    tree.edit(ALPHA, "status: official", "status: oficial")
    assert main(["--root", str(tree.root), "export", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"{ALPHA}:17: error: code.status: 'oficial' is not one of" in err and not (tmp_path / "out").exists()


def test_a_survey_cannot_carry_the_state_of_the_art_flag(tree, capsys):
    tree.edit(BETA, "summary: >-", "highlights:\n  sota: true\nsummary: >-")  # beta is in the survey topic
    tree.edit(ALPHA, "summary: >-", "highlights:\n  sota: true\nsummary: >-")  # alpha is not: allowed
    code, lines = validate(tree, capsys)
    assert code == 1
    assert lines == [
        f"{BETA}:18: error: highlights.sota: a survey cannot be state of the art (the flag marks a method that led "
        "its benchmarks when it was listed); remove 'sota: true'",
        "catalog is NOT valid: 2 papers, 1 error, 0 infos",
    ]
    # refused in the same run as the file's other problems, too
    tree.edit(BETA, "status: none", "status: non")
    code, lines = validate(tree, capsys)
    assert code == 1 and [line.split(": error: ")[1].split(":")[0] for line in lines[:-1]] == ["code.status",
                                                                                            "highlights.sota"]
    # a survey may still be an editor's pick
    tree.edit(BETA, "status: non", "status: none")
    tree.edit(BETA, "sota: true", "pick: true")
    assert validate(tree, capsys)[0] == 0


def test_the_real_catalog_has_no_survey_marked_state_of_the_art():
    from conftest import PROJECT_ROOT
    from mlatlas.catalog.loader import load_valid_catalog

    catalog = load_valid_catalog(PROJECT_ROOT)
    surveys = [p for p in catalog.papers.values() if "survey" in p.topics]
    assert len(surveys) >= 10 and not [p.id for p in surveys if p.highlights.sota]


def test_paper_files_are_checked_even_when_a_vocabulary_is_broken(tree, capsys):
    tree.edit("catalog/vocab/labels.yaml", "families:", "familes:")
    tree.edit(ALPHA, "status: official", "status: oficial")
    code, lines = validate(tree, capsys)
    assert code == 1
    assert any(line.startswith("catalog/vocab/labels.yaml:") and ": error: familes: unknown field 'familes' — did "
               "you mean 'families'?" in line for line in lines), lines
    assert f"{ALPHA}:17: error: code.status: 'oficial' is not one of 'official', 'community', 'none' — did you mean " \
           "'official'?" in lines


def test_a_key_written_twice_hides_nothing_else(tree, capsys):
    tree.edit(ALPHA, "year: 2017\n", "year: 2017\nyear: 2018\n")
    tree.edit(ALPHA, "status: official", "status: oficial")
    tree.edit(ALPHA, "topics: [few-shot-learning]", "topics: [few-shot]")
    code, lines = validate(tree, capsys)
    assert code == 1
    assert lines == [
        f"{ALPHA}:8: error: duplicate key 'year' (each key may appear once); the first is used",
        f"{ALPHA}:14: error: topics.0: unknown topic 'few-shot' — did you mean 'few-shot-learning'?",
        f"{ALPHA}:18: error: code.status: 'oficial' is not one of 'official', 'community', 'none' — did you mean "
        "'official'?",
        "catalog is NOT valid: 2 papers, 3 errors, 0 infos",
    ]
