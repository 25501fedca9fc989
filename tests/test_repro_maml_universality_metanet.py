"""maml_universality, the MetaNet baseline of the Omniglot shear/scale experiment (``metanet.py``), on real Omniglot
drawings: the meta information is each support example's own loss gradient; the fast weights come from it; the
support labels are read through the class-indexed structure only (relabelling the support set relabels the
predictions once the class-indexed slow weights follow); no query reads another; every slow parameter and every
generator gets a meta-gradient, equal to central finite differences in float64 (meta information held fixed: it is
first order, as in MetaNet); a few dozen meta-iterations on a small real subset learn; the summary compares each
recurrent learner with MAML; a smoke run on every available device writes no record."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _data import OMNIGLOT, standard_omniglot_folder as _data_folder
from _data import FULL_ARCHIVES, VINYALS_SPLITS
from mlatlas.cli import main
from reproductions.core import registry
from reproductions.core.runtime import available_devices
from reproductions.core.tasks import EpisodeSampler
from reproductions.datasets import omniglot as og
from reproductions.datasets.omniglot_benchmark import Pool, make_episode
from reproductions.maml_universality import omniglot as shift
from reproductions.maml_universality.metanet import MetaNetClassifier, log_and_sign
from reproductions.maml_universality.omniglot import SupportSetReader, metanet_of

ROOT = Path(__file__).resolve().parents[1]
SMALL = OMNIGLOT / "images_background_small1.zip"
needs_small = pytest.mark.skipif(not SMALL.exists(), reason=f"{SMALL} is absent (../shared/data/omniglot)")
needs_full = pytest.mark.skipif(not all((OMNIGLOT / n).exists() for n in FULL_ARCHIVES) or not VINYALS_SPLITS.is_dir(),
                                reason=f"the full Omniglot archives and the Vinyals split are not in {OMNIGLOT}")


@pytest.fixture(scope="module")
def characters() -> torch.Tensor:
    """The drawings of images_background_small1: [characters, 20, 28, 28], ink 1."""
    return torch.from_numpy(np.ascontiguousarray(og.load_images(SMALL.name, OMNIGLOT).images))


def episode(characters: torch.Tensor, chars: list[int], queries: int = 3, dtype=torch.float64):
    """A 5-way 1-shot episode of real drawings: support = drawing 0 of each character, queries = the next ones."""
    sx = characters[chars, 0].unsqueeze(1).to(dtype)
    qx = characters[chars, 1:1 + queries].reshape(-1, 1, 28, 28).to(dtype)
    return sx, torch.arange(len(chars)), qx, torch.arange(len(chars)).repeat_interleave(queries)


def tiny(seed: int = 0) -> MetaNetClassifier:
    torch.manual_seed(seed)
    return MetaNetClassifier(5, channels=4, hidden=6, key=3, generator_hidden=4).double()


def test_log_and_sign_keeps_magnitude_and_sign_apart():
    g = torch.tensor([0.5, -2.0, 1e-5, -1e-5, 0.0], dtype=torch.float64)
    out = log_and_sign(g, k=7.0)
    assert out.shape == (5, 2)
    assert torch.allclose(out[0], torch.tensor([np.log(0.5) / 7, 1.0], dtype=torch.float64))
    assert torch.allclose(out[1], torch.tensor([np.log(2.0) / 7, -1.0], dtype=torch.float64))
    # below e^-7 (~9e-4): (-1, e^7 g), continuous in g and odd in its second feature
    assert torch.allclose(out[2], torch.tensor([-1.0, 1e-5 * np.exp(7)], dtype=torch.float64))
    assert torch.allclose(out[3], -out[2] * torch.tensor([-1.0, 1.0], dtype=torch.float64))
    assert out[4].tolist() == [-1.0, 0.0]


@needs_small
def test_meta_information_is_each_support_examples_own_loss_gradient(characters):
    """Against a per-example loop: example i's loss alone, through the model's own layers, differentiated by
    autograd with respect to the layer's weight matrix."""
    model = tiny()
    sx, sy, qx, _ = episode(characters, [3, 17, 40, 41, 90])
    f_s, g_s, _, _ = model.trunks(sx, qx)
    grads = model.support_gradients(f_s, g_s, sy)
    assert not any(t.requires_grad for t in grads.values())  # first order: inputs, not part of the graph
    for i in range(5):
        f, g, y = f_s[i:i + 1].detach(), g_s[i:i + 1].detach(), sy[i:i + 1]
        rep_loss = F.cross_entropy(F.relu(model.rep(g)) @ model.rep_readout.T, y)
        (dq,) = torch.autograd.grad(rep_loss, [model.rep.weight])
        base_loss = F.cross_entropy(model.base_out(F.relu(model.base_hidden(f))), y)
        dw1, dw2 = torch.autograd.grad(base_loss, [model.base_hidden.weight, model.base_out.weight])
        assert torch.allclose(grads["rep"][i], dq, atol=1e-12)
        assert torch.allclose(grads["base_hidden"][i], dw1, atol=1e-12)
        assert torch.allclose(grads["base_out"][i], dw2, atol=1e-12)
        assert dw2.abs().sum() > 0 and dq.abs().sum() > 0
    meta = model.meta_info(f_s, g_s, sy)
    assert meta["base_out"].shape == (5, 5, 6, 2) and meta["rep"].shape == (5, 3, 4, 2)


@needs_small
def test_the_fast_weights_come_from_the_support_gradients(characters):
    model = tiny()
    sx, sy, qx, _ = episode(characters, [3, 17, 40, 41, 90])
    logits = model(sx, sy, qx)
    f_s, g_s, f_q, g_q = model.trunks(sx, qx)
    meta = model.meta_info(f_s, g_s, sy)
    assert torch.allclose(model.head(g_s, f_q, g_q, meta), logits, atol=1e-12)
    for name in meta:  # zeroing the input of each generator changes the queries' logits
        zeroed = {**meta, name: torch.zeros_like(meta[name])}
        assert not torch.allclose(model.head(g_s, f_q, g_q, zeroed), logits, atol=1e-6), name
    # The example-level memory holds one set of fast weights per support example, each from its own gradient:
    # changing example 2's label changes only its entry.
    relabelled = sy.clone()
    relabelled[2] = 4
    before = model.example_fast_weights(meta)
    after = model.example_fast_weights(model.meta_info(f_s, g_s, relabelled))
    for b, a in zip(before, after):
        assert torch.allclose(b[[0, 1, 3, 4]], a[[0, 1, 3, 4]]) and not torch.allclose(b[2], a[2])


@needs_small
def test_the_support_labels_are_read_through_the_class_indexed_structure_only(characters):
    """Relabelling the support set by a permutation, with the class-indexed slow weights (output layer rows and
    biases, the representation loss's read-out rows) permuted alike, permutes the logits' columns exactly: the
    labels enter only as class identities. With the slow weights left alone the logits change."""
    model = tiny()
    sx, sy, qx, _ = episode(characters, [5, 33, 60, 77, 120])
    logits = model(sx, sy, qx)
    perm = torch.tensor([2, 0, 4, 1, 3])  # class c becomes perm[c]
    changed = model(sx, perm[sy], qx)
    assert not torch.allclose(changed, logits, atol=1e-6)
    inverse = torch.argsort(perm)
    with torch.no_grad():
        model.base_out.weight.copy_(model.base_out.weight[inverse])
        model.base_out.bias.copy_(model.base_out.bias[inverse])
        model.rep_readout.copy_(model.rep_readout[inverse])
    relabelled = model(sx, perm[sy], qx)
    assert torch.allclose(relabelled[:, perm], logits, atol=1e-10)


@needs_small
def test_no_query_reads_another_query(characters):
    model = tiny()
    sx, sy, qx, _ = episode(characters, [3, 17, 40, 41, 90])
    f_s, g_s, f_q, g_q = model.trunks(sx, qx)
    meta = model.meta_info(f_s, g_s, sy)
    logits = model.head(g_s, f_q, g_q, meta)
    # After the trunks each query is classified on its own: change every other query's features, query 4 keeps
    # its logits exactly.
    others = torch.arange(len(qx)) != 4
    f2, g2 = f_q.clone(), g_q.clone()
    f2[others], g2[others] = torch.randn_like(f2[others]), torch.randn_like(g2[others])
    assert torch.allclose(model.head(g_s, f2, g2, meta)[4], logits[4], atol=1e-12)
    assert not torch.allclose(model.head(g_s, f2, g2, meta)[others], logits[others], atol=1e-6)
    # Whole model (the query batch's normalisation statistics, as for the other learners, are the only shared
    # part): reordering the queries reorders their logits.
    order = torch.randperm(len(qx))
    assert torch.allclose(model(sx, sy, qx[order]), model(sx, sy, qx)[order], atol=1e-10)


@needs_small
def test_every_slow_parameter_and_every_generator_gets_a_meta_gradient(characters):
    torch.manual_seed(0)
    model = MetaNetClassifier(5, channels=8, hidden=8, key=4, generator_hidden=4)
    sx, sy, qx, qy = episode(characters, [3, 17, 40, 41, 90], dtype=torch.float32)
    F.cross_entropy(model(sx, sy, qx), qy).backward()
    names = {n for n, _ in model.named_parameters()}
    assert any(n.startswith("d.") for n in names) and any(n.startswith("m_out.") for n in names)
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@needs_small
def test_meta_gradient_matches_central_finite_differences_in_float64(characters):
    """The meta-gradient of the query loss with respect to every parameter tensor (a few coordinates each),
    against central differences of the same loss with the meta information held at its value (first order: the
    gradients are inputs of the generators, not differentiated through)."""
    model = tiny(1)
    sx, sy, qx, qy = episode(characters, [8, 19, 44, 70, 101], queries=2)
    f_s, g_s, _, _ = model.trunks(sx, qx)
    meta = {k: v.detach() for k, v in model.meta_info(f_s, g_s, sy).items()}

    def loss() -> torch.Tensor:
        return F.cross_entropy(model(sx, sy, qx, meta=meta), qy)

    model.zero_grad()
    loss().backward()
    rng = np.random.default_rng(0)
    eps, checked = 1e-6, 0
    for name, p in model.named_parameters():
        flat, grad = p.data.view(-1), p.grad.view(-1)
        for idx in rng.choice(flat.numel(), size=min(3, flat.numel()), replace=False):
            old = flat[idx].item()
            with torch.no_grad():
                flat[idx] = old + eps
                up = loss().item()
                flat[idx] = old - eps
                down = loss().item()
                flat[idx] = old
            fd = (up - down) / (2 * eps)
            assert grad[idx].item() == pytest.approx(fd, rel=1e-5, abs=1e-8), (name, int(idx))
            checked += 1
    assert checked > 50


@needs_small
def test_a_few_dozen_meta_iterations_learn_on_real_omniglot(characters):
    """60 meta-iterations of 8 episodes on 96 characters of images_background_small1, tested on 5-way 1-shot
    episodes of the other 40 characters: from chance to well above it; the trained learner's predictions follow
    a relabelling of the support set."""
    torch.set_num_threads(1)

    def pool(chars: torch.Tensor) -> Pool:
        return Pool(chars.reshape(-1, 1, 28, 28), np.repeat(np.arange(len(chars)), chars.shape[1]))

    train, test = pool(characters[:96]), pool(characters[96:136])
    method = SupportSetReader(metanet_of)
    torch.manual_seed(0)
    model = method.build({"method": {"channels": 32, "hidden": 32, "key": 16, "generator_hidden": 10},
                          "train": {"n_way": 5, "k_shot": 1}})

    def accuracy(permute: bool = False) -> float:
        sampler = EpisodeSampler(test.labels, 5, 1, 3, np.random.default_rng(1))
        perm = torch.tensor([3, 4, 0, 2, 1])
        model.eval()
        hits = []
        with torch.no_grad():
            for _ in range(40):
                ep = make_episode(test, sampler, "cpu")
                if permute:  # the relabelled support set: is each query's prediction the relabelled one?
                    plain = method.scores(model, ep).argmax(1)
                    ep.support_y = perm[ep.support_y]
                    hits.append((method.scores(model, ep).argmax(1) == perm[plain]).float().mean().item())
                else:
                    hits.append((method.scores(model, ep).argmax(1) == ep.query_y).float().mean().item())
        return 100 * float(np.mean(hits))

    before = accuracy()
    sampler = EpisodeSampler(train.labels, 5, 1, 1, np.random.default_rng(0))
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(60):
        model.train()
        for _ in range(8):
            (method.loss(model, make_episode(train, sampler, "cpu")) / 8).backward()
        optimizer.step()
        optimizer.zero_grad()
    after = accuracy()
    assert before < 30 and after > 40, (before, after)
    assert accuracy(permute=True) > 70


def test_the_summary_compares_each_recurrent_learner_with_maml():
    """Three learners: one paired drop-difference column per recurrent learner, against MAML, equal to the mean of
    the per-episode differences; two learners (the 300-iteration config): the single column and its sentence."""
    _, config = registry.load_config(registry.get("maml_universality"), "omniglot_smoke")
    rng = np.random.default_rng(0)

    def result() -> dict:
        return {"eval": {shift.key(k, v): rng.uniform(20, 100, 2).tolist() for k, v in shift.points(config)},
                "parameters": 1, "seconds": 1.0, "eval_seconds": 1.0}

    results = {name: result() for name in config["methods"]}
    assert shift.comparisons(config) == ("maml", ["snail", "metanet"])
    text, png = shift.summary(config, results)
    assert png[:4] == b"\x89PNG"
    header = next(line for line in text.splitlines() if line.startswith("| scale factor"))
    assert header.endswith("| drop of MAML − drop of SNAIL (TCML) (paired) "
                           "| drop of MAML − drop of MetaNet (paired) |")
    row = next(line for line in text.splitlines() if line.startswith("| 1.5 |")).strip("| ").split(" | ")
    for cell, other in zip(row[4:], ("snail", "metanet")):
        drop = lambda n: np.subtract(results[n]["eval"]["none"], results[n]["eval"]["scale=1.5"])  # noqa: E731
        assert float(cell.split(" ± ")[0]) == pytest.approx(np.mean(drop("maml") - drop(other)), abs=0.051)
    _, two = registry.load_config(registry.get("maml_universality"), "omniglot")
    assert shift.comparisons(two) == ("maml", ["snail"])
    two = {**config, "methods": two["methods"]}
    text, _ = shift.summary(two, {n: results[n] for n in two["methods"]})
    assert "| drop of MAML − drop of SNAIL (TCML) (paired) |" in text and "MetaNet" not in text
    assert "A negative last column means MAML loses less accuracy than SNAIL (TCML)" in text


def _results_files() -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in ROOT.glob("reproductions/*/results/**/*") if p.is_file()}


@needs_full
@pytest.mark.parametrize("device", ["cpu", "cuda", "mps"])
def test_metanet_smoke_run_on_every_available_device(device, tmp_path, capsys, monkeypatch):
    if device not in available_devices():
        pytest.skip(f"no {device} device on this machine")
    folder = _data_folder(tmp_path)
    monkeypatch.setenv(og.BASE_URL_ENV, "http://127.0.0.1:9")  # offline: only the folder can supply data
    before = _results_files()
    code = main(["repro", "run", "maml_universality", "--config", "omniglot_smoke", "--data-dir", str(folder),
                 "--device", device, "--work-dir", str(tmp_path / "runs"), "--no-progress",
                 "--set", "run_methods=[metanet]"])
    out = capsys.readouterr().out
    assert code == 0, out
    for point in ("none", "shear=0.5", "scale=0.5", "scale=1.5"):
        assert f"metanet_{point}_acc_pct:" in out
    assert "maml_none" not in out and "snail_none" not in out
    work = tmp_path / "runs" / "maml_universality" / "omniglot_smoke"
    assert (work / "omniglot_metanet.pt").exists() and len(list(work.glob("omniglot_metanet_*.json"))) == 1
    assert _results_files() == before  # nothing written into any reproduction's results/
