"""maml_universality, Omniglot under shear and scale: the test-time transforms on real Omniglot drawings (identity at
zero shift, the geometry of each: where the ink goes, how its area and second moments change), the recurrent
learner on images, a smoke run on every available device, and the records of a miniature run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from _data import FULL_ARCHIVES, OMNIGLOT, VINYALS_SPLITS, standard_omniglot_folder as _data_folder
from mlatlas.cli import main
from mlatlas.records import ResultRecord, verdict
from reproductions.core import registry
from reproductions.core.runtime import available_devices
from reproductions.datasets import omniglot as og
from reproductions.datasets import omniglot_standard as std
from reproductions.maml_universality import omniglot as shift

SMALL = OMNIGLOT / "images_background_small1.zip"
FULL, SPLIT_DIR = FULL_ARCHIVES, VINYALS_SPLITS
needs_small = pytest.mark.skipif(not SMALL.exists(), reason=f"{SMALL} is absent (../shared/data/omniglot)")
needs_full = pytest.mark.skipif(not all((OMNIGLOT / n).exists() for n in FULL) or not SPLIT_DIR.is_dir(),
                                reason=f"the full Omniglot archives and the Vinyals split are not in {OMNIGLOT}")


@pytest.fixture(scope="module")
def drawings() -> torch.Tensor:
    """200 real 28x28 drawings (ink 1, background 0), one per character of the first 200 characters."""
    chars = og.load_images(SMALL.name, OMNIGLOT)
    return torch.from_numpy(np.ascontiguousarray(chars.images[:200, 0])).float().unsqueeze(1)


def coords(size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised pixel-centre coordinates (align_corners=False): x to the right, y down, both in (-1, 1)."""
    c = (2 * torch.arange(size, dtype=torch.float64) + 1) / size - 1
    return c.view(1, size).expand(size, size), c.view(size, 1).expand(size, size)


def moments(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per image: ink mass, centroid and central second moments in normalised coordinates."""
    x, y = coords(images.shape[-1])
    w = images[:, 0].double()
    m = w.sum((1, 2))
    cx, cy = (w * x).sum((1, 2)) / m, (w * y).sum((1, 2)) / m
    dx, dy = x - cx.view(-1, 1, 1), y - cy.view(-1, 1, 1)
    return {"mass": m, "cx": cx, "cy": cy, "xx": (w * dx * dx).sum((1, 2)) / m, "yy": (w * dy * dy).sum((1, 2)) / m,
            "xy": (w * dx * dy).sum((1, 2)) / m}


def inside(images: torch.Tensor, margin: float, lean: float = 0.0) -> torch.Tensor:
    """Which images have all their ink within ``|x| + |lean| |y| < margin`` and ``|y| < margin`` (so a scale by
    1 / margin or a shear by ``lean`` keeps it in the frame)."""
    x, y = coords(images.shape[-1])
    far = (x.abs() + abs(lean) * y.abs() >= margin) | (y.abs() >= margin)
    return (images[:, 0] * far).sum((1, 2)) == 0


@needs_small
def test_zero_shift_is_the_identity_on_real_drawings(drawings):
    assert torch.allclose(shift.shear(drawings, 0.0), drawings, atol=1e-5)
    assert torch.allclose(shift.scale(drawings, 1.0), drawings, atol=1e-5)
    assert shift.shifted("shear", 0.0) is None and shift.shifted("scale", 1.0) is None  # images left untouched
    assert not torch.allclose(shift.shear(drawings, 0.3), drawings, atol=1e-2)
    assert not torch.allclose(shift.scale(drawings, 0.8), drawings, atol=1e-2)


@needs_small
@pytest.mark.parametrize("factor", [0.5, 0.7, 1.25])
def test_scale_moves_the_ink_towards_the_centre_and_scales_its_area(drawings, factor):
    keep = inside(drawings, 0.75 if factor > 1 else 1.1)
    images = drawings[keep]
    assert len(images) >= 10
    before, after = moments(images), moments(shift.scale(images, factor))
    # The centroid and the spread about it are multiplied by the factor, the ink area by its square (bilinear
    # resampling blurs a little, hence the tolerances).
    assert torch.allclose(after["cx"], factor * before["cx"], atol=0.035)
    assert torch.allclose(after["cy"], factor * before["cy"], atol=0.035)
    assert torch.allclose(after["xx"].sqrt(), factor * before["xx"].sqrt(), atol=0.025)  # a pixel is 0.071 wide
    assert torch.allclose(after["yy"].sqrt(), factor * before["yy"].sqrt(), atol=0.025)
    ratio = (after["mass"] / before["mass"]).median().item()
    assert ratio == pytest.approx(factor**2, rel=0.1)


@needs_small
@pytest.mark.parametrize("angle", [0.4, -0.6, 0.75])
def test_shear_leans_the_drawing_and_keeps_rows_in_place(drawings, angle):
    t = math.tan(angle)
    images = drawings[inside(drawings, 1.0 - 1.0 / 28, lean=t)]
    assert len(images) >= 10
    before, after = moments(images), moments(shift.shear(images, angle))
    # (x, y) -> (x + t y, y): ink stays on its row, moves sideways in proportion to its height; area is unchanged
    # (the shear has determinant 1); the x-y covariance grows by t times the vertical variance.
    assert torch.allclose(after["mass"], before["mass"], rtol=0.03)
    assert torch.allclose(after["cy"], before["cy"], atol=0.01)
    assert torch.allclose(after["yy"], before["yy"], rtol=0.05, atol=1e-3)
    assert torch.allclose(after["cx"], before["cx"] + t * before["cy"], atol=0.02)
    assert torch.allclose(after["xy"], before["xy"] + t * before["yy"], atol=0.01)
    assert torch.allclose(after["xx"], before["xx"] + 2 * t * before["xy"] + t * t * before["yy"], rtol=0.1, atol=0.01)


@needs_small
def test_a_row_of_ink_moves_right_below_the_centre_for_a_positive_angle(drawings):
    """The sign convention on an image built from a real drawing's ink value: a one-pixel dot below the centre moves
    right, one above moves left, by tan(angle) times its height."""
    image = torch.zeros(1, 1, 28, 28)
    image[0, 0, 20, 14] = image[0, 0, 6, 14] = drawings.max()
    out = shift.shear(image, math.atan(0.5))[0, 0]
    x, _ = coords()
    below, above = out[18:23], out[4:9]
    x_below = float((below * x[18:23]).sum() / below.sum())
    x_above = float((above * x[4:9]).sum() / above.sum())
    y_below, y_above = (2 * 20 + 1) / 28 - 1, (2 * 6 + 1) / 28 - 1
    assert x_below == pytest.approx(float(x[0, 14]) + 0.5 * y_below, abs=0.02)
    assert x_above == pytest.approx(float(x[0, 14]) + 0.5 * y_above, abs=0.02)
    assert x_below > 0 > x_above


def test_the_recurrent_learner_classifies_each_query_from_the_support_labels():
    torch.manual_seed(0)
    model = shift.SnailClassifier(n_way=5, k_shot=1, channels=8, filters=4, key=4, value=4).double()
    support_x, query_x = torch.rand(5, 1, 28, 28, dtype=torch.float64), torch.rand(7, 1, 28, 28, dtype=torch.float64)
    labels = torch.arange(5)
    logits = model(support_x, labels, query_x)
    assert logits.shape == (7, 5)
    # The support labels are read: relabelling the support set changes the predictions.
    assert not torch.allclose(model(support_x, labels.roll(1), query_x), logits)
    # Each query has its own sequence: with batch norm fixed (eval statistics are the batch's, so freeze them by
    # feeding the same query batch), swapping two queries swaps their logits.
    swapped = model(support_x, labels, query_x[[1, 0, *range(2, 7)]])
    assert torch.allclose(swapped[[1, 0, *range(2, 7)]], logits, atol=1e-10)


def test_a_bad_shift_or_setting_is_refused_in_one_line():
    _, config = registry.load_config(registry.get("maml_universality"), "omniglot_smoke")
    bad = registry.apply_overrides(config, ["eval.shifts={rotate: [0.5]}"])
    with pytest.raises(registry.RegistryError, match="eval.shifts.rotate"):
        shift.check(bad)
    with pytest.raises(registry.RegistryError, match=r"eval.setting \[20, 1\]"):
        shift.check(registry.apply_overrides(config, ["eval.setting=[20, 1]"]))
    with pytest.raises(ValueError, match="shift kind"):
        shift.shifted("rotate", 1.0)




@needs_full
@pytest.mark.parametrize("device", ["cpu", "cuda", "mps"])
def test_omniglot_smoke_run_on_every_available_device(device, tmp_path, capsys, monkeypatch):
    if device not in available_devices():
        pytest.skip(f"no {device} device on this machine")
    folder = _data_folder(tmp_path)
    monkeypatch.setenv(og.BASE_URL_ENV, "http://127.0.0.1:9")  # offline: only the folder can supply data
    code = main(["repro", "run", "maml_universality", "--config", "omniglot_smoke", "--data-dir", str(folder),
                 "--device", device, "--work-dir", str(tmp_path / "runs"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    for name in ("maml", "snail", "metanet"):
        for point in ("none", "shear=0.5", "scale=0.5", "scale=1.5"):
            assert f"{name}_{point}_acc_pct:" in out
        assert (tmp_path / "runs" / "maml_universality" / "omniglot_smoke" / f"omniglot_{name}.pt").exists()


@needs_full
def test_records_summary_and_figure_of_a_miniature_run(tmp_path, monkeypatch):
    out = tmp_path / "results"
    monkeypatch.setattr(shift, "RESULTS_DIR", out)
    monkeypatch.setenv("MLATLAS_DATA_DIR", str(tmp_path))
    _data_folder(tmp_path).rename(tmp_path / "omniglot")
    name, config = registry.load_config(registry.get("maml_universality"), "omniglot_smoke")
    ctx = registry.RunContext(config_name=name, work_dir=tmp_path / "runs", root=Path(__file__).resolve().parents[1],
                              progress=False, command="mlatlas repro run maml_universality --config omniglot_smoke")
    shift.run(config, ctx)
    stems = {p.stem for p in out.glob("*.yaml")}
    assert stems == {f"omniglot_smoke_{m}_{p}" for m in ("maml", "snail", "metanet")
                     for p in ("unshifted", "shear_0p50", "scale_0p50", "scale_1p50")}
    for path in out.glob("*.yaml"):
        record = ResultRecord.model_validate(yaml.safe_load(path.read_text()))
        assert verdict(record).kind == "no paper number"
        assert record.protocol["test_way"] == 5 and record.protocol["test_episodes"] == 2
        assert record.protocol["train_updates"] == 2 and record.protocol["episodes_per_update"] == 2
        assert ("unshifted" in path.stem) == (record.curve is not None)
    sheared = yaml.safe_load((out / "omniglot_smoke_snail_shear_0p50.yaml").read_text())
    assert "shear by 0.5 rad" in sheared["protocol"]["test_shift"]
    table = (out / "omniglot_smoke_summary.md").read_text()
    assert "## Accuracy against shear" in table and "## Accuracy against scale" in table
    assert "| 0.5 |" in table and "| 1.5 |" in table
    assert "drop of MAML − drop of SNAIL (TCML) (paired)" in table
    assert "drop of MAML − drop of MetaNet (paired)" in table
    assert (out / "omniglot_smoke_summary.png").read_bytes()[:4] == b"\x89PNG"
    # A second run finds every job cached and writes the same records without reading the images.
    first = (out / "omniglot_smoke_maml_unshifted.yaml").read_text()
    monkeypatch.setattr(std, "load_standard", lambda *a, **k: pytest.fail("images read although every job is cached"))
    shift.run(config, ctx)
    again = (out / "omniglot_smoke_maml_unshifted.yaml").read_text()
    assert again.split("environment:")[0] == first.split("environment:")[0]
    assert "read back from the run's cache" not in yaml.safe_load(again)["notes"]  # the cached jobs ran here
    # Jobs cached by another commit: the records written from them say where their numbers were computed.
    for cache in (tmp_path / "runs").rglob("omniglot_*.json"):
        cache.write_text(json.dumps({**json.loads(cache.read_text()), "commit": "abc1234"}))
    shift.run(config, ctx)
    notes = yaml.safe_load((out / "omniglot_smoke_maml_unshifted.yaml").read_text())["notes"]
    assert "computed at commit abc1234 and read back" in notes


def test_the_records_describe_the_split_without_reading_images():
    from reproductions.datasets import omniglot_standard

    assert omniglot_standard.described("vinyals_trainval").characters == {"train": 1200, "test": 423}
    assert omniglot_standard.described("vinyals").characters == {"train": 1028, "val": 172, "test": 423}
    assert "1,200 train / 423 test characters" in omniglot_standard.described("vinyals_trainval").describe()
    with pytest.raises(ValueError, match="data.split must be one of"):
        omniglot_standard.described("lake")
    lazy = omniglot_standard.LazyStandardData({"split": "vinyals_trainval"})
    assert lazy.loaded is None and lazy.for_records().characters == {"train": 1200, "test": 423}
