"""Task families: the MAML paper's sinusoids and N-way K-shot episodes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reproductions.core.tasks import EpisodeSampler, SinusoidFamily


def test_sinusoid_tasks_follow_the_maml_paper():
    batch = SinusoidFamily().sample(np.random.default_rng(0), 2000, 5, 7)
    assert batch.support_x.shape == (2000, 5, 1) and batch.query_y.shape == (2000, 7, 1)
    x = np.concatenate([batch.support_x.numpy(), batch.query_x.numpy()], axis=1)
    y = np.concatenate([batch.support_y.numpy(), batch.query_y.numpy()], axis=1)
    assert x.min() >= -5 and x.max() <= 5 and x.min() < -4.9 and x.max() > 4.9
    # Recover amplitude and phase per task from the 12 points by least squares on sin/cos features.
    feats = np.stack([np.sin(x[..., 0]), np.cos(x[..., 0])], axis=-1)
    coef = np.stack([np.linalg.lstsq(f, t[:, 0], rcond=None)[0] for f, t in zip(feats, y)])
    amplitude = np.hypot(coef[:, 0], coef[:, 1])
    phase = np.arctan2(-coef[:, 1], coef[:, 0])  # y = A sin(x - phase) = A cos(phase) sin x - A sin(phase) cos x
    assert amplitude.min() >= 0.1 - 1e-4 and amplitude.max() <= 5 + 1e-4
    assert amplitude.min() < 0.2 and amplitude.max() > 4.9
    assert phase.min() >= -1e-4 and phase.max() <= math.pi + 1e-4
    # Support and query points of a task come from the same sinusoid (the fit above is exact).
    residual = np.abs(np.einsum("tnk,tk->tn", feats, coef) - y[..., 0]).max()
    assert residual < 1e-4


def test_sinusoid_sampling_is_reproducible():
    a = SinusoidFamily().sample(np.random.default_rng(3), 4, 5, 5)
    b = SinusoidFamily().sample(np.random.default_rng(3), 4, 5, 5)
    assert (a.support_x == b.support_x).all() and (a.query_y == b.query_y).all()


def test_episode_sampler_gives_disjoint_balanced_episodes():
    labels = np.repeat(np.array(["a", "b", "c", "d", "e", "f"]), 20)
    sampler = EpisodeSampler(labels, n_way=5, k_shot=3, n_query=4, rng=np.random.default_rng(0))
    seen_classes = set()
    for _ in range(50):
        s_idx, s_y, q_idx, q_y = sampler.sample()
        assert len(s_idx) == 15 and len(q_idx) == 20
        assert not set(s_idx) & set(q_idx)
        assert list(np.bincount(s_y)) == [3] * 5 and list(np.bincount(q_y)) == [4] * 5
        # Episode labels are consistent with the dataset's classes.
        for idx, ys in ((s_idx, s_y), (q_idx, q_y)):
            for episode_label in range(5):
                assert len(set(labels[idx[ys == episode_label]])) == 1
        assert len(set(labels[s_idx])) == 5
        seen_classes |= set(labels[s_idx])
    assert seen_classes == set("abcdef")


def test_episode_sampler_explains_impossible_requests():
    labels = np.array([0] * 10 + [1] * 3)
    with pytest.raises(ValueError, match="need 3 classes"):
        EpisodeSampler(labels, 3, 1, 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="fewer than k_shot \\+ n_query = 5"):
        EpisodeSampler(labels, 2, 2, 3, np.random.default_rng(0))
