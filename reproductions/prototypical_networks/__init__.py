"""Prototypical Networks on Omniglot in the minimal setting of Lake et al. (2019)."""

from reproductions.datasets.omniglot_benchmark import reproduction
from reproductions.prototypical_networks.method import PrototypicalNetworks

REPRODUCTION = reproduction(
    "prototypical_networks", "prototypical-networks",
    "Prototypical Networks, Omniglot minimal setting (small1/small2) + Lake's 20 one-shot runs",
    PrototypicalNetworks(),
)
