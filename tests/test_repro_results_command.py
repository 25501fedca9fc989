"""`mlatlas repro results`: the recorded results as one Markdown table, ours beside the paper's."""

from __future__ import annotations

from pathlib import Path

from markdown_it import MarkdownIt

from mlatlas.cli import main
from reproductions.core.recording import write_record


def _record(root: Path, name: str, stem: str, value: float, ci95: float, paper_value=None, **extra) -> None:
    write_record(
        root / "reproductions" / name / "results", stem, root=root, code_paths=[], command=f"mlatlas repro run {name}",
        device="cpu", wall_time_s=1.0, commit="abc1234", paper="maml", reproduction=name,
        benchmark="Omniglot | 5-way", setting=extra.pop("setting", "1-shot"), metric="accuracy", unit="%",
        higher_is_better=True, value=value, ci95=ci95, n_eval_tasks=100, paper_value=paper_value, **extra,
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


def test_prints_ours_the_papers_and_the_gap(tmp_path, capsys):
    paper = {"value": 98.7, "pm": 0.4, "paper": "maml", "table": "Table 1"}
    _record(tmp_path, "omniglot_maml", "small1_5way1shot", 95.25, 0.4, paper)
    _record(tmp_path, "omniglot_maml", "small2_5way1shot", 98.5, 0.3, paper, n_seeds=3)
    _record(tmp_path, "maml", "sinusoid_5shot_1step", 0.5, 0.05)
    assert main(["--root", str(tmp_path), "repro", "results", "omniglot_maml"]) == 0
    header, *rows = _table(capsys.readouterr().out)
    assert header[:2] == ["reproduction", "record"] and "gap" in header
    cells = {row[1]: dict(zip(header, row)) for row in rows}
    assert set(cells) == {"small1_5way1shot", "small2_5way1shot"}  # only the named reproduction
    worse, agrees = cells["small1_5way1shot"], cells["small2_5way1shot"]
    assert worse["benchmark"] == "Omniglot | 5-way"  # the pipe is escaped, not a new column
    assert worse["ours (95% CI)"] == "95.25 ± 0.4" and worse["paper"] == "98.7 ± 0.4 (Table 1)"
    assert worse["gap"] == "−3.45 worse" and agrees["gap"] == "−0.2 agrees"
    assert worse["seeds"] == "1" and agrees["seeds"] == "3"


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
