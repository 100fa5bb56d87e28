"""Walk-forward evaluation: an equal-weight reference computed by hand, no look-ahead, and the
fallback keeping a run going when the optimiser fails."""

from __future__ import annotations

import numpy as np
import pytest

from ata.quant.portfolio.backtest import WalkForwardConfig, momentum_expected_returns, walk_forward
from ata.quant.portfolio.constraints import Constraints
from ata.quant.portfolio.covariance import CovarianceConfig
from ata.quant.portfolio.optimisers import EqualWeight, MeanVariance, RiskParity
from ata.quant.portfolio.rebalancing import RebalancePolicy


def _returns(n_bars: int = 300, n: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0.0003, 0.01, size=(n_bars, n)) * np.array([1.0, 2.0, 0.5, 1.5])[:n]


def test_daily_rebalanced_equal_weight_equals_a_hand_computation() -> None:
    r = _returns()
    cfg = WalkForwardConfig(covariance=CovarianceConfig("sample", 20, 20), rebalance_every=1, cost_bps=10.0,
                            policy=RebalancePolicy(drift_threshold=0.0, total_drift_threshold=0.0, min_trade_weight=0.0,
                                                   urgent_drift=1.0))
    res = walk_forward(r, EqualWeight(), Constraints.long_only_portfolio(4), cfg)
    equity, w, traded = [1.0], np.zeros(4), 0.0
    for t in range(19, 299):
        target = np.full(4, 0.25)
        step = np.abs(target - w).sum()
        traded += step
        port = target @ r[t + 1]
        equity.append(equity[-1] * (1 + port - 10e-4 * step))
        w = target * (1 + r[t + 1]) / (1 + port)
    assert res.equity == pytest.approx(np.array(equity), rel=1e-12)
    assert res.turnover_annual == pytest.approx(traded / 2 / (280 / 252))
    assert res.fallbacks == 0 and res.summary.periods == 281


def test_weights_never_use_future_returns() -> None:
    r = _returns(seed=3)
    cut = 180
    changed = r.copy()
    changed[cut + 1 :] = np.random.default_rng(9).normal(0, 0.05, size=changed[cut + 1 :].shape)
    cfg = WalkForwardConfig(covariance=CovarianceConfig("ledoit_wolf", 60, 40), rebalance_every=5)
    mean_variance = MeanVariance(risk_aversion=20.0, turnover_cost=1e-4)
    for opt, expected in ((RiskParity(), None), (mean_variance, momentum_expected_returns(30))):
        a = walk_forward(r, opt, Constraints.long_only_portfolio(4, 0.6), cfg, expected)
        b = walk_forward(changed, opt, Constraints.long_only_portfolio(4, 0.6), cfg, expected)
        k = cut - 39  # weights held over bar cut + 1 were decided at the close of bar cut
        np.testing.assert_array_equal(a.weights[: k + 1], b.weights[: k + 1])
        assert not np.array_equal(a.weights, b.weights)


def test_a_failing_optimiser_falls_back_and_the_run_goes_on() -> None:
    r = _returns(n=3)
    res = walk_forward(r, MeanVariance(), Constraints.long_only_portfolio(3), expected=None,
                       config=WalkForwardConfig(covariance=CovarianceConfig("ewma", 60, 30), rebalance_every=10))
    assert res.fallbacks == len(range(0, 300 - 30, 10))  # mean-variance without expected returns raises each time
    assert np.all(np.isfinite(res.equity)) and np.all(res.weights.sum(axis=1) > 0.9)
