"""The gymnasium environment in which an agent chooses strategy weights bar by bar.

- **Data**: per bar, every strategy's signal strength (from a meta-strategy run) and the online
  feature vector (:mod:`ata.strategy.core.features`: market features, regime one-hot and
  regime-conditional features), plus the next bar's return.
- **Observation**: the feature vector standardised with the training data's mean and std (the
  policy file carries both, so the live numpy policy standardises identically).
- **Action** (discrete): one row of the action table: a one-hot per strategy, then equal weight.
  The position is ``sum(w_i * s_i)`` and is held over the next bar.
- **Reward**: ``position * r_next - cost * |position change| - drawdown_penalty * (increase of the
  episode's drawdown)``: return minus a drawdown penalty.
- **Episodes**: ``episode_bars`` long from a random start (seeded through ``reset``), so an agent
  sees many market phases. Exploration is the algorithm's: an epsilon-greedy schedule for DQN
  (1.0 → 0.05 over the first 30 % of steps) and a decaying learning rate with an entropy bonus
  for PPO (see :mod:`ata.strategy.rl`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt

from ata.strategy.research import MetaRun, next_returns

FloatArray = npt.NDArray[np.float64]


def action_table(n_strategies: int) -> FloatArray:
    """One-hot rows per strategy, then an equal-weight row."""
    return np.vstack([np.eye(n_strategies), np.full((1, n_strategies), 1.0 / n_strategies)])


@dataclass(frozen=True)
class EnvData:
    strengths: FloatArray  # (n, k)
    features: FloatArray  # (n, f), no NaN
    returns: FloatArray  # (n,) next-bar returns
    strategies: tuple[str, ...]
    obs_mean: FloatArray
    obs_std: FloatArray

    @classmethod
    def from_run(cls, run: MetaRun) -> EnvData:
        """Rows where the features are warm and some strategy has a signal."""
        strengths = run.frame[[f"s_{n}" for n in run.strategies]].to_numpy()
        returns = next_returns(run.frame["close"].to_numpy())
        keep = ~np.isnan(run.features).any(axis=1) & (np.abs(strengths).sum(axis=1) > 0)
        keep[-1] = False  # no next return
        features = run.features[keep]
        std = features.std(axis=0)
        return cls(strengths[keep], features, returns[keep], run.strategies, features.mean(axis=0),
                   np.where(std > 1e-12, std, 1.0))

    def standardised(self, rows: FloatArray) -> npt.NDArray[np.float32]:
        return ((rows - self.obs_mean) / self.obs_std).astype(np.float32)


class StrategyWeightEnv(gym.Env[npt.NDArray[np.float32], np.int64]):
    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, data: EnvData, *, episode_bars: int = 252, cost_bps: float = 1.0, drawdown_penalty: float = 1.0) -> None:
        if len(data.returns) <= episode_bars:
            raise ValueError("not enough bars for one episode")
        self.data = data
        self.actions = action_table(len(data.strategies))
        self.episode_bars = episode_bars
        self.cost = cost_bps / 1e4
        self.drawdown_penalty = drawdown_penalty
        self.observations = data.standardised(data.features)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(data.features.shape[1],), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(len(self.actions))
        self._t = self._end = 0
        self._position = 0.0
        self._equity = self._peak = 1.0

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
        super().reset(seed=seed)
        self._t = int(self.np_random.integers(0, len(self.data.returns) - self.episode_bars))
        self._end = self._t + self.episode_bars
        self._position = 0.0
        self._equity = self._peak = 1.0
        return self.observations[self._t], {}

    def step(self, action: np.int64) -> tuple[npt.NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        t = self._t
        position = float(self.actions[int(action)] @ self.data.strengths[t])
        ret = position * self.data.returns[t] - self.cost * abs(position - self._position)
        drawdown_before = 1.0 - self._equity / self._peak
        self._equity *= 1.0 + ret
        self._peak = max(self._peak, self._equity)
        drawdown_after = 1.0 - self._equity / self._peak
        reward = ret - self.drawdown_penalty * max(0.0, drawdown_after - drawdown_before)
        self._position = position
        self._t += 1
        truncated = self._t >= self._end
        return self.observations[self._t], float(reward), False, truncated, {"return": ret, "position": position}
