"""Reptile (Nichol et al. 2018) on K-shot sinusoid regression."""

from reproductions.core import sinusoid
from reproductions.reptile.method import Reptile


def build(config: dict) -> Reptile:
    m = config["method"]
    return Reptile(sinusoid.mlp(), m["inner_lr"], m["inner_steps"])


REPRODUCTION = sinusoid.reproduction(
    "reptile", "reptile", "Reptile, K-shot sinusoid regression", build
)
