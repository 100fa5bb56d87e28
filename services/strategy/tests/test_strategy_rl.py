"""RL: the environment's contract, and the exported numpy policy acts exactly like the SB3 model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ata.strategy import research
from ata.strategy.core import MetaConfig, MetaStrategy, Method
from ata.strategy.core.features import FEATURE_NAMES
from ata.strategy.core.policy import PolicyError
from ata.strategy.core.strategies import MarketContext
from ata.strategy.data import load_bars
from ata.strategy.policy_file import load_policy, save_policy
from ata.strategy.rl_env import EnvData, StrategyWeightEnv

pytest.importorskip("stable_baselines3", reason="the rl extra (torch, stable-baselines3) is part of make install")
from ata.strategy import rl

BARS = load_bars("sp500")


@pytest.fixture(scope="module")
def data() -> EnvData:
    run = research.run_meta(BARS, MetaConfig(), features=True)
    return EnvData.from_run(run)


def test_environment_reward_is_return_minus_drawdown_penalty(data: EnvData) -> None:
    env = StrategyWeightEnv(data, episode_bars=50, cost_bps=0.0, drawdown_penalty=2.0)
    obs, _ = env.reset(seed=3)
    assert obs.shape == (len(FEATURE_NAMES),) and obs.dtype == np.float32
    equity = peak = 1.0
    for _ in range(50):
        t = env._t
        _, reward, terminated, truncated, info = env.step(np.int64(len(data.strategies)))  # equal weight
        position = float(np.mean(data.strengths[t]))
        ret = position * data.returns[t]
        before = 1 - equity / peak
        equity *= 1 + ret
        peak = max(peak, equity)
        assert info["position"] == pytest.approx(position)
        assert reward == pytest.approx(ret - 2.0 * max(0.0, (1 - equity / peak) - before))
        assert not terminated
    assert truncated


@pytest.mark.parametrize(("algorithm", "timesteps"), [("ppo", 2048), ("dqn", 1500)])
def test_numpy_policy_picks_the_sb3_action(algorithm: str, timesteps: int, data: EnvData, tmp_path: Path) -> None:
    trained = rl.train(algorithm, data, timesteps=timesteps, seed=1)
    save_policy(trained.policy, tmp_path / "p.npz")
    policy = load_policy(tmp_path / "p.npz")
    rows = np.random.default_rng(0).choice(len(data.features), size=1000, replace=False)
    raw = data.features[rows]
    expected, _ = trained.model.predict(data.standardised(raw), deterministic=True)
    actual = np.array([policy.act(x) for x in raw])
    np.testing.assert_array_equal(actual, expected)
    assert len(set(actual.tolist())) >= 1
    # The live path: the meta-strategy's rl method uses the loaded policy's weights.
    meta = MetaStrategy(MetaConfig(methods_by_regime={}, default_method=Method.RL, switching=False), policy=policy)
    for bar in BARS[:600]:
        decision = meta.on_bar("SPX", bar, MarketContext())
        features = meta.books["SPX"].last_features
        if decision is None:
            continue
        chosen = policy.strategy_weights(features) if features is not None else {}
        present = sum(chosen.get(s.strategy, 0.0) for s in decision.signals)
        if present > 0:
            assert decision.method is Method.RL
            weights = {c.strategy: c.weight for c in decision.contributions}
            assert all(weights[s.strategy] == pytest.approx(chosen[s.strategy] / present * decision.agreement)
                       for s in decision.signals if decision.target_weight != 0)
        else:  # features not warm yet, or the chosen strategies have no signal: documented fallback
            assert decision.method is not Method.RL


def test_corrupt_policy_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(PolicyError):
        load_policy(bad)
