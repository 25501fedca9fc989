"""Time to accuracy: our Prototypical Networks against easyfsl's, side by side, on the standard Omniglot protocol.

Both learners get the same 4-block backbone with the same initial weights, the same Adam optimiser, the same
training episodes (60-way 1-shot, 5 queries per class, drawn once from one seeded sampler over the 1,200 training
characters x4 rotations) and are checked on the same fixed 5-way 1-shot test episodes every ``--check-every``
training episodes. The clock counts training only (episode assembly, forward, backward, optimiser step), not the
checks. A learner stops when its checked accuracy reaches ``--target`` (98% by default) or after ``--max-episodes``.

What differs is only the implementation: ours is ``reproductions.prototypical_networks`` as the reproduction runs it
(squared Euclidean distance, the backbone in channels_last on the CPU); easyfsl 1.5.0's ``PrototypicalNetworks``
scores queries by the negative (not squared) Euclidean distance, as its code does, in the default memory layout.

Needs the peer, which the project does not install::

    pip install easyfsl==1.5.0 torchvision==0.28.0      # torchvision pinned, or pip pulls another torch
    python benchmarks/protonet_vs_easyfsl.py --data-dir FOLDER    # or MLATLAS_DATA_DIR; writes benchmarks/results/
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from reproductions.core.recording import git_commit, hardware_description, library_versions
from reproductions.core.tasks import EpisodeSampler
from reproductions.datasets.omniglot_benchmark import Episode, conv4, make_episode
from reproductions.datasets.omniglot_standard import load_standard
from reproductions.prototypical_networks.method import PrototypicalNetworks

ROOT = Path(__file__).resolve().parents[1]


def ours(backbone: torch.nn.Module):
    """(model, loss(episode), accuracy(episode)) of our implementation."""
    method, model = PrototypicalNetworks(), backbone.to(memory_format=torch.channels_last)

    def loss(ep: Episode) -> torch.Tensor:
        return method.loss(model, ep)

    def correct(ep: Episode) -> float:
        return (method.scores(model, ep).argmax(1) == ep.query_y).float().mean().item()

    return model, loss, correct


def easyfsl(backbone: torch.nn.Module):
    from easyfsl.methods import PrototypicalNetworks as Peer

    model = Peer(backbone)

    def loss(ep: Episode) -> torch.Tensor:
        model.process_support_set(ep.support_x, ep.support_y)
        return F.cross_entropy(model(ep.query_x), ep.query_y)

    def correct(ep: Episode) -> float:
        model.process_support_set(ep.support_x, ep.support_y)
        return (model(ep.query_x).argmax(1) == ep.query_y).float().mean().item()

    return model, loss, correct


def assemble(pool, plan, n_way: int, k_shot: int) -> Episode:
    s_idx, s_y, q_idx, q_y = plan
    return Episode(pool.images[s_idx], torch.from_numpy(s_y), pool.images[q_idx], torch.from_numpy(q_y), n_way, k_shot)


def race(name, build, init, pool, train_eps, test_eps, target, check_every) -> dict:
    torch.manual_seed(0)
    model, loss_of, correct = build(copy.deepcopy(init))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    seconds, curve, reached = 0.0, [], None
    bar = tqdm(train_eps, desc=name, unit="episode")
    for i, plan in enumerate(bar, 1):
        start = time.perf_counter()
        ep = assemble(pool, plan, 60, 1)
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of(ep)
        loss.backward()
        optimizer.step()
        seconds += time.perf_counter() - start
        if i % check_every == 0:
            model.eval()
            with torch.no_grad():
                acc = 100.0 * float(np.mean([correct(t) for t in test_eps]))
            curve.append({"episodes": i, "train_seconds": round(seconds, 2), "test_acc_pct": round(acc, 2)})
            bar.set_postfix(acc=f"{acc:.2f}", s=f"{seconds:.0f}")
            if acc >= target:
                reached = curve[-1]
                break
    bar.close()
    return {"name": name, "reached": reached, "curve": curve,
            "seconds_per_episode": round(seconds / max(1, curve[-1]["episodes"] if curve else 1), 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="folder with the Omniglot archives (default: MLATLAS_DATA_DIR)")
    parser.add_argument("--target", type=float, default=98.0, help="5-way 1-shot test accuracy to reach, percent")
    parser.add_argument("--max-episodes", type=int, default=3000)
    parser.add_argument("--check-every", type=int, default=100)
    parser.add_argument("--test-episodes", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "protonet_vs_easyfsl")
    args = parser.parse_args(argv)
    try:
        import easyfsl  # noqa: F401
    except ImportError:
        print("error: easyfsl is not installed: pip install easyfsl==1.5.0 torchvision==0.28.0", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    data = load_standard("vinyals_trainval", args.data_dir)
    train_sampler = EpisodeSampler(data.train.labels, 60, 1, 5, np.random.default_rng(0))
    test_sampler = EpisodeSampler(data.test.labels, 5, 1, 15, np.random.default_rng(1))
    # The episodes are drawn once (as index arrays: 3,000 60-way episodes of images would not fit in memory) and
    # assembled in the timed loop, the same for both learners.
    train_eps = [train_sampler.sample() for _ in range(args.max_episodes)]
    test_eps = [make_episode(data.test, test_sampler, "cpu") for _ in range(args.test_episodes)]
    torch.manual_seed(0)
    init = conv4(64)
    runs = [race(name, build, init, data.train, train_eps, test_eps, args.target, args.check_every)
            for name, build in [("ours", ours), ("easyfsl", easyfsl)]]
    a, b = (r["reached"] for r in runs)
    ratio = round(b["train_seconds"] / a["train_seconds"], 3) if a and b else None
    import easyfsl as peer

    result = {
        "command": "python benchmarks/protonet_vs_easyfsl.py" + "".join(
            f" {a_}" for a_ in (argv if argv is not None else sys.argv[1:]) if not a_.startswith("/")),
        "commit": git_commit(ROOT, ["reproductions", "benchmarks"]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="minutes"),
        "hardware": hardware_description("cpu"), "threads": args.threads,
        "versions": {**library_versions(), "easyfsl": getattr(peer, "__version__", "1.5.0")},
        "protocol": "standard Omniglot (1,200 training characters x4, 423 test); 60-way 1-shot training episodes with "
                    f"5 queries per class; checked every {args.check_every} episodes on the same "
                    f"{args.test_episodes} 5-way 1-shot test episodes (15 queries per class)",
        "target_acc_pct": args.target, "runs": runs,
        "easyfsl_time_over_ours": ratio,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = [f"# Time to {args.target:g}% 5-way 1-shot: our Prototypical Networks and easyfsl's", "",
             result["protocol"] + ".", "", "| implementation | episodes | training seconds | accuracy when reached |",
             "| --- | --- | --- | --- |"]
    for r in runs:
        hit = r["reached"]
        lines.append(f"| {r['name']} | {hit['episodes'] if hit else 'not reached'} | "
                     f"{hit['train_seconds'] if hit else r['curve'][-1]['train_seconds']} | "
                     f"{hit['test_acc_pct'] if hit else r['curve'][-1]['test_acc_pct']} |")
    lines += ["", f"easyfsl's time over ours: {ratio if ratio is not None else 'n/a (a learner did not reach the target)'}",
              "", f"Commit {result['commit']}, {result['hardware']}, {args.threads} thread(s), {result['date']}."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
