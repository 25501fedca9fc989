"""ANIL (Raghu et al. 2020): MAML whose inner loop adapts only the network's last layer (the head)."""

from reproductions.core import sinusoid
from reproductions.maml.method import MAML


def build(config: dict) -> MAML:
    m = config["method"]
    model = sinusoid.mlp()
    last = len(model) - 1  # the final Linear layer is the head
    head = [f"{last}.weight", f"{last}.bias"]
    return MAML(model, m["inner_lr"], m["inner_steps"], first_order=m["first_order"], adapt_only=head,
                **sinusoid.memory_options(m))


REPRODUCTION = sinusoid.reproduction(
    "anil", "anil", "ANIL (adapt only the head), K-shot sinusoid regression", build
)
