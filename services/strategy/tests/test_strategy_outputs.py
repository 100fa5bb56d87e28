"""Fast output construction equals validated construction: same ids, equal models, same wire bytes,
and the same ``ValidationError`` whenever a value is invalid."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ata.events import BarClosed, Message
from ata.events.strategy import ContributingSignal, SignalGenerated, TargetProposed
from ata.runtime.codec import decode, encode
from ata.strategy.core import StrategyEngine
from ata.strategy.core.meta import Contribution, Decision, Method
from ata.strategy.core.outputs import OutputFactory
from ata.strategy.core.strategies import Signal
from ata.strategy.data import load_bars
from ata.strategy.testing import bar_event

BARS = load_bars("sp500")[:300]
SOURCES = ["strategy", "strategy/replica-2", "backtest/strategy"]


def validated(bar: BarClosed, decision: Decision, source: str) -> list[Message]:
    """The outputs built through ``caused_by`` and full validation (the reference)."""
    out: list[Message] = [
        SignalGenerated.caused_by(bar, index=i, source=source, strategy=s.strategy, symbol=bar.symbol,
                                  direction=s.direction, strength=s.strength, horizon_bars=s.horizon_bars)
        for i, s in enumerate(decision.signals)
    ]
    out.append(TargetProposed.caused_by(
        bar, index=0, source=source, symbol=bar.symbol, target_weight=decision.target_weight,
        reference_price=bar.close, method=decision.method.value, regime=decision.regime,
        contributions=tuple(ContributingSignal(strategy=c.strategy, strength=c.strength, weight=c.weight)
                            for c in decision.contributions),
    ))
    return out


def assert_identical(got: list[Message], expected: list[Message]) -> None:
    assert got == expected
    assert [encode(m) for m in got] == [encode(m) for m in expected]
    for a, b in zip(got, expected, strict=True):
        assert type(a) is type(b)
        assert list(a.__dict__) == list(b.__dict__)
        assert [type(v) for v in a.__dict__.values()] == [type(v) for v in b.__dict__.values()]
        assert a.model_fields_set == b.model_fields_set
        assert hash(a) == hash(b)
        assert decode(encode(a)) == a


def outcome(build: Any) -> list[Message] | list[dict[str, Any]]:
    try:
        result: list[Message] = build()
    except ValidationError as exc:
        return exc.errors(include_url=False)
    return result


SYMBOLS = st.sampled_from(["SPX", "BRK.B", "BTC/USD"])
BAD_BAR_VALUES = {
    "symbol": st.sampled_from(["bad symbol", "AAPL\n", "", "lower"]),
    "close": st.sampled_from([0.0, -1.0, math.nan, math.inf, 1]),
    "ts_event": st.sampled_from([-1, 2**63, 1.5]),
}
ANY_NUMBER = st.one_of(st.floats(), st.integers(-3, 3), st.booleans())


def mostly(draw: st.DrawFn, valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any] | None) -> Any:
    """A valid value, or (one time in four, when ``invalid`` is given) an arbitrary one."""
    return draw(valid if invalid is None or draw(st.integers(0, 3)) else invalid)


@st.composite
def bars(draw: st.DrawFn, *, valid: bool) -> BarClosed:
    bar = bar_event(draw(SYMBOLS), draw(st.sampled_from(BARS)))
    if valid or draw(st.integers(0, 3)):
        return bar
    # Bars built without validation elsewhere (model_construct) must not slip through unchecked.
    field = draw(st.sampled_from(sorted(BAD_BAR_VALUES)))
    return bar.model_copy(update={field: draw(BAD_BAR_VALUES[field])})


@st.composite
def decisions(draw: st.DrawFn, *, valid: bool) -> Decision:
    def value(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> Any:
        return mostly(draw, good, None if valid else bad)

    signals = [
        Signal(value(st.text(min_size=1, max_size=64), st.text(max_size=70)), value(st.integers(-1, 1), ANY_NUMBER),
               value(st.floats(-1.0, 1.0), ANY_NUMBER), value(st.integers(1, 10_000), ANY_NUMBER))
        for _ in range(draw(st.integers(1, 6 if valid else 3)))
    ]
    contributions = tuple(Contribution(s.strategy, s.strength, value(st.floats(-1e6, 1e6), ANY_NUMBER)) for s in signals)
    return Decision("SPX", 0, 100.0, value(st.text(max_size=64), st.text(max_size=70)), draw(st.sampled_from(list(Method))),
                    tuple(signals), value(st.floats(-10.0, 10.0), ANY_NUMBER), 1.0, contributions)


@settings(max_examples=300, deadline=None)
@given(bars(valid=True), decisions(valid=True), st.sampled_from(SOURCES))
def test_valid_values_take_the_fast_path_and_equal_validated_construction(bar: BarClosed, decision: Decision,
                                                                          source: str) -> None:
    factory = OutputFactory(source)
    assert all(factory._fast_signal(bar, bar.event_id, s) is not None for s in decision.signals)
    assert factory._fast_target(bar, bar.event_id, decision.target_weight, decision.method.value, decision.regime,
                                contributions=()) is not None
    assert_identical(factory.build(bar, decision), validated(bar, decision, source))


@settings(max_examples=500, deadline=None)
@given(bars(valid=False), decisions(valid=False), st.sampled_from([*SOURCES, *SOURCES, "", "x" * 201]))
def test_any_values_give_what_validated_construction_gives(bar: BarClosed, decision: Decision, source: str) -> None:
    got = outcome(lambda: OutputFactory(source).build(bar, decision))
    expected = outcome(lambda: validated(bar, decision, source))
    if isinstance(expected, list) and expected and isinstance(expected[0], Message):
        assert_identical(got, expected)  # type: ignore[arg-type]
    else:
        assert got == expected


def test_engine_without_signals_publishes_the_same_targets() -> None:
    events = [bar_event("SPX", b) for b in BARS]
    full_engine, lean_engine = StrategyEngine(), StrategyEngine(publish_signals=False)
    full = [m for e in events for m in full_engine.handle(e)]
    lean = [m for e in events for m in lean_engine.handle(e)]
    assert lean == [m for m in full if not isinstance(m, SignalGenerated)]
    assert any(isinstance(m, TargetProposed) for m in lean)
    assert any(isinstance(m, SignalGenerated) for m in full)


def test_engine_stamps_the_source_in_force() -> None:
    engine = StrategyEngine(source="strategy/a")
    engine.source = "strategy/b"
    outputs = [m for b in BARS for m in engine.handle(bar_event("SPX", b))]
    last = bar_event("SPX", BARS[-1])
    expected = {m.event_id: m for m in validated(last, engine.last_decision["SPX"], "strategy/b")}
    of_last = [m for m in outputs if m.causation_id == last.event_id]
    assert any(isinstance(m, TargetProposed) for m in of_last)
    assert of_last == [expected[m.event_id] for m in of_last]
    assert {m.source for m in outputs} == {"strategy/b"}


BOUNDARY_CASES = [
    *[("strategy", v) for v in ["", "x" * 65, "y" * 64]],
    *[("direction", v) for v in [2, -2, True, 1.0]],
    *[("strength", v) for v in [math.nextafter(1.0, 2.0), math.nextafter(-1.0, -2.0), math.nan, math.inf, 1, True]],
    *[("horizon_bars", v) for v in [0, -1, 1.0, True]],
    *[("contribution_weight", v) for v in [math.nan, math.inf, 1]],
    *[("contribution_strength", v) for v in [math.nextafter(1.0, 2.0), math.nan, 1]],
    *[("target_weight", v) for v in [math.nextafter(10.0, 11.0), math.nextafter(-10.0, -11.0), 10.0, math.nan, 1]],
    *[("regime", v) for v in ["r" * 65, "r" * 64]],
    *[("symbol", v) for v in ["bad symbol", "AAPL\n", "lower", "_market"]],
    *[("close", v) for v in [0.0, -1.0, math.nan, math.inf, 1, 5e-324]],
    *[("ts_event", v) for v in [-1, 2**63, 2**63 - 1]],
    *[("source", v) for v in ["", "x" * 201, "x" * 200]],
]


@pytest.mark.parametrize(("field", "value"), BOUNDARY_CASES)
def test_a_value_at_or_beyond_a_bound_gives_what_validated_construction_gives(field: str, value: Any) -> None:
    bar, source = bar_event("SPX", BARS[-1]), "strategy"
    signal = Signal("ma_crossover", 1, 0.5, 20)
    contribution = Contribution("ma_crossover", 0.5, 0.25)
    target_weight, regime = 0.125, "bull_quiet"
    if field in ("strategy", "direction", "strength", "horizon_bars"):
        signal = dataclasses.replace(signal, **{field: value})
    elif field.startswith("contribution_"):
        contribution = dataclasses.replace(contribution, **{field.removeprefix("contribution_"): value})
    elif field in ("symbol", "close", "ts_event"):
        bar = bar.model_copy(update={field: value})
    elif field == "source":
        source = value
    elif field == "target_weight":
        target_weight = value
    else:
        regime = value
    decision = Decision("SPX", 0, 100.0, regime, Method.EQUAL, (Signal("donchian", 0, 0.0, 5), signal), target_weight,
                        1.0, (contribution,))
    got = outcome(lambda: OutputFactory(source).build(bar, decision))
    expected = outcome(lambda: validated(bar, decision, source))
    if expected and isinstance(expected[0], Message):
        assert_identical(got, expected)  # type: ignore[arg-type]
    else:
        assert got == expected
