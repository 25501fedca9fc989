"""Learning to Generalize (L2G; Lee, Na, Lee & Hwang 2019) around a metric-based few-shot learner.

A training draw is one ``2N``-way episode; its first ``N`` classes form the sampled episode ``tau`` and the other
``N`` an episode ``tau'`` of classes unseen in ``tau``. With ``L(theta; tau)`` the base learner's own episode loss
(Prototypical Networks' cross-entropy, Relation Network's mean squared error), the objective is (reconstructed, see
the package README)

    L_L2G(theta) = L(theta; tau) + lambda * L(theta - alpha * grad L(theta; tau); tau')

the learner's step on ``tau`` is constrained to also lower the loss on the unseen ``tau'`` (bilevel: the inner step
is differentiated through, second order). ``alpha = 0`` gives the plain learner trained on both episodes of the draw
(``L(tau) + lambda L(tau')``, the same images): our baseline. ``lambda = 0`` gives the plain learner on ``tau``.
The inner step is :func:`reproductions.core.functional.adapt` on the episode loss as a function of the parameters.
At test time nothing changes: the base learner's scores.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.func import functional_call

from reproductions.core.functional import adapt, parameters_of
from reproductions.datasets.omniglot_benchmark import Episode, EpisodicMethod


class EpisodeLoss(nn.Module):
    """The base learner's loss on an episode as a module of the network's parameters, so that the core's functional
    adaptation (``functional_call`` with a parameter dict) can take gradient steps on it."""

    def __init__(self, method: EpisodicMethod, net: nn.Module):
        super().__init__()
        self.method, self.net = method, net

    def forward(self, episode: Episode) -> Tensor:
        return self.method.loss(self.net, episode)


def split_episode(episode: Episode) -> tuple[Episode, Episode]:
    """The ``2N``-way episode as two ``N``-way episodes over disjoint classes (labels ``< N`` and ``>= N``)."""
    if episode.n_way % 2:
        raise ValueError(f"L2G trains on 2N-way draws split into two N-way episodes; train.n_way={episode.n_way} is odd")
    n = episode.n_way // 2

    def part(first: bool) -> Episode:
        s = episode.support_y < n if first else episode.support_y >= n
        q = episode.query_y < n if first else episode.query_y >= n
        shift = 0 if first else n
        return Episode(episode.support_x[s], episode.support_y[s] - shift, episode.query_x[q],
                       episode.query_y[q] - shift, n, episode.k_shot)

    return part(True), part(False)


class L2G:
    """``method`` trained with the L2G objective; ``weight`` is lambda, ``inner_lr`` alpha."""

    def __init__(self, method: EpisodicMethod, weight: float, inner_lr: float, first_order: bool = False):
        self.method, self.weight, self.inner_lr, self.first_order = method, weight, inner_lr, first_order

    @classmethod
    def from_config(cls, method: EpisodicMethod, config: dict) -> L2G:
        l2g = config["method"]["l2g"]
        return cls(method, float(l2g["weight"]), float(l2g["inner_lr"]), bool(l2g.get("first_order", False)))

    def build(self, config: dict) -> nn.Module:
        return self.method.build(config)

    def scores(self, model: nn.Module, episode: Episode) -> Tensor:
        return self.method.scores(model, episode)

    def loss(self, model: nn.Module, episode: Episode) -> Tensor:
        seen, unseen = split_episode(episode)
        objective = EpisodeLoss(self.method, model)
        plain = objective(seen)
        if self.weight == 0:
            return plain
        if self.inner_lr == 0:  # no inner step: the plain learner on both episodes
            return plain + self.weight * objective(unseen)
        params = {f"net.{n}": p for n, p in parameters_of(model).items()}
        # One differentiable SGD step on tau; adapt's loss_fn receives the module's output (the loss itself).
        fast = adapt(objective, params, (seen, None), lambda loss, _: loss, steps=1, lr=self.inner_lr,
                     first_order=self.first_order)
        return plain + self.weight * functional_call(objective, fast, (unseen,))

