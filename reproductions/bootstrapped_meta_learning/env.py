"""The non-stationary two-colours grid world, vectorised over independent copies with numpy.

A ``size`` x ``size`` grid holds an agent and two objects (colour 0 and colour 1). Each step the agent moves
up, down, left or right (into a wall: it stays). Stepping onto an object gives that object's reward and moves the
object to a uniformly random cell that neither the agent nor the other object occupies; every other step gives
``step_reward``. The world never resets (non-episodic); ``collected`` marks the copies whose agent collected an
object on the last step (the agent may treat a collection as the end of its return, see ``agent.returns``). Every ``swap_every`` steps the two objects' rewards swap.
The observation is the (row, column) of the agent, object 0 and object 1, each coordinate one-hot:
``3 * 2 * size`` numbers. See README.md for which of these details are the paper's.
"""

from __future__ import annotations

import numpy as np

# Moves of the four actions as (row, column) offsets: up, down, left, right.
MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]])
N_ACTIONS = len(MOVES)


class TwoColours:
    """``n`` independent copies stepped together. Positions are cell indices ``row * size + column`` in
    ``self.pos[:, 0]`` (agent), ``[:, 1]`` (object 0) and ``[:, 2]`` (object 1)."""

    def __init__(self, n: int, rng: np.random.Generator, size: int = 5, swap_every: int = 100_000,
                 rewards: tuple[float, float] = (1.0, -1.0), step_reward: float = -0.04):
        if size < 2 or n < 1 or swap_every < 1:
            raise ValueError(f"env: need size >= 2, n >= 1, swap_every >= 1 (got {size}, {n}, {swap_every})")
        self.n, self.size, self.swap_every = n, size, swap_every
        self.rng = rng
        self.rewards = np.array(rewards, dtype=np.float64)
        self.step_reward = float(step_reward)
        self.t = 0  # steps taken so far
        self.collected = np.zeros(n, dtype=bool)  # per copy: an object was collected on the last step
        self.pos = np.stack([rng.permutation(size * size)[:3] for _ in range(n)])

    @property
    def obs_dim(self) -> int:
        return 6 * self.size

    @property
    def object_rewards(self) -> np.ndarray:
        """The two objects' current rewards (swapped after every ``swap_every`` steps)."""
        return self.rewards[::-1] if (self.t // self.swap_every) % 2 else self.rewards

    def observe(self) -> np.ndarray:
        """``[n, 6 * size]`` float32: one-hot row then one-hot column of agent, object 0, object 1."""
        rows, cols = np.divmod(self.pos, self.size)  # [n, 3] each
        out = np.zeros((self.n, 3, 2, self.size), dtype=np.float32)
        idx = np.arange(self.n)[:, None]
        ent = np.arange(3)[None, :]
        out[idx, ent, 0, rows] = 1.0
        out[idx, ent, 1, cols] = 1.0
        return out.reshape(self.n, -1)

    def step(self, actions: np.ndarray) -> np.ndarray:
        """Move every agent by its action; returns the ``[n]`` rewards."""
        actions = np.asarray(actions)
        if actions.shape != (self.n,) or actions.min() < 0 or actions.max() >= N_ACTIONS:
            raise ValueError(f"env.step: need {self.n} actions in 0..{N_ACTIONS - 1}")
        values = self.object_rewards
        rows, cols = np.divmod(self.pos[:, 0], self.size)
        rows = np.clip(rows + MOVES[actions, 0], 0, self.size - 1)
        cols = np.clip(cols + MOVES[actions, 1], 0, self.size - 1)
        self.pos[:, 0] = rows * self.size + cols
        reward = np.full(self.n, self.step_reward)
        self.collected = np.zeros(self.n, dtype=bool)
        for j in (0, 1):
            hit = self.pos[:, 0] == self.pos[:, 1 + j]
            if hit.any():
                reward[hit] = values[j]
                self.collected |= hit
                self._respawn(np.flatnonzero(hit), 1 + j)
        self.t += 1
        return reward

    def _respawn(self, envs: np.ndarray, which: int) -> None:
        """Object ``which`` (1 or 2) of ``envs`` to uniformly random cells the agent and other object do not hold."""
        free = np.ones((len(envs), self.size * self.size), dtype=bool)
        rows = np.arange(len(envs))
        free[rows, self.pos[envs, 0]] = False
        free[rows, self.pos[envs, 3 - which]] = False
        score = np.where(free, self.rng.random(free.shape), -1.0)
        self.pos[envs, which] = score.argmax(axis=1)
