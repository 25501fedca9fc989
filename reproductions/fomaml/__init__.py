"""First-order MAML (Finn et al. 2017, Section 5.2): the meta-gradient ignores second derivatives."""

from reproductions.core import sinusoid
from reproductions.maml import build

REPRODUCTION = sinusoid.reproduction(
    "fomaml", "maml", "First-order MAML, K-shot sinusoid regression", build
)
