"""MAML and first-order MAML on Omniglot in the minimal setting of Lake et al. (2019).

``mlatlas repro run omniglot_maml`` trains second-order MAML; the ``fomaml*`` configs train the first-order
approximation (``method.first_order: true``).
"""

from reproductions.datasets import omniglot_benchmark
from reproductions.omniglot_maml.method import OmniglotMAML


def _run(config: dict, ctx):
    method = OmniglotMAML(first_order=config["method"]["first_order"])
    return omniglot_benchmark.run_config(method, "omniglot_maml", "maml", config, ctx)


REPRODUCTION = omniglot_benchmark.registry.Reproduction(
    "omniglot_maml", "maml", "MAML / first-order MAML, Omniglot minimal setting + Lake's 20 one-shot runs", _run,
    splits_tasks=True,  # its meta-batch of episodes is divided over `--nproc` workers (omniglot_benchmark.train)
)
