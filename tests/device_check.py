"""One command that runs the smoke suite on an accelerator machine and writes a short report.

    python tests/device_check.py [--wheels DIR] [--out DIR]        # or: make device-check

Made for a machine that has Python and a CUDA (or MPS) build of torch, some common packages (numpy, scipy,
matplotlib, jinja2, pyyaml, requests, pillow, tqdm, pytest), none of our other dependencies and no network. It

1. installs what is missing from wheels in ``--wheels`` (default ``wheels/`` beside the checkout's root) into a
   private folder, never touching torch, and makes the toolkit importable from the checkout without installing it;
2. runs every smoke test (each reproduction on every available device), the CPU-versus-accelerator agreement tests
   and the resume tests, with the data in ``$MLATLAS_DATA_DIR`` (``omniglot/``, ``mnist/``, ``schools/``; the tests
   also look in ``../shared/data``);
3. writes ``report.md`` and ``report.json`` to ``--out`` (default ``device-report/``): device, torch and CUDA
   versions, tests run / passed / skipped / failed, and the CPU-versus-accelerator differences it measured.

Preparing the wheels, on any machine with network (Python 3.12, manylinux x86-64; versions as in our lock)::

    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d wheels \\
        pydantic==2.14.4 pydantic-core==2.50.5 annotated-types typing-inspection==0.4.5 \\
        typing-extensions==4.16.0 defusedxml==0.7.1 platformdirs==4.14.9

Together with the data (the Omniglot archives and split lists, about 19 MB, and MNIST, 11 MB) that is well under
64 MiB. The check exits with pytest's status.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Modules the smoke suite imports, with the distribution that provides each.
NEEDED = {"pydantic": "pydantic", "yaml": "pyyaml", "jinja2": "jinja2", "requests": "requests",
          "defusedxml": "defusedxml", "numpy": "numpy", "scipy": "scipy", "matplotlib": "matplotlib",
          "tqdm": "tqdm", "PIL": "pillow", "platformdirs": "platformdirs", "pytest": "pytest",
          "pytest_timeout": "pytest-timeout", "torch": "torch"}
# The tests that exercise devices: smoke runs (every reproduction, every device), agreement, resume.
SELECT = "smoke or device or agree or resume"


def missing_modules() -> list[str]:
    return [module for module in NEEDED if importlib.util.find_spec(module) is None]


def install_wheels(wheels: Path, target: Path) -> list[str]:
    """Install every wheel in ``wheels`` (no index, no dependencies resolved, torch never) into ``target``."""
    files = sorted(p for p in wheels.glob("*.whl") if not p.name.startswith("torch-"))
    if not files:
        return []
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--target", str(target), *map(str, files)], check=True)
    return [p.name for p in files]


def importable_toolkit(folder: Path) -> Path:
    """A folder in which ``import mlatlas`` finds the checkout's toolkit without installing it."""
    return ROOT / "tools"


def device_facts() -> dict:
    import torch

    facts = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
             "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
             "device": "cpu only", "machine": platform.machine()}
    if torch.cuda.is_available():
        facts["device"] = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        facts["device"] = "Apple MPS"
    return facts


def junit_counts(path: Path) -> dict[str, int]:
    suites = ET.parse(path).getroot()
    suites = [suites] if suites.tag == "testsuite" else list(suites)
    total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    total["passed"] = total["tests"] - total["failures"] - total["errors"] - total["skipped"]
    return total


def write_report(out: Path, facts: dict, counts: dict, agreement: list[dict], installed: list[str],
                 seconds: float, status: int, select: str = SELECT) -> None:
    report = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **facts, "tests": counts,
              "agreement": agreement, "installed_wheels": installed, "seconds": round(seconds, 1),
              "pytest_status": status}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    lines = [f"# Device check, {report['date']}", "",
             f"- device: {facts['device']} ({facts['machine']}); Python {facts['python']}, torch {facts['torch']}, "
             f"CUDA {facts['cuda'] or 'none'}, cuDNN {facts['cudnn'] or 'none'}",
             f"- tests: {counts['tests']} run, {counts['passed']} passed, {counts['skipped']} skipped, "
             f"{counts['failures'] + counts['errors']} failed (selection: `-k \"{select}\"`); {seconds:.0f} s",
             f"- wheels installed: {', '.join(installed) or 'none needed'}", "",
             "| CPU versus accelerator | device | measured | tolerance |", "| --- | --- | --- | --- |"]
    lines += [f"| {a['check']} | {a['device']} | {a['measured']:.2e} | {a['tolerance']:.0e} |" for a in agreement]
    if not agreement:
        lines.append("| no accelerator: nothing compared | | | |")
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the smoke suite on this machine's devices and write a report.")
    parser.add_argument("--wheels", type=Path, default=ROOT / "wheels", help="folder of wheels for missing packages")
    parser.add_argument("--out", type=Path, default=ROOT / "device-report", help="where the report goes")
    parser.add_argument("--tests", nargs="*", default=["tests"], help="test files or folders (default: tests)")
    parser.add_argument("--select", default=SELECT, help=f"pytest -k expression (default: {SELECT!r})")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="device-check-"))
    installed: list[str] = []
    if missing_modules() and args.wheels.is_dir():
        installed = install_wheels(args.wheels, scratch / "site")
        sys.path[:0] = [str(scratch / "site")]
    still = [NEEDED[m] for m in missing_modules()]
    if still:
        print(f"error: missing {', '.join(still)}; put their wheels in {args.wheels} (see this file's docstring)",
              file=sys.stderr)
        return 2
    paths = [str(scratch / "site"), str(importable_toolkit(scratch)), str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p),
           "MLATLAS_DEVICE_REPORT": str(args.out), "NO_MKDOCS_2_WARNING": "1"}
    (args.out / "agreement.jsonl").unlink(missing_ok=True)
    junit = args.out / "junit.xml"
    status = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", args.select,
                             f"--junitxml={junit}", "--rootdir", str(ROOT), *args.tests], cwd=ROOT, env=env).returncode
    agreement_file = args.out / "agreement.jsonl"
    agreement = ([json.loads(line) for line in agreement_file.read_text(encoding="utf-8").splitlines()]
                 if agreement_file.exists() else [])
    counts = junit_counts(junit) if junit.exists() else {"tests": 0, "passed": 0, "skipped": 0, "failures": 0,
                                                         "errors": 1}
    write_report(args.out, device_facts(), counts, agreement, installed, time.perf_counter() - start, status,
                 args.select)
    print((args.out / "report.md").read_text(encoding="utf-8"))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
