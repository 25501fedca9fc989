"""Runge-Kutta MAML (Im, Jiang & Verma 2019) on the sinusoid regression of Finn et al. (2017).

``method.inner`` names the tableau of each inner (adaptation) step, ``method.outer`` the two-stage tableau of the
meta-update; ``inner: euler, outer: midpoint`` is MAML. See README.md for what is the paper's and what is ours.
"""

from reproductions.core import sinusoid
from reproductions.runge_kutta_maml.method import RungeKuttaMAML


def build(config: dict) -> RungeKuttaMAML:
    m = config["method"]
    return RungeKuttaMAML(sinusoid.mlp(), m["inner_lr"], m["inner_steps"], inner=m["inner"], outer=m["outer"],
                          first_order=m["first_order"])


REPRODUCTION = sinusoid.reproduction(
    "runge_kutta_maml", "runge-kutta-maml",
    "Runge-Kutta MAML (inner/outer Butcher tableaus; MAML = Euler inner, midpoint outer), sinusoid regression", build,
)
