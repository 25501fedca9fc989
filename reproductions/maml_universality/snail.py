"""A small SNAIL-style recurrent meta-learner (Mishra et al., ICLR 2018; called TCML in its first version) for
few-shot regression: it reads the support pairs ``(x_i, y_i)`` followed by one query input ``x`` as a sequence
and predicts ``y`` at the query position. Causal dilated convolutions (the "TC" blocks, with gated activations)
and causal soft attention alternate; every block concatenates its output to its input, as in SNAIL.

Each query point gets its own sequence (the support pairs, then that query), so a prediction never depends on
other query points. Every operation is causal: the output at position ``t`` depends on positions ``<= t`` only
(tests check it), and the query position carries no label (its ``y`` slot is 0 and a flag marks it).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reproductions.core.tasks import TaskBatch


class DenseBlock(nn.Module):
    """Causal dilated convolution (kernel 2) with a gated activation; output concatenated to the input."""

    def __init__(self, channels: int, dilation: int, filters: int):
        super().__init__()
        self.dilation = dilation
        self.conv_f = nn.Conv1d(channels, filters, kernel_size=2, dilation=dilation)
        self.conv_g = nn.Conv1d(channels, filters, kernel_size=2, dilation=dilation)

    def forward(self, x: Tensor) -> Tensor:  # x: [batch, channels, time]
        padded = F.pad(x, (self.dilation, 0))  # left padding only: position t sees t - dilation and t
        out = torch.tanh(self.conv_f(padded)) * torch.sigmoid(self.conv_g(padded))
        return torch.cat([x, out], dim=1)


class TCBlock(nn.Module):
    """Dense blocks with dilations 1, 2, 4, ... up to the sequence length, so the last position sees them all."""

    def __init__(self, channels: int, seq_len: int, filters: int):
        super().__init__()
        blocks = []
        for i in range(max(1, math.ceil(math.log2(seq_len)))):
            blocks.append(DenseBlock(channels + i * filters, 2**i, filters))
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = channels + len(blocks) * filters

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(x)


class AttentionBlock(nn.Module):
    """Causal single-head soft attention; the read values are concatenated to the input."""

    def __init__(self, channels: int, key: int, value: int):
        super().__init__()
        self.query, self.key = nn.Linear(channels, key), nn.Linear(channels, key)
        self.value = nn.Linear(channels, value)
        self.scale = 1.0 / math.sqrt(key)
        self.out_channels = channels + value

    def forward(self, x: Tensor) -> Tensor:  # x: [batch, channels, time]
        h = x.transpose(1, 2)  # [batch, time, channels]
        logits = self.query(h) @ self.key(h).transpose(1, 2) * self.scale  # [batch, time, time]
        t = h.shape[1]
        future = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        logits = logits.masked_fill(future, float("-inf"))
        read = torch.softmax(logits, dim=-1) @ self.value(h)  # [batch, time, value]
        return torch.cat([x, read.transpose(1, 2)], dim=1)


class SNAIL(nn.Module):
    """TC -> attention -> TC -> attention -> linear read-out, for sequences of ``seq_len`` = K + 1 steps of
    ``[x, y, is_query]`` (or any ``in_features`` per step; ``out_features`` outputs per step, e.g. class logits)."""

    def __init__(self, seq_len: int, filters: int = 32, key: int = 16, value: int = 16, in_features: int = 3,
                 out_features: int = 1):
        super().__init__()
        self.seq_len = seq_len
        tc1 = TCBlock(in_features, seq_len, filters)
        att1 = AttentionBlock(tc1.out_channels, key, value)
        tc2 = TCBlock(att1.out_channels, seq_len, filters)
        att2 = AttentionBlock(tc2.out_channels, key * 2, value * 2)
        self.body = nn.Sequential(tc1, att1, tc2, att2)
        self.head = nn.Linear(att2.out_channels, out_features)

    def forward(self, seq: Tensor) -> Tensor:
        """``seq``: [batch, time, features] -> predictions at every position, [batch, time] (one output) or
        [batch, time, out_features]."""
        h = self.body(seq.transpose(1, 2)).transpose(1, 2)
        return self.head(h).squeeze(-1)


def sequences(support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
    """One sequence per (task, query point): the task's K support pairs, then the query input with no label.
    Shapes: support [tasks, K, 1], query [tasks, Q, 1] -> [tasks * Q, K + 1, 3] with features [x, y, is_query]."""
    tasks, k, _ = support_x.shape
    q = query_x.shape[1]
    zeros = torch.zeros_like(support_x)
    support = torch.cat([support_x, support_y, zeros], dim=-1)  # [tasks, K, 3]
    query = torch.cat([query_x, torch.zeros_like(query_x), torch.ones_like(query_x)], dim=-1)  # [tasks, Q, 3]
    support = support.unsqueeze(1).expand(tasks, q, k, 3)
    return torch.cat([support, query.unsqueeze(2)], dim=2).reshape(tasks * q, k + 1, 3)


class SnailLearner(nn.Module):
    """The recurrent meta-learner as a learner of the sinusoid experiment: ``meta_step`` trains it on the query
    MSE of a task batch; it adapts by reading the support set, so every "step count" gives the same prediction."""

    def __init__(self, k_shot: int, filters: int = 32, key: int = 16, value: int = 16, chunk: int = 20000):
        super().__init__()
        self.model = SNAIL(k_shot + 1, filters, key, value)
        self.chunk = chunk

    def predict(self, tasks: TaskBatch) -> Tensor:
        """Predictions at the query points, [tasks, Q, 1]."""
        seq = sequences(tasks.support_x, tasks.support_y, tasks.query_x)
        return self.model(seq)[:, -1].reshape(tasks.query_x.shape)

    def meta_step(self, tasks: TaskBatch) -> float:
        loss = ((self.predict(tasks) - tasks.query_y) ** 2).mean()
        loss.backward()
        return float(loss.detach())

    @torch.no_grad()
    def eval_losses(self, tasks: TaskBatch, steps) -> dict[int, Tensor]:
        per_task = max(1, self.chunk // tasks.query_x.shape[1])
        losses = []
        for start in range(0, len(tasks), per_task):
            part = TaskBatch(*(t[start:start + per_task] for t in (tasks.support_x, tasks.support_y, tasks.query_x,
                                                                   tasks.query_y)))
            losses.append(((self.predict(part) - part.query_y) ** 2).mean(dim=(1, 2)))
        out = torch.cat(losses)
        return {s: out for s in steps}
