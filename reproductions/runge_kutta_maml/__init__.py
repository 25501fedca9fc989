"""Runge-Kutta MAML (Im, Jiang & Verma 2019) on the sinusoid regression of Finn et al. (2017) and on Omniglot.

``method.inner`` names the tableau of each inner (adaptation) step, ``method.outer`` the two-stage tableau of the
meta-update; ``inner: euler, outer: midpoint`` is MAML. Configs with ``benchmark: omniglot`` run the standard
Omniglot protocol (``reproductions/datasets/omniglot_standard.py``) with this project's MAML network; the others
the sinusoid regression. See README.md for what is the paper's and what is ours.
"""

from reproductions.core import registry, sinusoid
from reproductions.runge_kutta_maml.method import RungeKuttaMAML

NAME, PAPER = "runge_kutta_maml", "runge-kutta-maml"


def build(config: dict) -> RungeKuttaMAML:
    m = config["method"]
    return RungeKuttaMAML(sinusoid.mlp(), m["inner_lr"], m["inner_steps"], inner=m["inner"], outer=m["outer"],
                          first_order=m["first_order"])


def _run(config: dict, ctx: registry.RunContext):
    benchmark = config.get("benchmark", "sinusoid")
    if benchmark == "omniglot":
        from reproductions.datasets import omniglot_standard
        from reproductions.runge_kutta_maml.omniglot import OmniglotRungeKutta

        m = config["method"]
        method = OmniglotRungeKutta(first_order=m["first_order"], inner=m["inner"], outer=m["outer"])
        return omniglot_standard.run(method, NAME, PAPER, config, ctx)
    if benchmark != "sinusoid":
        raise registry.RegistryError(f"benchmark: {benchmark!r} is not one of sinusoid, omniglot")
    return sinusoid.run(build, REPRODUCTION, config, ctx)


REPRODUCTION = registry.Reproduction(
    NAME, PAPER,
    "Runge-Kutta MAML (inner/outer Butcher tableaus; MAML = Euler inner, midpoint outer): sinusoid, Omniglot",
    _run,
)
