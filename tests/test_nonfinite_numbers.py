"""NaN and infinity are refused as reported results (papers and records) with path:line, and catalog.json is
strict JSON."""

from __future__ import annotations

import json

import pytest

from mlatlas.cli import main
from mlatlas.catalog.loader import load_catalog

BETA = "catalog/papers/beta.yaml"
RECORD = "reproductions/toy_repro/results/omniglot.yaml"


def errors(tree) -> list[str]:
    _, problems = load_catalog(tree.root)
    return [str(p) for p in problems if p.severity == "error"]


@pytest.mark.parametrize("text", [".nan", ".NaN", ".inf", "-.inf", ".Inf", "1e999"])
def test_a_paper_result_that_is_not_finite_is_refused_with_its_line(tree, text):
    tree.edit(BETA, "    value: 98.7", f"    value: {text}")
    found = errors(tree)
    assert any(e.startswith(f"{BETA}:23: results.0.value:") and "finite" in e for e in found), found


def test_a_non_finite_pm_is_refused(tree):
    tree.edit(BETA, "    pm: 0.4", "    pm: .inf")
    assert any(e.startswith(f"{BETA}:24: results.0.pm:") for e in errors(tree))


@pytest.mark.parametrize("old, new, line, field", [
    ("value: 97.1", "value: .nan", 8, "value"),
    ("ci95: 0.5", "ci95: .inf", 9, "ci95"),
    ("  value: 98.7", "  value: -.inf", 11, "paper_value.value"),
])
def test_a_record_with_a_non_finite_number_is_refused_with_its_line(tree, old, new, line, field):
    tree.edit(RECORD, old, new)
    found = errors(tree)
    assert any(e.startswith(f"{RECORD}:{line}: {field}:") for e in found), found


def test_export_refuses_a_nan_catalog_and_writes_strict_json_otherwise(tree, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["--root", str(tree.root), "export", "--out", str(out)]) == 0
    text = (out / "catalog.json").read_text(encoding="utf-8")

    def refuse(token):
        raise ValueError(f"not strict JSON: {token}")

    json.loads(text, parse_constant=refuse)  # no NaN/Infinity anywhere
    tree.edit(BETA, "    value: 98.7", "    value: .nan")
    (out / "catalog.json").unlink()
    assert main(["--root", str(tree.root), "export", "--out", str(out)]) == 1
    assert f"{BETA}:23:" in capsys.readouterr().err
    assert not (out / "catalog.json").exists()


def test_writing_json_with_nan_fails_loudly_rather_than_writing_it(tree, tmp_path, monkeypatch):
    from mlatlas.outputs import export_json
    from mlatlas.catalog.loader import load_valid_catalog

    catalog = load_valid_catalog(tree.root)
    real = export_json.catalog_to_json
    monkeypatch.setattr(export_json, "catalog_to_json", lambda c: {**real(c), "x": float("nan")})
    with pytest.raises(ValueError):
        export_json.write_catalog_json(catalog, tmp_path / "catalog.json")
    assert not (tmp_path / "catalog.json").exists()
