"""L2G (reproductions/l2g): its meta-gradient against finite differences in float64, its two reductions to the plain
learner, the split of a draw into two episodes over disjoint classes, the paired verdict, and a smoke run of the whole
pipeline on every available device."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlatlas.cli import main
from reproductions.core.runtime import available_devices
from reproductions.datasets import omniglot as og
from reproductions.datasets import omniglot_standard as std
from reproductions.datasets.omniglot_benchmark import Episode, conv4
from reproductions.l2g import claim_verdict
from reproductions.l2g.method import L2G, split_episode
from reproductions.prototypical_networks.method import PrototypicalNetworks
from reproductions.relation_network.method import RelationNet, RelationNetwork


class TinyProto(PrototypicalNetworks):
    """Prototypical Networks on a small MLP embedding, so that finite differences over every parameter are cheap."""

    def build(self, config: dict) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.Tanh(), nn.Linear(6, 3))


def draw(n_way: int, k_shot: int, n_query: int, size: int, seed: int, dtype=torch.float64) -> Episode:
    g = torch.Generator().manual_seed(seed)
    sy = torch.arange(n_way).repeat_interleave(k_shot)
    qy = torch.arange(n_way).repeat_interleave(n_query)
    centres = torch.randn(n_way, 1, size, size, generator=g, dtype=dtype)
    sx = centres[sy] + 0.5 * torch.randn(len(sy), 1, size, size, generator=g, dtype=dtype)
    qx = centres[qy] + 0.5 * torch.randn(len(qy), 1, size, size, generator=g, dtype=dtype)
    return Episode(sx, sy, qx, qy, n_way, k_shot)


def flat_grad(method, model, episode) -> torch.Tensor:
    model.zero_grad()
    method.loss(model, episode).backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def loss_at(method, model, episode, flat: torch.Tensor) -> float:
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(flat, model.parameters())
        return float(method.loss(model, episode))


def test_split_gives_two_episodes_over_disjoint_classes():
    ep = draw(6, 2, 3, 4, seed=0)
    seen, unseen = split_episode(ep)
    assert seen.n_way == unseen.n_way == 3
    assert torch.equal(seen.support_y, torch.tensor([0, 0, 1, 1, 2, 2]))
    assert torch.equal(unseen.query_y, torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2]))
    assert torch.equal(seen.support_x, ep.support_x[:6]) and torch.equal(unseen.support_x, ep.support_x[6:])
    assert torch.equal(unseen.query_x, ep.query_x[9:])
    with pytest.raises(ValueError, match="n_way=5 is odd"):
        split_episode(draw(5, 1, 1, 4, seed=0))


def test_meta_gradient_matches_finite_differences_float64():
    torch.manual_seed(0)
    l2g = L2G(TinyProto(), weight=0.7, inner_lr=0.5)
    model = l2g.build({}).double()
    ep = draw(6, 2, 3, 4, seed=1)
    analytic = flat_grad(l2g, model, ep)
    theta = torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()
    eps = 1e-6
    # Every parameter of the first layer's weight row and bias, and of the head, coordinate by coordinate.
    coords = [*range(16), *range(96, 102), *range(theta.numel() - 21, theta.numel())]
    for i in coords:
        e = torch.zeros_like(theta)
        e[i] = eps
        numeric = (loss_at(l2g, model, ep, theta + e) - loss_at(l2g, model, ep, theta - e)) / (2 * eps)
        assert abs(float(analytic[i]) - numeric) <= 1e-7 + 1e-5 * abs(numeric), (i, float(analytic[i]), numeric)
    # The second-order term is there: the first-order gradient is different.
    torch.nn.utils.vector_to_parameters(theta, model.parameters())
    first = flat_grad(L2G(TinyProto(), 0.7, 0.5, first_order=True), model, ep)
    assert (first - analytic).abs().max() > 1e-4


def kink_pattern(method, model, episode, flat: torch.Tensor) -> list[torch.Tensor]:
    """Which side of every kink each forward pass of the L2G loss at ``flat`` is on: the sign of every ReLU input and
    the arg-max of every max-pooling window, in call order (the inner step's passes included)."""
    seen: list[torch.Tensor] = []

    def relu(module, inputs, output):
        seen.append(inputs[0].detach() > 0)

    def pool(module, inputs, output):
        seen.append(F.max_pool2d(inputs[0].detach(), module.kernel_size, return_indices=True)[1])

    hooks = [m.register_forward_hook(relu if isinstance(m, nn.ReLU) else pool)
             for m in model.modules() if isinstance(m, nn.ReLU | nn.MaxPool2d)]
    try:
        loss_at(method, model, episode, flat)
    finally:
        for h in hooks:
            h.remove()
    return seen


def same_pattern(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("base", ["proto_conv4", "relation"])
def test_meta_gradient_directional_finite_differences_with_batch_norm(base):
    """The real embeddings (batch norm in training mode, ReLU, max-pooling) along random directions.

    The L2G loss is smooth only between kinks: a ReLU input or a max-pooling winner that changes between the
    evaluations makes the inner step's gradient jump, and with it the stepped parameters and the unseen episode's
    loss. With ``eps = 1e-5`` along an unnormalised direction some of the ~70,000 units of these passes cross a kink
    (up to a few hundred at 1e-4), which is what made this check fail before; wherever no unit crosses, the
    analytic derivative and the float64 central difference agree to ~1e-8. So the difference is taken at the largest
    ``eps`` for which every pass at ``theta +- eps v`` is on the same side of every kink as at ``theta``.
    """
    torch.manual_seed(1)
    if base == "proto_conv4":
        method, model = PrototypicalNetworks(), conv4(3).double()
    else:
        method, model = RelationNetwork(), RelationNet(channels=3, hidden=4).double()
    l2g = L2G(method, weight=1.0, inner_lr=0.1)
    ep = draw(4, 1, 2, 28, seed=2)
    analytic = flat_grad(l2g, model, ep)
    theta = torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()
    at_theta = kink_pattern(l2g, model, ep, theta)
    g = torch.Generator().manual_seed(3)
    for _ in range(2):
        v = torch.randn(theta.shape, generator=g, dtype=torch.float64)
        eps = next((e for e in (1e-5, 1e-6, 1e-7, 1e-8, 1e-9)
                    if same_pattern(kink_pattern(l2g, model, ep, theta + e * v), at_theta)
                    and same_pattern(kink_pattern(l2g, model, ep, theta - e * v), at_theta)), None)
        assert eps is not None, "every eps down to 1e-9 crosses a ReLU or max-pooling kink"
        numeric = (loss_at(l2g, model, ep, theta + eps * v) - loss_at(l2g, model, ep, theta - eps * v)) / (2 * eps)
        assert abs(float(analytic @ v) - numeric) <= 1e-6 * max(1.0, abs(numeric)), (eps, float(analytic @ v), numeric)


def test_weight_zero_is_the_plain_learner_on_the_first_episode():
    torch.manual_seed(2)
    base = TinyProto()
    model = base.build({}).double()
    ep = draw(6, 1, 2, 4, seed=4)
    seen, _ = split_episode(ep)
    torch.testing.assert_close(flat_grad(L2G(base, 0.0, 0.5), model, ep), flat_grad(base, model, seen),
                               rtol=0, atol=0)


def test_inner_lr_zero_is_the_plain_learner_on_both_episodes():
    torch.manual_seed(3)
    base = TinyProto()
    model = base.build({}).double()
    ep = draw(6, 1, 2, 4, seed=5)
    seen, unseen = split_episode(ep)
    plain = flat_grad(base, model, seen) + 0.7 * flat_grad(base, model, unseen)
    torch.testing.assert_close(flat_grad(L2G(base, 0.7, 0.0), model, ep), plain)
    # ...and the bilevel step with a tiny step size tends to it.
    torch.testing.assert_close(flat_grad(L2G(base, 0.7, 1e-9), model, ep), plain, rtol=1e-6, atol=1e-8)


def test_claim_verdict():
    assert claim_verdict(1.0, 0.5) == "holds"
    assert claim_verdict(1.0, 1.5).startswith("not shown")
    assert claim_verdict(-1.0, 0.5).startswith("does not hold")


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot"
FULL = ["images_background.zip", "images_evaluation.zip"]
SPLIT_DIR = SHARED / "splits" / "vinyals"


@pytest.mark.skipif(not all((SHARED / n).exists() for n in FULL) or not SPLIT_DIR.is_dir(),
                    reason=f"the full Omniglot archives and the Vinyals split are not in {SHARED}")
@pytest.mark.parametrize("config", ["smoke", "relation_smoke"])
@pytest.mark.parametrize("device", ["cpu", "cuda", "mps"])
def test_smoke_run_on_every_available_device(device, config, tmp_path, capsys, monkeypatch):
    if device not in available_devices():
        pytest.skip(f"no {device} device on this machine")
    folder = tmp_path / "data"
    (folder / "splits" / "vinyals").mkdir(parents=True)
    for archive in FULL:
        shutil.copy(SHARED / archive, folder / archive)
    for part in std.SPLIT_SHA256:
        shutil.copy(SPLIT_DIR / f"{part}.txt", folder / "splits" / "vinyals" / f"{part}.txt")
    monkeypatch.setenv(og.BASE_URL_ENV, "http://127.0.0.1:9")  # offline: only the folder can supply data
    results = Path(__file__).resolve().parents[1] / "reproductions" / "l2g" / "results"
    before = sorted(results.glob("*")) if results.is_dir() else []
    code = main(["repro", "run", "l2g", "--config", config, "--data-dir", str(folder), "--device", device,
                 "--work-dir", str(tmp_path / "runs"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    # A smoke run is not a result: it writes no record into the checkout.
    assert (sorted(results.glob("*")) if results.is_dir() else []) == before
    for key in ("plain_5way1shot_acc_pct", "l2g_5way1shot_acc_pct", "gain_5way1shot_pct"):
        assert f"{key}:" in out
    for variant in ("plain", "l2g"):
        for seed in (0, 1):
            assert (tmp_path / "runs" / "l2g" / config / f"{variant}_seed{seed}.pt").exists()
    gain = float(out.split("gain_5way1shot_pct:")[1].split()[0])
    plain = float(out.split("plain_5way1shot_acc_pct:")[1].split()[0])
    l2g = float(out.split("l2g_5way1shot_acc_pct:")[1].split()[0])
    assert np.isclose(gain, l2g - plain, atol=0.01)
