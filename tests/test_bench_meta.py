"""The meta-learning benchmark: implementations agree on the meta-gradient, the core's per-task backward equals
the batch backward, the memory probe and the command run, and the page escapes what it prints. No timing
assertions: the machine is shared."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from mlatlas.outputs.bench_page import goal_line, render_bench_page
from mlatlas.cli import main
from reproductions.bench import meta_bench, peak_memory, workloads
from reproductions.core.functional import adapt, meta_gradient, meta_loss, parameters_of
from reproductions.core.sinusoid import mlp
from reproductions.core.tasks import SinusoidFamily
from reproductions.maml.method import mse

pytest.importorskip("higher", reason="the benchmark compares against higher (pip install -e '.[bench]')")

TINY_SINE = dataclasses.replace(workloads.config_named("sinusoid-1step-2nd"), key="tiny-sine", meta_batch=3)
TINY_CONV = workloads.config_named("conv-2step-2nd-quick")


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("steps", [1, 3])
def test_ours_and_higher_agree_on_the_sinusoid_meta_gradient(steps, first_order):
    config = dataclasses.replace(TINY_SINE, inner_steps=steps, first_order=first_order)
    differences = meta_bench.check_agreement(config, ["ours", "higher"])
    assert differences["ours"] == 0.0
    assert differences["higher"] <= meta_bench.RTOL


@pytest.mark.parametrize("recompute", [False, True])
def test_lean_ours_agrees_with_ours_and_higher_on_the_sinusoid(recompute):
    config = dataclasses.replace(TINY_SINE, inner_steps=2, chunk=2, recompute=recompute)  # chunks of 2, 1
    differences = meta_bench.check_agreement(config, ["ours", "ours-lean", "higher"])
    assert differences["ours-lean"] <= 1e-12 and differences["higher"] <= meta_bench.RTOL


def test_ours_and_higher_agree_on_the_conv_net_with_batch_norm():
    assert meta_bench.check_agreement(TINY_CONV, ["ours", "higher"])["higher"] <= meta_bench.RTOL


def test_agreement_check_catches_a_different_meta_gradient(monkeypatch):
    """higher run first order on a second-order configuration: the check must refuse to time it."""

    def first_order_higher(config, work):
        workloads.with_higher(dataclasses.replace(config, first_order=True), work)

    monkeypatch.setitem(workloads.IMPLEMENTATIONS, "higher", first_order_higher)
    with pytest.raises(meta_bench.DisagreementError, match="higher's meta-gradient differs"):
        meta_bench.check_agreement(TINY_SINE, ["ours", "higher"])


def sine_batch(n=4, k=5):
    return SinusoidFamily().sample(np.random.default_rng(1), n, k, k).to("cpu", torch.float64)


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("only", [None, ["4.weight", "4.bias"]])
def test_meta_gradient_equals_backward_of_the_batch_loss(vectorize, first_order, only):
    torch.manual_seed(0)
    model, batch = mlp(hidden=8).double(), sine_batch()
    expected_loss = meta_loss(model, parameters_of(model), batch, mse, 2, 0.05, first_order, only, vectorize)
    expected_loss.backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    loss = meta_gradient(model, parameters_of(model), batch, mse, 2, 0.05, first_order, only, vectorize)
    torch.testing.assert_close(loss, expected_loss.detach(), rtol=1e-12, atol=0)
    for got, want in zip(model.parameters(), expected):
        torch.testing.assert_close(got.grad, want, rtol=1e-12, atol=1e-15)


def test_meta_gradient_with_learned_step_sizes():
    """Meta-SGD: the per-parameter step sizes receive their meta-gradient too, task by task."""
    torch.manual_seed(0)
    model, batch = mlp(hidden=8).double(), sine_batch()
    lrs = {n: torch.full_like(p, 0.05, requires_grad=True) for n, p in model.named_parameters()}
    meta_loss(model, parameters_of(model), batch, mse, 2, lrs).backward()
    expected = [v.grad.clone() for v in lrs.values()]
    for v in lrs.values():
        v.grad = None
    meta_gradient(model, parameters_of(model), batch, mse, 2, lrs)
    for v, want in zip(lrs.values(), expected):
        torch.testing.assert_close(v.grad, want, rtol=1e-12, atol=1e-15)


def test_adapt_under_no_grad_matches_the_vmapped_path():
    """Evaluation adapts detached weights under no_grad (plain autograd path); vmap takes torch.func's path."""
    torch.manual_seed(0)
    model, batch = mlp(hidden=8).double(), sine_batch()
    params = {n: p.detach() for n, p in parameters_of(model).items()}
    with torch.no_grad():
        looped = [adapt(model, params, (batch.support_x[i], batch.support_y[i]), mse, 3, 0.05)["4.bias"]
                  for i in range(len(batch))]
    mapped = torch.func.vmap(lambda x, y: adapt(model, params, (x, y), mse, 3, 0.05)["4.bias"])(
        batch.support_x, batch.support_y)
    torch.testing.assert_close(torch.stack(looped), mapped, rtol=1e-12, atol=1e-15)
    assert not torch.equal(looped[0], params["4.bias"])  # it did adapt


def test_peak_memory_probe_sees_the_meta_iterations():
    measured = peak_memory.measure("conv-2step-2nd-quick", "ours", iterations=1)
    assert measured["peak_mib"] > 0
    assert measured["baseline_mib"] > measured["peak_mib"]  # the imports alone outweigh this tiny workload


def test_peak_memory_runs_in_a_fresh_process():
    measured = meta_bench.peak_memory(workloads.config_named("conv-2step-2nd-quick"), "higher", runs=1)
    assert measured["impl"] == "higher" and measured["peak_mib_all"] == [measured["peak_mib"]]
    assert measured["peak_mib"] > 0


def test_bench_quick_command_writes_json_and_page(tmp_path, capsys):
    out, page = tmp_path / "bench.json", tmp_path / "bench.md"
    status = main(["bench", "--quick", "--repeats", "1", "--warmup", "1", "--memory-runs", "0", "--no-progress",
                   "--json", str(out), "--markdown", str(page)])
    assert status == 0
    data = json.loads(out.read_text())
    assert [c["key"] for c in data["configs"]] == [c.key for c in workloads.QUICK_CONFIGS]
    for config in data["configs"]:
        rows = {r["impl"]: r for r in config["results"]}
        assert rows["ours"]["time_ratio_to_ours"] == 1.0
        assert rows["higher"]["grad_rel_diff"] <= meta_bench.RTOL
        assert rows["higher"]["seconds_median"] > 0 and "peak_mib" not in rows["higher"]
        if workloads.unavailable("learn2learn"):
            assert rows["learn2learn"] == {"impl": "learn2learn", "available": False,
                                           "reason": workloads.unavailable("learn2learn")}
    sine, conv = ({r["impl"]: r for r in c["results"]} for c in data["configs"])
    assert sine["ours-lean"]["grad_rel_diff"] <= meta_bench.RTOL  # 3 tasks per call, then 1
    assert conv["ours-lean"]["available"] is False and "not applicable" in conv["ours-lean"]["reason"]
    assert data["settings"]["quick"] is True and data["command"].startswith("mlatlas bench --quick")
    printed = capsys.readouterr().out
    assert "| conv-2step-2nd-quick | higher |" in printed
    assert "quick smoke run, not a result" in page.read_text()
    assert "higher needs" in page.read_text() and "the time of ours-lean" in page.read_text()


def test_page_escapes_strings_from_the_results_file(tmp_path):
    data = {
        "command": "mlatlas bench", "commit": "abc", "date": "2026-11-22", "wall_seconds": 1.0,
        "machine": {"cpu": "<script>alert(1)</script>", "logical_cpus": 2, "torch_threads": 1, "os": "Linux"},
        "versions": {"torch": "2.13"}, "load_average_before": [1.0, 1.0, 1.0], "load_average_after": [1, 1, 1],
        "settings": {"quick": False, "repeats": 3, "warmup": 1, "rtol": 1e-6, "timing_dtype": "float32",
                     "round_seconds": 0.5},
        "configs": [{
            "key": "k|x", "description": "d", "ours_strategy": "s", "memory_method": None,
            "load_during_timing": {"min": 1, "median": 2, "max": 3},
            "results": [{"impl": "learn2learn", "available": False, "reason": "No module | named *x*"}],
        }],
    }
    page = render_bench_page(data)
    assert "<script>" not in page and "&#60;script&#62;" in page
    assert "No module &#124; named &#42;x&#42;" in page and "k&#124;x" in page
    data["command"] = "mlatlas bench\n```\n<b>"
    fenced = render_bench_page(data).split("```bash\n", 1)[1].split("\n```", 1)[0]
    assert fenced.splitlines()[-1].startswith("mlatlas bench <b> --json") and "`" not in fenced


def test_render_recorded_results_and_reject_a_broken_file(tmp_path, capsys):
    recorded = tmp_path / "bench.json"
    recorded.write_text("{not json")
    assert main(["bench", "--render", str(recorded)]) == 1
    assert "not a readable `mlatlas bench --json` results file" in capsys.readouterr().err
    recorded.write_text(json.dumps({"configs": []}))  # valid JSON, missing fields
    assert main(["bench", "--render", str(recorded), "--markdown", str(tmp_path / "page.md")]) == 1
    assert not (tmp_path / "page.md").exists()


def test_goal_lines_say_which_variant_meets_the_goal():
    def row(impl, seconds, mib):
        return {"impl": impl, "available": True, "seconds_median": seconds, "peak_mib": mib}

    sine = {"key": "sinusoid-5step-2nd", "family": "sinusoid", "results": [
        row("ours", 0.01, 3.0), row("ours-lean", 0.06, 0.5), row("higher", 0.2, 0.6)]}
    conv = {"key": "conv-1step-2nd", "family": "conv", "results": [row("ours", 1.0, 130.0), row("higher", 0.99, 150.0)]}
    assert goal_line(sine) == ("- sinusoid-5step-2nd (at least 2x faster, memory no higher): ours: 20.00x faster, 5.00x "
                           "the peak memory (misses the goal); ours-lean: 3.33x faster, 0.83x the peak memory "
                           "(meets the goal).")
    assert "ours: 0.99x faster, 0.87x the peak memory (misses the goal)" in goal_line(conv)  # slower than higher
    conv["results"][1]["seconds_median"] = 1.0
    assert "(not slower, memory no higher): ours: 1.00x faster, 0.87x the peak memory (meets the goal)" in goal_line(conv)
    conv["results"] = conv["results"][:1]
    assert goal_line(conv) is None
