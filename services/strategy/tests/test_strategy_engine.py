"""The event engine: point-in-time context, deterministic ids, contributions, snapshot/restore."""

from __future__ import annotations

import pytest

from ata.events import RegimeLabel, SignalGenerated, TargetProposed
from ata.strategy.core import MetaConfig, MetaStrategy, StrategyEngine
from ata.strategy.core.strategies import Bar, MarketContext, Signal
from ata.strategy.data import load_bars
from ata.strategy.testing import bar_event, regime_state, sentiment_score

BARS = load_bars("sp500")[:400]
EVENTS = [bar_event("SPX", b) for b in BARS]


def run(engine: StrategyEngine, events: list) -> list:
    return [out for e in events for out in engine.handle(e)]


def test_outputs_are_derived_from_the_bar_and_reproducible() -> None:
    first, second = run(StrategyEngine(), EVENTS), run(StrategyEngine(), EVENTS)
    assert first == second
    targets = [m for m in first if isinstance(m, TargetProposed)]
    signals = [m for m in first if isinstance(m, SignalGenerated)]
    assert len({m.event_id for m in first}) == len(first)
    by_id = {e.event_id: e for e in EVENTS}
    for target in targets:
        cause = by_id[target.causation_id]
        assert target.ts_event == cause.ts_event and target.reference_price == cause.close
        assert target.target_weight == pytest.approx(sum(c.weight * c.strength for c in target.contributions), abs=1e-12)
    assert len(targets) == len({t.causation_id for t in targets}) > 250
    assert {s.strategy for s in signals} == {"ma_crossover", "ts_momentum", "mean_reversion", "donchian_breakout", "vol_managed"}


def test_regime_is_taken_strictly_before_the_bar_and_symbol_beats_market() -> None:
    engine = StrategyEngine()
    t = BARS[200].ts_ns
    engine.handle(regime_state("_market", t - 1, RegimeLabel.CRISIS))
    engine.handle(regime_state("SPX", t, RegimeLabel.BULL_QUIET))  # the bar's own state: not yet in force
    assert engine.context_at("SPX", t).regime == "crisis"
    assert engine.context_at("SPX", t + 1).regime == "bull_quiet"
    assert engine.context_at("OTHER", t + 1).regime == "crisis"


def test_sentiment_is_point_in_time_whatever_the_arrival_order() -> None:
    t = BARS[300].ts_ns
    late_first = StrategyEngine()
    late_first.handle(sentiment_score("SPX", t + 1, -0.9))  # published after the bar closed
    late_first.handle(sentiment_score("SPX", t, 0.4))
    assert late_first.context_at("SPX", t).sentiment == 0.4
    outputs = run(late_first, EVENTS[:301])
    tilt = [m for m in outputs if isinstance(m, SignalGenerated) and m.strategy == "sentiment_tilt"]
    assert [m.ts_event for m in tilt] == [t] and tilt[0].strength == pytest.approx(0.8)


def test_snapshot_restore_matches_an_uninterrupted_run() -> None:
    import orjson

    inputs = [regime_state("_market", BARS[0].ts_ns - 1, RegimeLabel.SIDEWAYS), *EVENTS]
    expected = run(StrategyEngine(), inputs)
    head = StrategyEngine()
    got = run(head, inputs[:250])
    resumed = StrategyEngine()
    resumed.restore(orjson.loads(orjson.dumps(head.snapshot())))
    got += run(resumed, inputs[250:])
    assert got == expected


def test_symbols_and_timeframe_filters() -> None:
    engine = StrategyEngine(MetaStrategy(MetaConfig()), symbols=("AAA",), timeframe="1d")
    assert run(engine, EVENTS) == []
    engine = StrategyEngine(timeframe="1m")
    assert run(engine, EVENTS) == []


def test_signals_are_published_when_they_change_and_the_latest_is_the_one_in_force() -> None:
    outputs = run(StrategyEngine(), EVENTS)
    signals = [m for m in outputs if isinstance(m, SignalGenerated)]
    targets = [m for m in outputs if isinstance(m, TargetProposed)]
    in_force: dict[str, SignalGenerated] = {}
    published = iter(signals)
    pending = next(published, None)
    for target in targets:  # outputs are in bar order: a bar's signals precede its target
        while pending is not None and pending.ts_event <= target.ts_event:
            previous = in_force.get(pending.strategy)
            assert previous is None or (previous.direction, previous.strength, previous.horizon_bars) != (
                pending.direction, pending.strength, pending.horizon_bars), "an unchanged signal was published"
            in_force[pending.strategy] = pending
            pending = next(published, None)
        assert {c.strategy: c.strength for c in target.contributions} == {
            name: s.strength for name, s in in_force.items()}
    assert len(signals) < sum(len(t.contributions) for t in targets), "unchanged signals are left out"


class Scripted:
    """A signal source answering a fixed script of strengths (None: no signal at that bar)."""

    signal_name = "scripted"

    def __init__(self, script: list[float | None]) -> None:
        self.script = iter(script)

    def update(self, bar: Bar, context: MarketContext) -> Signal | None:
        strength = next(self.script)
        return None if strength is None else Signal(self.signal_name, (strength > 0) - (strength < 0), strength, 3)

    def snapshot(self) -> dict[str, object]:
        return {}


def test_a_signal_that_was_absent_is_published_again_even_if_unchanged() -> None:
    script: list[float | None] = [0.5, 0.5, 0.25, None, 0.25, 0.25, 1.0, 1.0]
    config = MetaConfig(strategies=("scripted",), switching=False)
    engine = StrategyEngine(MetaStrategy(config, factory=lambda _name: Scripted(script)))
    bars = EVENTS[:len(script)]
    published = [(m.ts_event, m.strength) for m in run(engine, bars) if isinstance(m, SignalGenerated)]
    ts = [b.ts_event for b in bars]
    assert published == [(ts[0], 0.5), (ts[2], 0.25), (ts[4], 0.25), (ts[6], 1.0)]
