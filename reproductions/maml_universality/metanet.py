"""Meta Networks (MetaNet; Munkhdalai & Yu, ICML 2017) as a few-shot image classifier, sized for a CPU.

MetaNet learns at three time scales. *Slow weights* are trained by gradient descent across episodes. *Task-level
fast weights* are generated once per episode for the dynamic representation learner ``u``; *example-level fast
weights* are generated for each support example for the base learner ``b``, stored in a memory and read back for a
query by soft attention. The fast weights are outputs of small networks (the paper's meta learner) whose input is
*meta information*: loss gradients on the support set. A layer with fast weights is *augmented*: the slow and the
fast branch each transform the layer's input, and their outputs are summed (hidden layers: each branch through a
ReLU, then summed).

Our instance (every size and the choice of augmented layers are ours; see README.md):

* ``u``: a 4-block strided convolutional trunk (``conv4``) -> augmented linear layer ``r = Q g + q + Q* g``
  (the representation, or key). ``Q*`` (task level) is generated from the gradients, with respect to ``Q``, of a
  representation loss on each of the ``T`` support examples (cross-entropy of a fixed random read-out of
  ``relu(Q g + q)``), by ``d``: a coordinate-wise LSTM that reads the ``T`` per-example gradients in turn.
* ``b``: another ``conv4`` trunk -> augmented hidden layer ``h = relu(W1 f + w1) + relu(W1* f)`` -> augmented
  output layer ``logits = W2 h + w2 + W2* h``. For every support example ``i`` the gradient of its own
  cross-entropy under the slow weights alone, with respect to ``W1`` and ``W2``, goes through ``m`` (a
  coordinate-wise MLP per layer) to give ``(W1*_i, W2*_i)``, stored in the memory ``M`` at the key ``r_i``.
* A query with key ``r`` reads ``W* = sum_i softmax_i(cos(r, r_i)) W*_i`` and is classified by ``b(W, W*, x)``.

Meta information is first order, as in MetaNet: the gradients are inputs, computed on detached features and weights
(no gradient flows through their computation), preprocessed coordinate-wise into ``(log|g| / k, sign g)`` (or
``(-1, e^k g)`` for tiny ``g``; Andrychowicz et al. 2016). The training loss is the queries' cross-entropy.
Every query is read on its own (its own attention over the memory); as for the other learners of this experiment,
batch norm in the trunks normalises the support images and the query images each with their own batch statistics.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reproductions.datasets.omniglot_benchmark import conv4


def log_and_sign(g: Tensor, k: float = 7.0) -> Tensor:
    """Coordinate-wise gradient preprocessing: ``[..., 2]`` features ``(log|g| / k, sign g)`` where
    ``|g| >= e^-k``, else ``(-1, e^k g)``; keeps the magnitude's scale and the sign apart."""
    big = g.abs() >= math.exp(-k)
    first = torch.where(big, torch.log(g.abs().clamp_min(math.exp(-k))) / k, torch.full_like(g, -1.0))
    second = torch.where(big, torch.sign(g), g * math.exp(k))
    return torch.stack([first, second], dim=-1)


class CoordinateMLP(nn.Module):
    """The example-level generator ``m``: one small MLP applied to every weight coordinate's 2 gradient features."""

    def __init__(self, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, meta: Tensor) -> Tensor:  # [..., 2] -> [...]
        return self.net(meta).squeeze(-1)


class CoordinateLSTM(nn.Module):
    """The task-level generator ``d``: an LSTM shared by every weight coordinate, reading that coordinate's
    gradient features over the ``T`` examples; its last output, through a linear map, is the fast weight."""

    def __init__(self, hidden: int):
        super().__init__()
        self.cell = nn.LSTMCell(2, hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, meta: Tensor) -> Tensor:  # [T, P, 2] -> [P]
        state = None
        for step in meta:
            state = self.cell(step, state)
        return self.out(state[0]).squeeze(-1)


def cosine_attention(keys: Tensor, memory_keys: Tensor) -> Tensor:
    """Soft attention of each query key over the memory's keys: softmax over cosine similarities, ``[Q, N]``."""
    return torch.softmax(F.normalize(keys, dim=1) @ F.normalize(memory_keys, dim=1).T, dim=1)


class MetaNetClassifier(nn.Module):
    """MetaNet for N-way episodes: ``forward(support_x, support_y, query_x) -> [Q, n_way]`` logits."""

    def __init__(self, n_way: int, channels: int = 64, hidden: int = 32, key: int = 16, generator_hidden: int = 10,
                 k: float = 7.0):
        super().__init__()
        self.n_way, self.k = n_way, k
        # Base learner b: slow weights W = (trunk, W1, w1, W2, w2).
        self.base_trunk = conv4(channels, batch_stats=True, strided=True)
        self.base_hidden = nn.Linear(channels, hidden)
        self.base_out = nn.Linear(hidden, n_way)
        # Dynamic representation learner u: slow weights Q = (trunk, Q, q).
        self.rep_trunk = conv4(channels, batch_stats=True, strided=True)
        self.rep = nn.Linear(channels, key)
        # The representation loss's read-out: fixed (first-order meta information gives it no training signal).
        self.register_buffer("rep_readout", torch.randn(n_way, key) / math.sqrt(key))
        # The meta learner's generators: d (task level, for Q), m (example level, one per augmented layer of b).
        self.d = CoordinateLSTM(generator_hidden)
        self.m_hidden = CoordinateMLP(generator_hidden)
        self.m_out = CoordinateMLP(generator_hidden)
        # Ours: the trunk's features are >= 0 (ReLU), so relu(W1* f) is dead for every query if W1* starts negative,
        # which default initialisation of m gives about half the time. Start W1* near 1 / channels (alive), its
        # dependence on the gradient small; training shapes both.
        with torch.no_grad():
            self.m_hidden.net[-1].weight.mul_(0.05)
            self.m_hidden.net[-1].bias.fill_(1.0 / channels)

    # ---- the parts -------------------------------------------------------------------------------

    def trunks(self, support_x: Tensor, query_x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Trunk features (base f, representation g) of the support set and of the queries, each set normalised
        with its own batch statistics."""
        return (self.base_trunk(support_x), self.rep_trunk(support_x), self.base_trunk(query_x),
                self.rep_trunk(query_x))

    def support_gradients(self, f_s: Tensor, g_s: Tensor, support_y: Tensor) -> dict[str, Tensor]:
        """Per support example ``i``, detached: the gradient of its representation loss with respect to ``Q``
        (``rep``) and of its base-learner loss under the slow weights with respect to ``W1`` and ``W2``
        (``base_hidden``, ``base_out``), each ``[examples, *weight.shape]``. The trunk features are inputs here."""
        with torch.enable_grad():
            f, g = f_s.detach(), g_s.detach()
            Q, q = self.rep.weight.detach(), self.rep.bias.detach()
            z = (g @ Q.T + q).requires_grad_(True)  # per-example pre-activations: dL_i/dQ = (dL_i/dz_i) g_i^T
            rep_loss = F.cross_entropy(F.relu(z) @ self.rep_readout.T, support_y, reduction="sum")
            (dz,) = torch.autograd.grad(rep_loss, [z])
            W1, w1 = self.base_hidden.weight.detach(), self.base_hidden.bias.detach()
            W2, w2 = self.base_out.weight.detach(), self.base_out.bias.detach()
            z1 = (f @ W1.T + w1).requires_grad_(True)
            h1 = F.relu(z1)
            z2 = h1 @ W2.T + w2
            base_loss = F.cross_entropy(z2, support_y, reduction="sum")
            dz1, dz2 = torch.autograd.grad(base_loss, [z1, z2])
        return {"rep": dz[:, :, None] * g[:, None, :], "base_hidden": dz1[:, :, None] * f[:, None, :],
                "base_out": dz2[:, :, None] * h1.detach()[:, None, :]}

    def meta_info(self, f_s: Tensor, g_s: Tensor, support_y: Tensor) -> dict[str, Tensor]:
        """The meta information: the support gradients, preprocessed to ``[examples, *weight.shape, 2]``."""
        return {name: log_and_sign(grad, self.k) for name, grad in self.support_gradients(f_s, g_s, support_y).items()}

    def task_fast_weights(self, meta: dict[str, Tensor]) -> Tensor:
        """``Q* = d(G, {grad_i})``: one matrix for the episode."""
        rep = meta["rep"]
        return self.d(rep.reshape(rep.shape[0], -1, 2)).reshape(self.rep.weight.shape)

    def example_fast_weights(self, meta: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """The memory of example-level fast weights: ``W1*_i`` [N, hidden, channels] and ``W2*_i`` [N, n_way,
        hidden], ``W*_i = m(Z, grad_i)``."""
        return self.m_hidden(meta["base_hidden"]), self.m_out(meta["base_out"])

    def represent(self, g: Tensor, fast_q: Tensor) -> Tensor:
        """``r = u(Q, Q*, x)``: the augmented key layer (an output layer: slow and fast branches summed)."""
        return self.rep(g) + g @ fast_q.T

    def classify(self, f: Tensor, attention: Tensor, memory: tuple[Tensor, Tensor]) -> Tensor:
        """``b(W, W*, x)`` for each query, with ``W*`` the attention-weighted memory (``attention`` [Q, N])."""
        m1, m2 = memory
        fast1 = torch.einsum("qn,nij,qj->qi", attention, m1, f)
        h = F.relu(self.base_hidden(f)) + F.relu(fast1)  # layer augmentation: ReLU on each branch, then sum
        return self.base_out(h) + torch.einsum("qn,nij,qj->qi", attention, m2, h)

    def head(self, g_s: Tensor, f_q: Tensor, g_q: Tensor, meta: dict[str, Tensor]) -> Tensor:
        """Everything after the trunks. Each query's logits depend only on its own features and the support set's (the
        base learner's support features enter through the meta information only)."""
        fast_q = self.task_fast_weights(meta)
        attention = cosine_attention(self.represent(g_q, fast_q), self.represent(g_s, fast_q))
        return self.classify(f_q, attention, self.example_fast_weights(meta))

    def forward(self, support_x: Tensor, support_y: Tensor, query_x: Tensor,
                meta: dict[str, Tensor] | None = None) -> Tensor:
        """Query logits. ``meta`` replaces the meta information computed from the support set (tests use it)."""
        f_s, g_s, f_q, g_q = self.trunks(support_x, query_x)
        if meta is None:
            meta = self.meta_info(f_s, g_s, support_y)
        return self.head(g_s, f_q, g_q, meta)
