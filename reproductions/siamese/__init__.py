"""Siamese networks for one-shot recognition on Omniglot in the minimal setting of Lake et al. (2019)."""

from reproductions.datasets.omniglot_benchmark import reproduction
from reproductions.siamese.method import Siamese

REPRODUCTION = reproduction(
    "siamese", "siamese-networks",
    "Siamese networks (verification pairs, 28x28 twins), Omniglot minimal setting + Lake's 20 one-shot runs",
    Siamese(),
)
