"""Meta-SGD (Li et al. 2017) on K-shot sinusoid regression."""

from reproductions.core import sinusoid
from reproductions.meta_sgd.method import MetaSGD


def build(config: dict) -> MetaSGD:
    m = config["method"]
    return MetaSGD(sinusoid.mlp(), m["inner_steps"], tuple(m["lr_init"]), first_order=m["first_order"],
                   **sinusoid.memory_options(m))


REPRODUCTION = sinusoid.reproduction(
    "meta_sgd", "meta-sgd", "Meta-SGD (learned per-parameter step sizes), K-shot sinusoid regression", build
)
