"""The MNIST comparison of MetaInit: the MNIST loader (real files, pins, download, IDX parsing), LSUV on real
images, the learning-rate choice and its grid-edge flag, a smoke run on every device and the records it writes."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mlatlas.records import ResultRecord, verdict
from reproductions.core import registry
from reproductions.core.runtime import available_devices
from reproductions.datasets import mnist
from reproductions.metainit import comparison, lsuv, models, report
from tests._omniglot_server import OmniglotTestServer

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "mnist"
needs_mnist = pytest.mark.skipif(not (SHARED / "t10k-images-idx3-ubyte.gz").is_file(),
                                 reason=f"the MNIST files are not at {SHARED}")


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# ----------------------------------------------------------------------------------------------------- loader


@needs_mnist
def test_loader_reads_the_official_files():
    images, labels = mnist.load("test", SHARED)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    # The published class counts of the test set.
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    train_images, train_labels = mnist.load("train", SHARED)
    assert train_images.shape == (60000, 28, 28) and np.bincount(train_labels)[1] == 6742
    assert train_images.max() == 255 and train_images.min() == 0


@needs_mnist
def test_loader_rejects_a_changed_byte_and_a_wrong_size(tmp_path):
    name = "t10k-labels-idx1-ubyte.gz"
    data = bytearray((SHARED / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (tmp_path / name).write_bytes(bytes(data))
    with pytest.raises(mnist.MnistDataError, match=f"{name}: MD5 .* does not match the published"):
        mnist.fetch(name, tmp_path)
    (tmp_path / name).write_bytes(bytes(data[:-1]))
    with pytest.raises(mnist.MnistDataError, match="4,541 bytes where the official file has 4,542"):
        mnist.fetch(name, tmp_path)
    shutil.copy(SHARED / name, tmp_path / name)
    assert mnist.fetch(name, tmp_path) == tmp_path / name


def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("MLATLAS_DATA_DIR", str(tmp_path / "env"))
    assert mnist.resolve_data_dir(tmp_path / "flag") == tmp_path / "flag"
    assert mnist.resolve_data_dir(None) == tmp_path / "env" / "mnist"


@needs_mnist
def test_download_verifies_and_refuses_a_corrupted_copy(tmp_path):
    name = "t10k-labels-idx1-ubyte.gz"
    server = OmniglotTestServer({name: (SHARED / name).read_bytes()})
    with server:
        path = mnist.fetch(name, tmp_path / "good", base_url=f"{server.url}/good", progress=False)
        assert path.read_bytes() == (SHARED / name).read_bytes()
        with pytest.raises(mnist.MnistDataError, match="failed verification"):
            mnist.fetch(name, tmp_path / "bad", base_url=f"{server.url}/corrupt", progress=False)
    assert not (tmp_path / "bad" / name).exists() and not (tmp_path / "bad" / f"{name}.part").exists()


def test_download_failure_is_one_clear_error(tmp_path):
    server = OmniglotTestServer({})
    with server, pytest.raises(mnist.MnistDataError, match="could not download .* Put the official file in"):
        mnist.fetch("t10k-labels-idx1-ubyte.gz", tmp_path, base_url=f"{server.url}/good", progress=False, retries=0)


def test_idx_reader_checks_magic_and_length(tmp_path):
    good = tmp_path / "labels.gz"
    with gzip.open(good, "wb") as fh:
        fh.write(struct.pack(">II", mnist.LABEL_MAGIC, 3) + bytes([7, 0, 9]))
    assert mnist.read_idx(good, mnist.LABEL_MAGIC).tolist() == [7, 0, 9]
    with pytest.raises(mnist.MnistDataError, match="magic number 2051"):
        mnist.read_idx(good, mnist.IMAGE_MAGIC)
    short = tmp_path / "short.gz"
    with gzip.open(short, "wb") as fh:
        fh.write(struct.pack(">II", mnist.LABEL_MAGIC, 5) + bytes([1, 2]))
    with pytest.raises(mnist.MnistDataError, match="announces shape"):
        mnist.read_idx(short, mnist.LABEL_MAGIC)
    (tmp_path / "plain").write_bytes(b"not gzip")
    with pytest.raises(mnist.MnistDataError, match="not a readable gzip"):
        mnist.read_idx(tmp_path / "plain", mnist.LABEL_MAGIC)


# ------------------------------------------------------------------------------------------------------- LSUV


@needs_mnist
def test_lsuv_gives_unit_variance_pre_activations_on_real_images():
    images, _ = mnist.load("test", SHARED)
    x = torch.from_numpy((images.astype(np.float32) - 33.3) / 78.6)[:, None]  # roughly standardised pixels
    model = models.plain_mlp((1, 28, 28), 10, depth=12, width=48, activation="relu")
    models.scaled_fan_in_init_(model, "relu", 0.3)  # badly scaled to start with: signals vanish
    assert lsuv.output_variances(model, x[:500])[-1] < 1e-3
    after = lsuv.lsuv_(model, x[:500], tol=0.02, generator=torch.Generator().manual_seed(0))
    assert len(after) == 12 and all(abs(v - 1) < 0.02 for v in after)
    # On other images from the same distribution the variances stay near one (what the method is for).
    assert all(abs(v - 1) < 0.25 for v in lsuv.output_variances(model, x[5000:6000]))
    # Only the scale changes after the orthonormal start: each weight matrix has orthogonal rows of one length.
    for layer in lsuv.layers(model):
        gram = layer.weight @ layer.weight.T if layer.weight.shape[0] <= layer.weight.shape[1] else \
            layer.weight.T @ layer.weight
        assert torch.allclose(gram, gram.diagonal().mean() * torch.eye(len(gram)), atol=1e-4)
        assert torch.all(layer.bias == 0)


def test_lsuv_refuses_a_model_without_layers():
    with pytest.raises(ValueError, match="no linear or convolution layer"):
        lsuv.lsuv_(torch.nn.ReLU(), torch.randn(4, 3))


# ----------------------------------------------------------------------------------------- learning-rate choice


def _run(lr: float, val: float, diverged: bool = False) -> comparison.RunResult:
    return comparison.RunResult("standard", lr, 0, val, val, 1.0, 1.0, diverged, 1.0)


def test_chosen_learning_rate_skips_diverged_runs_and_flags_grid_edges():
    runs = [_run(0.01, 20.0), _run(0.1, 10.0), _run(1.0, 100.0, diverged=True)]
    assert comparison.chosen_lr(runs) == 0.1
    assert comparison.lr_edge([0.01, 0.1, 1.0], 0.1) is None
    assert comparison.chosen_lr([_run(0.01, 20.0), _run(0.1, 30.0)]) == 0.01
    assert comparison.lr_edge([0.01, 0.1], 0.01) == "learning rate 0.01 is at the lower end of the grid [0.01, 0.1]"
    assert "upper end" in comparison.lr_edge([0.01, 0.1], 0.1)
    assert comparison.chosen_lr([_run(0.1, 100.0, diverged=True)]) is None


# --------------------------------------------------------------------------------------- smoke and records


def smoke_config() -> dict:
    config = registry.load_config(registry.get("metainit"), "smoke_mnist")[1]
    config["data"]["data_dir"] = str(SHARED)
    return config


@needs_mnist
@pytest.mark.parametrize("device", ["cpu", "cuda", "mps"])
def test_mnist_smoke_run_on_every_available_device(device, tmp_path):
    if device not in available_devices():
        pytest.skip(f"no {device.upper()} device on this machine; the same smoke run is checked on the CPU")
    config = smoke_config()
    ctx = registry.RunContext(config_name="smoke_mnist", device=device, work_dir=tmp_path, root=ROOT,
                              command="mlatlas repro run metainit --config smoke_mnist", progress=False)
    results, used = comparison.run_all(config, ctx)
    assert used.startswith(device)
    for cond in comparison.CONDITIONS:
        res = results[cond]
        assert [r.lr for r in res["tuning"]] == config["lr_grid"]
        assert res["lr"] in config["lr_grid"] and len(res["final"]) == config["seeds"]
        assert [r.seed for r in res["final"]] == [0, 1]
        assert all(0 <= r.test_error <= 100 and len(r.curve) == 1 for r in res["final"])
    # LSUV's pre-activations start near unit variance on validation images; the standard draw's need not.
    assert all(abs(v - 1) < 0.5 for v in results["lsuv"]["final"][0].preact_var)
    # MetaInit starts from the standard draw of the same seed, then changes it.
    assert results["metainit"]["final"][0].gq_init != results["standard"]["final"][0].gq_init


@needs_mnist
def test_mnist_records_validate_and_say_how_they_were_measured(tmp_path):
    config = smoke_config()
    ctx = registry.RunContext(config_name="mnist", work_dir=tmp_path / "runs", root=ROOT,
                              command="mlatlas repro run metainit --config mnist", progress=False)
    results, device = comparison.run_all(config, ctx)
    # A diverged seed counts in the mean, and the record says so.
    broken = results["lsuv"]["final"][1]
    broken.diverged, broken.test_error = True, 90.0
    written = report.write_comparison(config, ctx, results, device, results_dir=tmp_path / "results")
    assert len(written) == 4 and written[-1].name == "mnist_summary.md"
    for cond in comparison.CONDITIONS:
        record = ResultRecord.model_validate(yaml.safe_load((tmp_path / "results" / f"mnist_{cond}.yaml").read_text()))
        finals = [r.test_error for r in results[cond]["final"]]
        assert record.value == pytest.approx(np.mean(finals), abs=0.01) and record.n_seeds == 2
        assert record.protocol["seeds"] == 2 and "MNIST" in record.protocol["data"]
        assert verdict(record).kind == "no paper number"
        assert "chosen on validation error" in record.notes
    lsuv_notes = yaml.safe_load((tmp_path / "results" / "mnist_lsuv.yaml").read_text())["notes"]
    assert "1 of 2 seeds diverged" in lsuv_notes and "included in the mean" in lsuv_notes
    assert "diverged, included" in (tmp_path / "results" / "mnist_summary.md").read_text()
