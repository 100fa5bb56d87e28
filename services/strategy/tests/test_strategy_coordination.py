"""Cross-strategy coordination in the meta-strategy: redundancy down-weighting, risk budgets, state."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from ata.quant.portfolio.coordination import RegimeTilt
from ata.quant.portfolio.optimisers import risk_contributions
from ata.strategy.core import MetaConfig, MetaStrategy, Method
from ata.strategy.core.coordination import CoordinationConfig
from ata.strategy.core.meta import Decision
from ata.strategy.core.strategies import Bar, MarketContext, Signal

N = 120
COORDINATION = CoordinationConfig(correlation_window_bars=40, min_correlation_bars=15, redundancy_threshold=0.5)


class Scripted:
    """A signal source replaying fixed strengths."""

    def __init__(self, name: str, strengths: np.ndarray) -> None:
        self.signal_name = name
        self.strengths = strengths
        self.i = 0

    def update(self, bar: Bar, context: MarketContext) -> Signal | None:
        s = float(self.strengths[min(self.i, len(self.strengths) - 1)])
        self.i += 1
        return Signal(self.signal_name, (s > 0) - (s < 0), s, 5)

    def snapshot(self) -> dict[str, Any]:
        return {"i": self.i}


def scripts(seed: int) -> dict[str, np.ndarray]:
    """``copy`` repeats ``a`` (a redundant strategy); ``b`` is independent of both."""
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(-1, 1, N), rng.uniform(-1, 1, N)
    return {"a": a, "copy": a.copy(), "b": b}


def meta_of(streams: dict[str, np.ndarray], **config: Any) -> MetaStrategy:
    cfg = MetaConfig(strategies=tuple(streams), **{"methods_by_regime": {}, "switching": False, "min_agreement": 0.0, **config})
    return MetaStrategy(cfg, factory=lambda name: Scripted(name, streams[name]))


def closes(seed: int) -> np.ndarray:
    return 100 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0.0005, 0.01, N)))


def run(meta: MetaStrategy, prices: np.ndarray, regime: str = "bull_quiet") -> list[Decision | None]:
    return [meta.on_bar("X", Bar(i, float(c), float(c), float(c), float(c)), MarketContext(regime))
            for i, c in enumerate(prices)]


def weights_of(decision: Decision | None) -> dict[str, float]:
    assert decision is not None
    total = sum(c.weight for c in decision.contributions)
    return {c.strategy: c.weight / total for c in decision.contributions}


def test_a_redundant_strategy_is_down_weighted_from_its_correlation() -> None:
    plain = run(meta_of(scripts(1)), closes(2))[-1]
    coordinated = run(meta_of(scripts(1), coordination=COORDINATION), closes(2))[-1]
    assert weights_of(plain) == pytest.approx({"a": 1 / 3, "copy": 1 / 3, "b": 1 / 3})
    assert coordinated is not None and coordinated.method is Method.EQUAL
    report = {c.strategy: c for c in coordinated.coordination}
    assert report["a"].max_correlation == pytest.approx(1.0) and report["copy"].max_correlation == pytest.approx(1.0)
    assert report["a"].redundancy == report["copy"].redundancy == pytest.approx(0.5)
    assert report["b"].max_correlation is not None and report["b"].max_correlation < 0.5 and report["b"].redundancy == 1.0
    # the copy and its original count once together: half of b's weight each
    assert weights_of(coordinated) == pytest.approx({"a": 0.25, "copy": 0.25, "b": 0.5})
    # the conflict rule is unchanged: the target is the contributions' sum
    assert coordinated.target_weight == pytest.approx(sum(c.weight * c.strength for c in coordinated.contributions))


def test_nothing_is_down_weighted_before_the_window_has_enough_bars() -> None:
    decisions = run(meta_of(scripts(1), coordination=COORDINATION), closes(2)[: COORDINATION.min_correlation_bars])
    assert all(c.redundancy == 1.0 and c.max_correlation is None for c in decisions[-1].coordination)  # type: ignore[union-attr]
    assert weights_of(decisions[-1]) == pytest.approx({"a": 1 / 3, "copy": 1 / 3, "b": 1 / 3})


def test_risk_budgets_are_realised_on_the_strategies_return_covariance() -> None:
    rng = np.random.default_rng(3)
    streams = {"a": rng.uniform(-1, 1, N), "b": rng.uniform(-1, 1, N), "c": rng.uniform(-1, 1, N)}
    budgets = {"a": 3.0, "b": 1.0, "c": 1.0}
    coordination = CoordinationConfig(correlation_window_bars=40, min_correlation_bars=15, risk_budgets=budgets,
                                      regime_tilt=RegimeTilt(sensitivity=0.5, floor=0.25, cap=2.0))
    meta = meta_of(streams, default_method=Method.RISK_BUDGET, coordination=coordination, min_history_bars=10)
    decision = run(meta, closes(4))[-1]
    assert decision is not None and decision.method is Method.RISK_BUDGET
    book = meta.books["X"]
    assert book.returns is not None
    window = np.array(book.returns.rows)
    cov = np.cov(window, rowvar=False, bias=True)
    # the budgets, tilted by each strategy's tracked Sharpe in the regime and its redundancy
    in_regime = book.regime_stats("bull_quiet")
    sharpes = [in_regime[n].sharpe(meta.config.periods_per_year) for n in book.names]
    tilt = coordination.regime_tilt.multipliers(sharpes)
    assert not np.allclose(tilt, 1.0), "the regime tilt must matter here, or the test proves less"
    report = {c.strategy: c for c in decision.coordination}
    adjusted = np.array([budgets[n] * tilt[i] * report[n].redundancy for i, n in enumerate(book.names)])
    expected = adjusted / adjusted.sum()
    assert [report[n].risk_share for n in book.names] == pytest.approx(expected, abs=1e-12)
    weights = weights_of(decision)
    realised = risk_contributions([weights[n] for n in book.names], cov)
    assert realised == pytest.approx(expected, abs=1e-6)


def test_risk_budget_falls_back_when_strategies_hedge_each_other_exactly() -> None:
    a = np.random.default_rng(5).uniform(0.2, 1.0, N)
    meta = meta_of({"long": a, "short": -a}, default_method=Method.RISK_BUDGET, coordination=COORDINATION,
                   min_history_bars=10)
    decision = run(meta, closes(6))[-1]
    assert decision is not None and decision.method is Method.INVERSE_VOL


def test_coordination_state_survives_snapshot_and_restore() -> None:
    config = MetaConfig(methods_by_regime={}, default_method=Method.RISK_BUDGET, coordination=COORDINATION,
                        min_history_bars=10)
    prices = 100 * np.exp(np.cumsum(np.random.default_rng(7).normal(0.0003, 0.015, 400)))
    bars = [Bar(i, float(c), float(c) * 1.01, float(c) * 0.99, float(c), 1e6) for i, c in enumerate(prices)]
    context = MarketContext("bull_quiet")
    whole = MetaStrategy(config)
    expected = [whole.on_bar("X", b, context) for b in bars]
    first = MetaStrategy(config)
    head = [first.on_bar("X", b, context) for b in bars[:250]]
    second = MetaStrategy(config)
    second.restore(orjson.loads(orjson.dumps(first.snapshot())))
    tail = [second.on_bar("X", b, context) for b in bars[250:]]
    assert head + tail == expected
    assert sum(d is not None and d.method is Method.RISK_BUDGET for d in tail) > 100


def test_risk_budget_needs_coordination_and_known_strategies() -> None:
    with pytest.raises(ValueError, match="use risk_budget, which needs coordination"):
        MetaConfig(default_method=Method.RISK_BUDGET)
    with pytest.raises(ValueError, match="risk_budgets names strategies not configured: nope"):
        MetaConfig(coordination=CoordinationConfig(risk_budgets={"nope": 1.0}))
    with pytest.raises(ValueError, match="risk_budgets must be positive"):
        CoordinationConfig(risk_budgets={"a": 0.0})
