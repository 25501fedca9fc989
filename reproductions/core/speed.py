"""Time one meta-iteration of each sinusoid method, looping over tasks vs all tasks at once (``vectorize``).

    python -m reproductions.core.speed [--repeats 30] [--shots 5 10 20]

The sinusoid methods use ``vectorize=True`` (tasks batched natively, see :mod:`reproductions.core.batched`)
because this measurement shows it faster on our machines; run it again before switching another model to it
(and check its meta-gradients against the loop first).
"""

from __future__ import annotations

import argparse
import importlib
import time

import numpy as np
import torch

from reproductions.core import registry
from reproductions.core.tasks import SinusoidFamily

METHODS = ("maml", "fomaml", "anil", "meta_sgd", "reptile")


def ms_per_iteration(learner, k_shot: int, repeats: int) -> float:
    rng, family = np.random.default_rng(0), SinusoidFamily()
    batches = [family.sample(rng, 25, k_shot, k_shot) for _ in range(repeats + 3)]
    for batch in batches[:3]:  # warm-up
        learner.meta_step(batch)
    start = time.perf_counter()
    for batch in batches[3:]:
        learner.zero_grad(set_to_none=True)
        learner.meta_step(batch)
    return (time.perf_counter() - start) / repeats * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed meta-iterations per measurement")
    parser.add_argument("--shots", type=int, nargs="+", default=[10], help="K values to time")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"{'method':<10}{'K':>4}{'loop ms/it':>12}{'batch ms/it':>12}{'speed-up':>10}")
    for name in METHODS:
        _, config = registry.load_config(registry.get(name), "default")
        build = importlib.import_module(f"reproductions.{name}").build
        for k in args.shots:
            learner = build(config)
            times = {}
            for vectorize in (False, True):
                learner.vectorize = vectorize
                times[vectorize] = ms_per_iteration(learner, k, args.repeats)
            print(f"{name:<10}{k:>4}{times[False]:>12.2f}{times[True]:>12.2f}{times[False] / times[True]:>9.1f}x")


if __name__ == "__main__":
    main()
