"""`mlatlas repro run` never overwrites a committed record without being asked (`--replace`), and says which records
it wrote and which it replaced, with the values they had. Smoke configs (`smoke`, `smoke_<variant>`, `<x>_smoke`)
write nothing, and a record names the mlatlas command, never the host process's argv (pytest's here).

Real MAML runs of a few seconds (the smoke budget) in a throw-away checkout under tmp_path (`--root`), so nothing
is written into this repository."""

from __future__ import annotations


import pytest
import yaml

from mlatlas.cli import main

RUN = ["repro", "run", "maml", "--config", "mine.yaml", "--device", "cpu", "--no-progress"]


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A folder to run in: the config sits inside it and is named relative to it, as a user's would be."""
    root = tmp_path / "atlas"
    root.mkdir()
    (root / "mine.yaml").write_text("# a short run that records (a real config would be longer)\nextends: smoke\n")
    monkeypatch.chdir(root)
    return root


def run(root, *extra: str, action: list[str] = RUN) -> int:
    return main(["--root", str(root), *action, *extra])


def records(root) -> dict[str, bytes]:
    folder = root / "reproductions" / "maml" / "results"
    return {p.name: p.read_bytes() for p in sorted(folder.glob("mine_*"))} if folder.is_dir() else {}


def test_records_are_replaced_only_when_asked_and_each_is_named(checkout, capsys):
    assert run(checkout) == 0
    out = capsys.readouterr().out
    first = records(checkout)
    yamls = sorted(name for name in first if name.endswith(".yaml"))
    assert yamls, "the run wrote no record"
    assert f"records: {len(yamls)} new, 0 replaced" in out
    for name in yamls:
        assert f"  new       reproductions/maml/results/{name}\n" in out
    # the record names the mlatlas command, not pytest's argv (and no path of this machine: --root is left out)
    command = yaml.safe_load((checkout / "reproductions/maml/results" / yamls[0]).read_text())["environment"]["command"]
    assert command == "mlatlas repro run maml --config mine.yaml --device cpu --no-progress"

    # the same command again: stops before running, names the records, changes nothing
    assert run(checkout) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: maml: config 'mine' already has {len(yamls)} records (reproductions/maml/results/mine_")
    assert "nothing was run. Pass --replace to run and replace them" in err and "--no-record" in err
    assert records(checkout) == first

    # with --replace: said before the run, and each replaced record listed with the value it had
    assert run(checkout, "--replace") == 0
    captured = capsys.readouterr()
    assert f"note: this run replaces the {len(yamls)} records (reproductions/maml/results/mine_" in captured.err
    assert f"records: 0 new, {len(yamls)} replaced" in captured.out
    old = yaml.safe_load(first[yamls[0]])
    was = f"was {old['value']:g} ± {old['ci95']:g}, commit {old['environment']['commit']}, {old['environment']['date']}"
    assert f"  replaced  reproductions/maml/results/{yamls[0]} ({was}; now " in captured.out
    again = yaml.safe_load((checkout / "reproductions/maml/results" / yamls[0]).read_text())
    assert again["environment"]["command"] == command  # --replace is not part of what was computed

    # `repro eval --record` is asked to rewrite the records: it does, and lists them
    assert run(checkout, "--record", action=["repro", "eval", *RUN[2:]]) == 0
    assert f"records: 0 new, {len(yamls)} replaced" in capsys.readouterr().out


def test_a_record_another_config_wrote_is_not_overwritten_at_the_end_either(checkout, capsys):
    """The check before the run finds a config's records by their command; any other record the run would
    overwrite is refused when the records are written: nothing of the run is written."""
    folder = checkout / "reproductions" / "maml" / "results"
    assert run(checkout) == 0
    capsys.readouterr()
    names = sorted(p.name for p in folder.glob("mine_*.yaml"))
    for name in names:  # now these records say another config wrote them
        path = folder / name
        path.write_text(path.read_text().replace("--config mine.yaml", "--config other.yaml"))
    before = records(checkout)
    assert run(checkout) == 1
    err = capsys.readouterr().err
    assert any(f"error: maml: {name} is already recorded (" in err for name in names), err
    assert "nothing was written. Pass --replace" in err
    assert records(checkout) == before
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("name", ["smoke_quick", "quick_smoke"])
def test_smoke_variants_write_no_record(checkout, capsys, name):
    (checkout / f"{name}.yaml").write_text("extends: smoke\n")
    assert run(checkout, action=["repro", "run", "maml", "--config", f"{name}.yaml", "--device", "cpu",
                                 "--no-progress"]) == 0
    assert "records:" not in capsys.readouterr().out
    assert not (checkout / "reproductions").exists()


def test_the_suite_refuses_a_record_written_into_this_repository():
    """The guard in conftest.py: a test that writes into reproductions/*/results/ of this checkout fails, and
    leaves nothing there (not even a temp file)."""
    from conftest import PROJECT_ROOT
    from reproductions.core.recording import write_record

    folder = PROJECT_ROOT / "reproductions" / "maml" / "results"
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(AssertionError, match="a test wrote reproductions/maml/results/guard_probe.yaml into the "
                                             "repository"):
        write_record(folder, "guard_probe", root=PROJECT_ROOT, code_paths=[], command="mlatlas repro run maml",
                     device="cpu", wall_time_s=1.0, commit="abc1234", paper="maml", reproduction="maml",
                     benchmark="b", setting="s", metric="MSE", higher_is_better=False, value=0.5)
    assert sorted(p.name for p in folder.iterdir()) == before
