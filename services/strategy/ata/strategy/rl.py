"""Training the strategy-weight agent with stable-baselines3 (PPO, DQN) and exporting the policy.

Needs the ``rl`` extra (torch, stable-baselines3); nothing else in the package imports this
module, so the live service never loads torch. The export copies the network weights into a
:class:`~ata.strategy.core.policy.NumpyPolicy`: PPO's actor (``mlp_extractor.policy_net`` then
``action_net``, tanh) or DQN's Q-network (``q_net.q_net``, relu).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from ata.strategy.core.policy import NumpyPolicy
from ata.strategy.rl_env import EnvData, StrategyWeightEnv

ALGORITHMS = ("ppo", "dqn")


class _Progress(BaseCallback):
    def __init__(self, report: Callable[[int], None]) -> None:
        super().__init__()
        self._report = report

    def _on_step(self) -> bool:
        self._report(self.num_timesteps)
        return True


@dataclass(frozen=True)
class Trained:
    algorithm: str
    model: BaseAlgorithm
    policy: NumpyPolicy


def make_model(algorithm: str, env: StrategyWeightEnv, seed: int) -> BaseAlgorithm:
    torch.set_num_threads(1)
    if algorithm == "ppo":
        # Exploration: entropy bonus; the learning rate decays linearly to 0 over training.
        return PPO("MlpPolicy", env, seed=seed, n_steps=1024, batch_size=128, n_epochs=5, ent_coef=0.01,
                   learning_rate=lambda progress: 3e-4 * progress, device="cpu", verbose=0)
    if algorithm == "dqn":
        # Exploration: epsilon-greedy from 1.0 to 0.05 over the first 30 % of the steps.
        return DQN("MlpPolicy", env, seed=seed, learning_starts=500, buffer_size=50_000, train_freq=4,
                   target_update_interval=1_000, exploration_fraction=0.3, exploration_initial_eps=1.0,
                   exploration_final_eps=0.05, device="cpu", verbose=0)
    raise ValueError(f"unknown algorithm {algorithm!r}; choose from {', '.join(ALGORITHMS)}")


def _dense_layers(modules: list[Any]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    linear = [m for m in modules if isinstance(m, torch.nn.Linear)]
    return ([m.weight.detach().cpu().numpy().astype(np.float64) for m in linear],
            [m.bias.detach().cpu().numpy().astype(np.float64) for m in linear])


def export_policy(algorithm: str, model: BaseAlgorithm, data: EnvData, actions: np.ndarray) -> NumpyPolicy:
    """The numpy forward pass equivalent to the model's deterministic (PPO) or greedy (DQN) action."""
    policy: Any = model.policy
    if algorithm == "ppo":
        modules = [*policy.mlp_extractor.policy_net, policy.action_net]
        activation = "tanh"
    else:
        modules = list(policy.q_net.q_net)
        activation = "relu"
    weights, biases = _dense_layers(modules)
    return NumpyPolicy(kind=algorithm, activation=activation, strategies=data.strategies, actions=actions,
                       obs_mean=data.obs_mean, obs_std=data.obs_std, weights=tuple(weights), biases=tuple(biases))


def train(algorithm: str, data: EnvData, *, timesteps: int, seed: int = 0, episode_bars: int = 252,
          drawdown_penalty: float = 1.0, progress: Callable[[int], None] | None = None) -> Trained:
    env = StrategyWeightEnv(data, episode_bars=episode_bars, drawdown_penalty=drawdown_penalty)
    model = make_model(algorithm, env, seed)
    model.learn(total_timesteps=timesteps, callback=_Progress(progress) if progress else None)
    return Trained(algorithm, model, export_policy(algorithm, model, data, env.actions))


def save_model(trained: Trained, directory: Path) -> Path:
    """Save the SB3 zip; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{trained.algorithm}.zip"
    trained.model.save(path)
    return path
