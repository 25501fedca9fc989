"""Relation Network on Omniglot in the minimal setting of Lake et al. (2019)."""

from reproductions.datasets.omniglot_benchmark import reproduction
from reproductions.relation_network.method import RelationNetwork

REPRODUCTION = reproduction(
    "relation_network", "relation-network",
    "Relation Network, Omniglot minimal setting + Lake's 20 one-shot runs",
    RelationNetwork(),
)
