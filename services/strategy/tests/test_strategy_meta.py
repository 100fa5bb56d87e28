"""The meta-strategy's documented rules: conflict resolution, method by regime, fallbacks, hysteresis."""

from __future__ import annotations

from typing import Any

import pytest

from ata.strategy.core import MetaConfig, MetaStrategy, Method
from ata.strategy.core.meta import SymbolBook
from ata.strategy.core.strategies import Bar, MarketContext, Signal


class Scripted:
    """A signal source replaying fixed strengths (to test the rules in isolation)."""

    def __init__(self, name: str, strengths: list[float]) -> None:
        self.signal_name = name
        self.strengths = strengths
        self.i = 0

    def update(self, bar: Bar, context: MarketContext) -> Signal | None:
        s = self.strengths[min(self.i, len(self.strengths) - 1)]
        self.i += 1
        return Signal(self.signal_name, (s > 0) - (s < 0), s, 5)

    def snapshot(self) -> dict[str, Any]:
        return {"i": self.i}


def meta_of(scripts: dict[str, list[float]], **config: Any) -> MetaStrategy:
    cfg = MetaConfig(strategies=tuple(scripts), **{"methods_by_regime": {}, **config})
    return MetaStrategy(cfg, factory=lambda name: Scripted(name, scripts[name]))


def bar(i: int, close: float) -> Bar:
    return Bar(i, close, close, close, close)


@pytest.mark.parametrize(("strengths", "target", "agreement"), [
    ([0.8, 0.4], 0.6, 1.0),            # agreement: the plain average
    ([0.8, -0.4], 0.2 * (0.2 / 0.6), 0.2 / 0.6),  # conflict: net shrunk by the agreement
    ([0.5, -0.5], 0.0, 0.0),           # full conflict: stand aside
    ([0.5, -0.4], 0.0, 0.1 / 0.9),     # agreement below min_agreement (0.2): stand aside
    ([0.0, 0.0], 0.0, 1.0),            # all flat
])
def test_conflict_rule(strengths: list[float], target: float, agreement: float) -> None:
    meta = meta_of({"a": [strengths[0]], "b": [strengths[1]]})
    decision = meta.on_bar("X", bar(0, 100.0), MarketContext())
    assert decision is not None and decision.method is Method.EQUAL
    assert decision.target_weight == pytest.approx(target)
    assert decision.agreement == pytest.approx(agreement)
    assert sum(c.weight * c.strength for c in decision.contributions) == pytest.approx(decision.target_weight)


def test_method_is_chosen_by_regime_and_falls_back_without_history() -> None:
    config = {"methods_by_regime": {"crisis": Method.INVERSE_VOL, "bull_quiet": Method.PERFORMANCE}, "min_history_bars": 5}
    meta = meta_of({"a": [1.0], "b": [0.5]}, **config)
    first = meta.on_bar("X", bar(0, 100.0), MarketContext("crisis"))
    assert first is not None and first.method is Method.EQUAL  # no history yet
    assert meta.on_bar("X", bar(1, 101.0), MarketContext("sideways")).method is Method.EQUAL  # type: ignore[union-attr]
    closes = [100.0, 102.0, 99.0, 103.0, 101.0, 104.0, 102.0]
    for i, c in enumerate(closes, start=2):
        last = meta.on_bar("X", bar(i, c), MarketContext("crisis"))
    assert last is not None and last.method is Method.INVERSE_VOL
    # a has twice b's strength, so twice its return volatility and half its weight (before the agreement scale)
    weights = {c.strategy: c.weight for c in last.contributions}
    assert weights["b"] == pytest.approx(2 * weights["a"])
    # performance_regime needs history in the regime itself: bull_quiet has none yet -> inverse vol
    assert meta.on_bar("X", bar(20, 103.0), MarketContext("bull_quiet")).method is Method.INVERSE_VOL  # type: ignore[union-attr]


def test_performance_weighting_prefers_what_worked_in_the_regime() -> None:
    meta = meta_of({"long": [1.0], "short": [-1.0]}, default_method=Method.PERFORMANCE, min_history_bars=5, switching=False)
    close = 100.0
    for i in range(30):
        close *= 1.01 if i % 3 else 0.995  # a rising market: long earns, short loses
        decision = meta.on_bar("X", bar(i, close), MarketContext("bull_quiet"))
    assert decision is not None and decision.method is Method.PERFORMANCE
    weights = {c.strategy: c.weight for c in decision.contributions}
    assert weights["short"] == 0.0 and decision.target_weight == pytest.approx(1.0)


def test_switching_has_hysteresis_and_dwell() -> None:
    config = MetaConfig(strategies=("a",), methods_by_regime={}, min_history_bars=3, min_dwell_bars=4, halflife_bars=3.0,
                        periods_per_year=1.0, switch_off_sharpe=-0.5, switch_on_sharpe=0.5)
    book = SymbolBook(config, lambda name: Scripted(name, [1.0]), with_features=False)
    book.last_strength = {"a": 1.0}
    book.prev_close = 100.0
    history: list[tuple[bool, float]] = []
    close = 100.0
    returns = [-0.01, -0.012, -0.008, -0.011, -0.009, 0.001, -0.001, 0.002, 0.0, 0.012, 0.008, 0.011, 0.009, 0.013, 0.01]
    for r in returns:
        close *= 1 + r
        book.track(close)
        book.prev_close = close
        history.append((book.active["a"], book.overall["a"].sharpe(1.0)))
    states = [a for a, _ in history]
    off = states.index(False)
    assert off >= 3, "no switch before min_history_bars and min_dwell_bars"
    back = states.index(True, off)
    assert back - off >= 4, "dwell respected"
    between = [sharpe for active, sharpe in history[off:back] if -0.5 < sharpe < 0.5]
    assert between, "the Sharpe passed through the band without switching back (hysteresis)"
    assert history[back][1] > 0.5
