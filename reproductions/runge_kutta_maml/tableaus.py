"""Butcher tableaus of explicit Runge-Kutta methods, and one explicit Runge-Kutta step of a vector field.

An ``s``-stage explicit method for ``dθ/dt = f(θ)`` with step ``h`` is

    Y_1 = θ,   Y_i = θ + h Σ_{j<i} a_ij f(Y_j),   θ_next = θ + h Σ_i b_i f(Y_i),

written as the tableau ``c | A`` over ``b`` (``c_i = Σ_j a_ij``). For gradient flow ``f = -∇L`` the one-stage
tableau (Euler) is one plain gradient step. Every two-stage method of order 2 is ``rk2(c2)``: ``a_21 = c2``,
``b = (1 - 1/(2 c2), 1/(2 c2))``; the explicit midpoint rule is ``c2 = 1/2``, Heun's ``c2 = 1``, Ralston's
``c2 = 2/3`` (the smallest error bound of the family).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction

from torch import Tensor

Params = dict[str, Tensor]


@dataclass(frozen=True)
class Tableau:
    """An explicit Butcher tableau: ``a`` strictly lower triangular (row ``i`` holds ``a_i1 .. a_i,i-1``)."""

    name: str
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.a) != len(self.b) or any(len(row) != i for i, row in enumerate(self.a)):
            raise ValueError(f"tableau {self.name!r}: row i of `a` needs i entries and `b` one weight per stage")
        if abs(sum(self.b) - 1) > 1e-12:
            raise ValueError(f"tableau {self.name!r}: the weights b sum to {sum(self.b)}, not 1 (inconsistent)")

    @property
    def stages(self) -> int:
        return len(self.b)

    @property
    def c(self) -> tuple[float, ...]:
        """Where each stage sits, as a fraction of the step: ``c_i = Σ_j a_ij``."""
        return tuple(float(sum(row)) for row in self.a)

    def order(self) -> int:
        """The classical order (up to 4) from the order conditions for a general vector field."""
        b, c, a, s = self.b, self.c, self.a, self.stages

        def close(x: float, y: float) -> bool:
            return abs(x - y) < 1e-12

        def entry(i: int, j: int) -> float:
            return a[i][j] if j < i else 0.0

        conditions = [
            [sum(b) - 1],
            [sum(b[i] * c[i] for i in range(s)) - Fraction(1, 2)],
            [sum(b[i] * c[i] ** 2 for i in range(s)) - Fraction(1, 3),
             sum(b[i] * entry(i, j) * c[j] for i in range(s) for j in range(s)) - Fraction(1, 6)],
            [sum(b[i] * c[i] ** 3 for i in range(s)) - Fraction(1, 4),
             sum(b[i] * c[i] * entry(i, j) * c[j] for i in range(s) for j in range(s)) - Fraction(1, 8),
             sum(b[i] * entry(i, j) * c[j] ** 2 for i in range(s) for j in range(s)) - Fraction(1, 12),
             sum(b[i] * entry(i, j) * entry(j, k) * c[k] for i in range(s) for j in range(s) for k in range(s))
             - Fraction(1, 24)],
        ]
        order = 0
        for group in conditions:
            if not all(close(float(x), 0.0) for x in group):
                break
            order += 1
        return order


def rk2(c2: float, name: str | None = None) -> Tableau:
    """The two-stage, second-order method whose second stage sits at ``c2`` of the step."""
    if c2 <= 0:
        raise ValueError(f"rk2: c2 must be positive, not {c2}")
    b2 = 1 / (2 * c2)
    return Tableau(name or f"rk2(c2={c2:g})", ((), (c2,)), (1 - b2, b2))


EULER = Tableau("euler", ((),), (1.0,))
MIDPOINT = rk2(0.5, "midpoint")
HEUN = rk2(1.0, "heun")
RALSTON = rk2(2 / 3, "ralston")
RK4 = Tableau("rk4", ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)), (1 / 6, 1 / 3, 1 / 3, 1 / 6))

TABLEAUS: dict[str, Tableau] = {t.name: t for t in (EULER, MIDPOINT, HEUN, RALSTON, RK4)}


def get(name: str) -> Tableau:
    """A named tableau (``euler``, ``midpoint``, ``heun``, ``ralston``, ``rk4``); a clear error otherwise."""
    try:
        return TABLEAUS[name]
    except KeyError:
        raise ValueError(f"unknown Runge-Kutta tableau {name!r}; choose one of {', '.join(TABLEAUS)}") from None


def combine(weights: tuple[float, ...], slopes: list[Mapping[str, Tensor]], name: str) -> Tensor | None:
    """``Σ_j w_j slopes[j][name]`` over the non-zero weights; a lone weight of 1 returns the slope itself (so a
    one-stage step is bit-identical to a plain gradient step). None when every weight is zero."""
    terms = [(w, k[name]) for w, k in zip(weights, slopes) if w != 0]
    if not terms:
        return None
    if len(terms) == 1 and terms[0][0] == 1:
        return terms[0][1]
    total = terms[0][0] * terms[0][1]
    for w, k in terms[1:]:
        total = total + w * k
    return total


def descent_step(tableau: Tableau, params: Params, grad_of: Callable[[Params], Params], h: float) -> Params:
    """One step of ``tableau`` with step ``h`` along gradient flow ``dθ/dt = -∇L(θ)``; ``grad_of(θ)`` returns
    ``∇L`` at ``θ`` for the same keys. With the Euler tableau this is ``θ - h ∇L(θ)``, plain gradient descent."""
    slopes: list[Params] = []
    for i in range(tableau.stages):
        stage = dict(params)
        for n in params:
            increment = combine(tableau.a[i], slopes, n)
            if increment is not None:
                stage[n] = params[n] - h * increment
        slopes.append(grad_of(stage))
    out = {}
    for n in params:
        increment = combine(tableau.b, slopes, n)
        out[n] = params[n] if increment is None else params[n] - h * increment
    return out
