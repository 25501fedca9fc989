"""`tests/device_check.py` on this machine's CPU path: it runs the selected tests in a fresh pytest, counts them and
writes a report that says when no accelerator was there to compare."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import device_check  # noqa: E402


def test_the_check_runs_the_selection_and_reports_it(tmp_path):
    status = device_check.main(["--tests", "tests/test_device_agreement.py", "tests/test_omniglot_standard.py",
                                "--select", "agree or bad_line", "--out", str(tmp_path), "--wheels", str(tmp_path / "none")])
    report = json.loads((tmp_path / "report.json").read_text())
    assert status == report["pytest_status"] == 0
    counts = report["tests"]
    assert counts["failures"] == counts["errors"] == 0 and counts["passed"] == 1  # the selected data test ran
    assert counts["tests"] == counts["passed"] + counts["skipped"]
    text = (tmp_path / "report.md").read_text()
    assert f"torch {report['torch']}" in text and "1 passed" in text and "agree or bad_line" in text
    if report["device"] == "cpu only":
        assert counts["skipped"] >= 2 and report["agreement"] == [] and "nothing compared" in text


def test_a_missing_package_without_wheels_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(device_check.NEEDED, "surely_absent_module_xyz", "surely-absent")
    assert device_check.main(["--out", str(tmp_path), "--wheels", str(tmp_path / "none")]) == 2
    assert "missing surely-absent" in capsys.readouterr().err
