"""MAML, second order, on the sinusoid regression of Finn et al. (2017)."""

from reproductions.core import sinusoid
from reproductions.maml.method import MAML


def build(config: dict) -> MAML:
    m = config["method"]
    return MAML(sinusoid.mlp(), m["inner_lr"], m["inner_steps"], first_order=m["first_order"],
                **sinusoid.memory_options(m))


REPRODUCTION = sinusoid.reproduction(
    "maml", "maml", "MAML (second order), K-shot sinusoid regression", build
)
