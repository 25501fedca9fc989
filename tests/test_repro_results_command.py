"""`mlatlas repro results`: the recorded results as one Markdown table, ours beside the paper's."""

from __future__ import annotations

from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from mlatlas.cli import main
from reproductions.core.recording import write_record


PROTOCOL = {"data": "Omniglot, 1,200 characters x4 rotations", "test": "5-way 1-shot", "test_episodes": 100}


def _record(root: Path, name: str, stem: str, value: float, ci95: float, paper_value=None, **extra) -> None:
    write_record(
        root / "reproductions" / name / "results", stem, root=root, code_paths=[], command=f"mlatlas repro run {name}",
        device="cpu", wall_time_s=1.0, commit="abc1234", reproduction=name,
        benchmark="Omniglot | 5-way", setting=extra.pop("setting", "1-shot"), metric="accuracy", unit="%",
        higher_is_better=True, value=value, ci95=ci95, n_eval_tasks=100, paper_value=paper_value,
        protocol=extra.pop("protocol", PROTOCOL), **{"paper": "maml", **extra},
    )


def _table(out: str) -> list[list[str]]:
    """The table's cells, read by a real Markdown parser (so escaping mistakes would show)."""
    tokens = MarkdownIt("commonmark").enable("table").parse(out)
    rows, row = [], None
    for tok in tokens:
        if tok.type == "tr_open":
            row = []
        elif tok.type == "inline" and row is not None:
            row.append(tok.content)
        elif tok.type == "tr_close":
            rows.append(row)
            row = None
    return rows


PAPER = {"value": 98.7, "pm": 0.4, "paper": "maml", "table": "Table 1", "protocol": PROTOCOL}


def test_prints_ours_the_papers_the_verdict_and_the_gap(tmp_path, capsys):
    _record(tmp_path, "omniglot_maml", "small1_5way1shot", 95.25, 0.4, PAPER)
    _record(tmp_path, "omniglot_maml", "small2_5way1shot", 98.5, 0.3, PAPER, n_seeds=3)
    _record(tmp_path, "maml", "sinusoid_5shot_1step", 0.5, 0.05)
    assert main(["--root", str(tmp_path), "repro", "results", "omniglot_maml"]) == 0
    header, *rows = _table(capsys.readouterr().out)
    assert header[:2] == ["reproduction", "record"] and header[-2:] == ["verdict", "gap"]
    cells = {row[1]: dict(zip(header, row)) for row in rows}
    assert set(cells) == {"small1_5way1shot", "small2_5way1shot"}  # only the named reproduction
    worse, agrees = cells["small1_5way1shot"], cells["small2_5way1shot"]
    assert worse["benchmark"] == "Omniglot | 5-way"  # the pipe is escaped, not a new column
    assert worse["ours (95% CI)"] == "95.25 ± 0.4" and worse["paper"] == "98.7 ± 0.4 (Table 1)"
    assert worse["gap"] == "−3.45" and worse["verdict"].startswith("worse (outside the combined 95% interval")
    assert agrees["gap"] == "−0.2" and agrees["verdict"].startswith("agrees (within")
    assert worse["seeds"] == "1" and agrees["seeds"] == "3"


def test_a_number_from_another_protocol_shows_no_gap(tmp_path, capsys):
    minimal = {**PROTOCOL, "data": "Omniglot minimal setting, images_background_small1"}
    _record(tmp_path, "omniglot_maml", "small1_5way1shot", 60.0, 1.0, PAPER, protocol=minimal)
    assert main(["--root", str(tmp_path), "repro", "results"]) == 0
    header, row = _table(capsys.readouterr().out)
    cells = dict(zip(header, row))
    assert cells["verdict"] == "different protocol: data differ" and cells["gap"] == "—"
    assert "38.7" not in " ".join(row)  # the gap is nowhere in the row


def test_verdict_filter_is_repeatable_and_takes_hyphenated_kinds(tmp_path, capsys):
    _record(tmp_path, "omniglot_maml", "worse", 95.25, 0.4, PAPER)
    _record(tmp_path, "omniglot_maml", "agrees", 98.5, 0.3, PAPER)
    _record(tmp_path, "omniglot_maml", "other", 60.0, 1.0, PAPER, protocol={**PROTOCOL, "test_episodes": 600})
    _record(tmp_path, "maml", "none", 0.5, 0.05)

    def stems(*kinds: str) -> list[str]:
        args = [a for kind in kinds for a in ("--verdict", kind)]
        assert main(["--root", str(tmp_path), "repro", "results", *args]) == 0
        return sorted(row[1] for row in _table(capsys.readouterr().out)[1:])

    assert stems("worse") == ["worse"]
    assert stems("agrees", "different-protocol") == ["agrees", "other"]
    assert stems("no paper number") == ["none"]
    assert stems() == ["agrees", "none", "other", "worse"]
    assert main(["--root", str(tmp_path), "repro", "results", "--verdict", "better"]) == 1
    assert "no records match" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--root", str(tmp_path), "repro", "results", "--verdict", "great"])
    assert "unknown verdict 'great'" in capsys.readouterr().err


def test_summary_prints_one_line_per_reproduced_paper(tmp_path, capsys):
    _record(tmp_path, "omniglot_maml", "agrees", 98.5, 0.3, PAPER)
    _record(tmp_path, "omniglot_maml", "other", 60.0, 1.0, PAPER, protocol={**PROTOCOL, "test_episodes": 600})
    _record(tmp_path, "protonets", "none", 0.5, 0.05, paper="prototypical-networks")
    assert main(["--root", str(tmp_path), "repro", "summary"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "maml: Omniglot |: 1 compared with Table 1: 1 agrees; 1 under another protocol than Table 1 "
        "(no gap drawn)",
        "prototypical-networks: Omniglot |: 1 with no paper number",
    ]
    assert main(["--root", str(tmp_path), "repro", "summary", "maml"]) == 0
    assert capsys.readouterr().out.startswith("maml: ")
    assert main(["--root", str(tmp_path), "repro", "summary", "reptile"]) == 1


def test_grep_filters_and_no_match_is_an_error(tmp_path, capsys):
    _record(tmp_path, "maml", "sinusoid_5shot_1step", 0.5, 0.05)
    _record(tmp_path, "maml", "sinusoid_10shot_1step", 0.4, 0.05)
    assert main(["--root", str(tmp_path), "repro", "results", "--grep", "10SHOT"]) == 0
    rows = _table(capsys.readouterr().out)[1:]
    assert [row[1] for row in rows] == ["sinusoid_10shot_1step"] and rows[0][-1] == "—"
    assert main(["--root", str(tmp_path), "repro", "results", "--grep", "50shot"]) == 1
    assert "no records match" in capsys.readouterr().err
    assert main(["--root", str(tmp_path), "repro", "results", "reptile"]) == 1
    assert "no records for reptile" in capsys.readouterr().err
