"""Matching Networks on Omniglot in the minimal setting of Lake et al. (2019)."""

from reproductions.datasets.omniglot_benchmark import reproduction
from reproductions.matching_networks.method import MatchingNetworks

REPRODUCTION = reproduction(
    "matching_networks", "matching-networks",
    "Matching Networks (no FCE), Omniglot minimal setting + Lake's 20 one-shot runs",
    MatchingNetworks(),
)
