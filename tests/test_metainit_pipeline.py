"""MetaInit experiment pipeline: Omniglot zips read directly, the split, the CLI, caching and the records."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw

from mlatlas.cli import main
from mlatlas.records import ResultRecord
from reproductions.core import registry
from reproductions.metainit import data, experiment, report

SHARED_ZIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot" / "images_background_small1.zip"
ROOT = Path(__file__).resolve().parents[1]


def write_fake_omniglot(path: Path, alphabets: int = 2, chars: int = 3, drawings: int = 4) -> Path:
    """An archive laid out like Omniglot's: top folder / alphabet / characterNN / NNNN_MM.png, 105x105, black ink
    on white; each character is a different stroke, each drawing shifts it a little."""
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as zf:
        for a in range(alphabets):
            for c in range(chars):
                for d in range(drawings):
                    img = Image.new("L", (105, 105), 255)
                    dx, dy = rng.integers(-5, 6, size=2)
                    k = a * chars + c
                    ImageDraw.Draw(img).line([(10 + dx, 10 + 12 * k + dy), (95 + dx, 95 - 12 * k + dy)], fill=0, width=6)
                    buf = io.BytesIO()
                    img.save(buf, format="PNG")
                    zf.writestr(f"images_fake/Alphabet{a}/character{c + 1:02d}/{k:04d}_{d + 1:02d}.png", buf.getvalue())
    return path


@pytest.fixture
def fake_zip(tmp_path: Path) -> Path:
    return write_fake_omniglot(tmp_path / "images_background_small1.zip")


def test_read_characters_from_a_zip(fake_zip):
    images, names = data.read_characters(fake_zip, 28)
    assert images.shape == (6, 4, 28, 28) and images.dtype == np.float32
    assert names[0] == "Alphabet0/character01" and len(set(names)) == 6
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.max() > 0.5  # ink = 1, paper = 0
    assert images.mean() < 0.3  # mostly paper
    assert not np.allclose(images[0, 0], images[1, 0])  # characters differ


@pytest.mark.skipif(not SHARED_ZIP.exists(), reason=f"real Omniglot archive not present at {SHARED_ZIP}")
def test_read_the_real_omniglot_background_small1_archive():
    images, names = data.read_characters(SHARED_ZIP, 14)
    assert images.shape == (136, 20, 14, 14)
    assert names[0] == "Balinese/character01"
    split = data.make_split(images, 15)
    assert split.x_train.shape == (136 * 15, 1, 14, 14) and split.x_test.shape == (136 * 5, 1, 14, 14)
    assert abs(float(split.x_train.mean())) < 1e-4 and abs(float(split.x_train.std()) - 1) < 1e-3
    assert split.n_classes == 136 and set(split.y_test.tolist()) == set(range(136))


def test_split_is_per_character_and_standardised(fake_zip):
    images, _ = data.read_characters(fake_zip, 28)
    split = data.make_split(images, 3)
    assert split.x_train.shape == (18, 1, 28, 28) and split.x_test.shape == (6, 1, 28, 28)
    assert split.y_train.tolist() == [c for c in range(6) for _ in range(3)]
    assert split.y_test.tolist() == list(range(6))
    assert abs(float(split.x_train.mean())) < 1e-5 and abs(float(split.x_train.std()) - 1) < 1e-4
    with pytest.raises(data.DataError, match="train_drawings must be between 1 and 3"):
        data.make_split(images, 4)


def test_data_path_errors_name_the_path(tmp_path, fake_zip):
    with pytest.raises(data.DataError, match="does not exist"):
        data.resolve_archive(str(tmp_path / "missing.zip"), "images_background_small1.zip")
    assert data.resolve_archive(str(fake_zip.parent), fake_zip.name) == fake_zip  # a folder holding the archive
    broken = tmp_path / "broken.zip"
    broken.write_text("not a zip")
    with pytest.raises(data.DataError, match="broken.zip: not a readable zip"):
        data.read_characters(broken, 28)
    empty = tmp_path / "empty.zip"
    zipfile.ZipFile(empty, "w").close()
    with pytest.raises(data.DataError, match="no Alphabet/character"):
        data.read_characters(empty, 28)


def smoke_config(zip_path: Path) -> dict:
    repro = registry.get("metainit")
    _, config = registry.load_config(repro, "smoke")
    return registry.apply_overrides(config, [f"data.path={zip_path}", "data.train_drawings=3"])


def test_jobs_reject_unknown_conditions(fake_zip):
    config = smoke_config(fake_zip)
    config["conditions"] = ["standard", "lucky"]
    with pytest.raises(ValueError, match="unknown \\['lucky'\\]"):
        experiment.jobs(config)


def test_run_caches_jobs_and_writes_valid_records(tmp_path, fake_zip):
    config = smoke_config(fake_zip)
    ctx = registry.RunContext(config_name="smoke", device="cpu", work_dir=tmp_path / "runs", root=ROOT,
                              command="mlatlas repro run metainit --config smoke", progress=False)
    results, device = experiment.run_all(config, ctx)
    assert device == "cpu" and len(results) == 2 * 2  # depths [2, 3] x conditions [standard, bad+metainit]
    for r in results:
        assert len(r.curve) == config["train"]["epochs"] and np.isfinite(r.gq_init)
        if r.condition == "bad+metainit":
            assert len(r.metainit_gq) == config["metainit"]["steps"] and r.norm_ratio
            assert all(v > 0 for v in r.norm_ratio.values())
        else:
            assert r.gq_start == r.gq_init and not r.metainit_gq
    cached = list((tmp_path / "runs" / "metainit" / "smoke").rglob("*.json"))
    assert len(cached) == 4

    again, _ = experiment.run_all(config, ctx)  # read back from the cache, identical
    assert [r.curve for r in again] == [r.curve for r in results]
    ctx.eval_only = True
    config["seeds"] = 2  # a job that never ran cannot be evaluated
    with pytest.raises(ValueError, match="run `mlatlas repro run metainit` first"):
        experiment.run_all(config, ctx)
    config["seeds"] = 1

    out = tmp_path / "results"
    written = report.write_all(config, ctx, results, device, results_dir=out)
    records = sorted(out.glob("*.yaml"))
    assert [p.name for p in records] == [
        "smoke_depth2_bad-metainit.yaml", "smoke_depth2_bad-metainit_gq.yaml", "smoke_depth2_standard.yaml",
        "smoke_depth3_bad-metainit.yaml", "smoke_depth3_bad-metainit_gq.yaml", "smoke_depth3_standard.yaml",
    ]
    for path in records:
        record = ResultRecord.model_validate(yaml.safe_load(path.read_text()))
        assert record.paper == "metainit" and record.reproduction == "metainit" and record.n_seeds == 1
        assert record.environment.command == ctx.command and record.environment.device == "cpu"
        assert (out / record.curve).exists() and (out / record.plot).read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader((out / "smoke_depth3_standard.csv").open()))
    assert list(rows[0]) == ["iteration", "train_loss", "test_loss", "test_error_pct"]
    gq = ResultRecord.model_validate(yaml.safe_load((out / "smoke_depth2_bad-metainit_gq.yaml").read_text()))
    assert gq.metric == "gradient quotient after MetaInit" and "before MetaInit" in gq.notes
    summary = (out / "smoke_summary.md").read_text()
    assert summary.startswith("<!-- Generated") and "| 3 | bad+metainit |" in summary
    assert out / "smoke_summary.png" in written


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """``mlatlas ARGS`` in this process (the console script calls the same ``main``)."""
    code = main(["--root", str(ROOT), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_smoke_run_prints_metrics_and_writes_no_record(tmp_path, fake_zip, capsys):
    before = sorted((ROOT / "reproductions" / "metainit" / "results").glob("*"))
    code, out, err = run_cli(capsys, "repro", "run", "metainit", "--config", "smoke", "--set", f"data.path={fake_zip}",
                             "--set", "data.train_drawings=3", "--device", "cpu", "--work-dir", str(tmp_path),
                             "--no-progress")
    assert code == 0, err
    assert "depth3_bad+metainit_gq_start:" in out and "depth2_standard_test_error_pct:" in out
    assert sorted((ROOT / "reproductions" / "metainit" / "results").glob("*")) == before


def test_cli_names_a_missing_data_path(tmp_path, capsys):
    code, _, err = run_cli(capsys, "repro", "run", "metainit", "--config", "smoke", "--set",
                           f"data.path={tmp_path}/nope.zip", "--device", "cpu", "--work-dir", str(tmp_path),
                           "--no-progress")
    assert code == 1
    assert f"error: metainit: data.path: {tmp_path}/nope.zip does not exist" in err
