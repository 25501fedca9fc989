"""`records.verdict`, the one rule, on every path; and the one-line summary of a paper's records built from it."""

from __future__ import annotations

import pytest

from mlatlas.records import (
    AGREES,
    BETTER,
    DIFFERENT_PROTOCOL,
    NO_PAPER_NUMBER,
    WORSE,
    ResultRecord,
    summaries,
    summary,
    verdict,
)

OURS = {"data": "Omniglot, Vinyals split", "train": "60-way 1-shot", "test": "5-way 1-shot", "test_episodes": 1000}


def record(value=98.0, ci95=0.3, paper=98.7, pm=0.4, *, protocol=OURS, paper_protocol=OURS, higher_is_better=True,
           tolerance=None, benchmark="Omniglot 5-way 1-shot, held-out characters", table="Table 1 (Omniglot)",
           paper_id="p") -> ResultRecord:
    data = {
        "paper": paper_id, "reproduction": "r", "benchmark": benchmark, "setting": "s", "metric": "accuracy",
        "higher_is_better": higher_is_better, "value": value, "ci95": ci95, "protocol": dict(protocol),
        "tolerance": tolerance,
        "environment": {"command": "mlatlas repro run r", "commit": "abcdef1", "hardware": "h", "device": "cpu",
                        "versions": {}, "wall_time_s": 1, "date": "2026-12-05"},
    }
    if paper is not None:
        data["paper_value"] = {"value": paper, "pm": pm, "table": table, "protocol": dict(paper_protocol)}
    return ResultRecord.model_validate(data)


def test_agrees_within_the_combined_interval_in_quadrature():
    # gap -0.45; intervals 0.3 and 0.4 combine to 0.5 (not 0.7, their sum; not 0.3 or 0.4 alone)
    v = verdict(record(98.25, 0.3, 98.7, 0.4))
    assert (v.kind, v.gap, v.margin) == (AGREES, pytest.approx(-0.45), pytest.approx(0.5))
    assert "combined 95% interval" in v.reason
    assert verdict(record(98.1, 0.3, 98.7, 0.4)).kind == WORSE  # gap -0.6 > 0.5 although each interval overlaps


def test_better_and_worse_follow_the_metric_direction():
    assert verdict(record(99.9, 0.1, 98.7, 0.4)).kind == BETTER
    assert verdict(record(97.0, 0.1, 98.7, 0.4)).kind == WORSE
    lower = dict(higher_is_better=False)
    assert verdict(record(0.30, 0.01, 0.50, 0.02, **lower)).kind == BETTER
    v = verdict(record(0.60, 0.01, 0.50, 0.02, **lower))
    assert (v.kind, v.gap) == (WORSE, pytest.approx(0.1))


def test_a_paper_fact_that_differs_gives_different_protocol_and_no_gap():
    theirs = {**OURS, "data": "Omniglot, 1,200 characters x4 rotations", "test_episodes": 600}
    v = verdict(record(60.0, 0.3, 98.7, 0.4, paper_protocol=theirs))
    assert v.kind == DIFFERENT_PROTOCOL and v.gap is None and not v.compared
    assert v.differs == ("data", "test_episodes")
    assert "test_episodes: ours 1000, paper 600" in v.reason and "train" not in v.reason


def test_a_fact_the_paper_states_and_we_do_not_is_a_difference():
    v = verdict(record(protocol={"test": "5-way 1-shot"}))
    assert v.kind == DIFFERENT_PROTOCOL and "data: ours not stated" in v.reason


def test_facts_only_we_state_are_not_compared():
    assert verdict(record(98.5, protocol={**OURS, "budget": "2,500 episodes"})).kind == AGREES


def test_a_paper_value_without_a_protocol_is_never_compared():
    v = verdict(record(98.7, paper_protocol={}))
    assert v.kind == DIFFERENT_PROTOCOL and v.gap is None and "states no protocol" in v.reason


def test_no_paper_value_gives_no_paper_number():
    v = verdict(record(paper=None))
    assert (v.kind, v.gap, v.reason) == (NO_PAPER_NUMBER, None, "")


def test_a_declared_tolerance_replaces_the_interval_and_says_so():
    # gap -0.45: inside the combined interval (0.5) but outside a declared tolerance of 0.2, and the other way round
    strict = verdict(record(98.25, 0.3, 98.7, 0.4, tolerance=0.2))
    assert (strict.kind, strict.margin) == (WORSE, 0.2) and "declared tolerance ±0.2" in strict.reason
    loose = verdict(record(97.7, 0.1, 98.7, 0.1, tolerance=1.5))
    assert (loose.kind, loose.margin) == (AGREES, 1.5) and "declared tolerance" in loose.reason


def test_the_summary_line_counts_verdicts_per_data_set_and_names_the_tables():
    other = {**OURS, "data": "Omniglot minimal setting"}
    rows = [
        record(98.5), record(98.6, benchmark="Omniglot 20-way 1-shot, held-out characters"),
        record(90.0, table="Table 1 (Omniglot, 20-way)"),
        record(80.0, protocol=other), record(paper=None, benchmark="Omniglot, Lake et al.'s 20 runs"),
        record(0.4, paper=None, benchmark="Sinusoid regression (Finn et al. 2017)", higher_is_better=False),
    ]
    assert summary(rows) == (
        "Omniglot: 3 compared with Table 1: 2 agrees, 1 worse; 1 under another protocol than Table 1 "
        "(no gap drawn); 1 with no paper number. Sinusoid regression: 1 with no paper number"
    )
    assert summary([]) == ""
    by_paper = summaries([*rows, record(paper=None, paper_id="a")])
    assert list(by_paper) == ["a", "p"] and by_paper["a"] == "Omniglot: 1 with no paper number"
