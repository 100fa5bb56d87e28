"""``CleanEvents`` builds exactly what ``Message.origin`` builds: equal models, fields set and wire bytes,
on its assembled path and on the validated one (the first of a series, and any value validation would change
or refuse)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from ata.events import BarClosed, GroundTruthRegimeObserved
from ata.events.envelope import MAX_TS_NS
from ata.events.values import MARKET_KEY
from ata.marketdata.core import RawBar, RegimeObservation
from ata.marketdata.core.outputs import CleanEvents

SOURCE = "marketdata/test"
TS = 1_700_000_000_000_000_000
MINUTE = 60_000_000_000


def expected_bar(raw: RawBar, ts_init: int) -> BarClosed:
    return BarClosed.origin(
        natural_key=(raw.source, raw.symbol, raw.timeframe, raw.ts_open), ts_event=raw.ts_close, ts_init=ts_init,
        source=SOURCE, symbol=raw.symbol, timeframe=raw.timeframe, ts_open=raw.ts_open, open=raw.open, high=raw.high,
        low=raw.low, close=raw.close, volume=raw.volume, venue=raw.venue or raw.source[:64])


def expected_truth(obs: RegimeObservation, ts_init: int) -> GroundTruthRegimeObserved:
    return GroundTruthRegimeObserved.origin(
        natural_key=(obs.source, MARKET_KEY, obs.ts), ts_event=obs.ts, ts_init=ts_init, source=SOURCE, symbol=MARKET_KEY,
        regime=obs.regime, volatility_regime=obs.volatility_regime)


def assert_same(got: BaseModel, expected: BaseModel) -> None:
    assert got == expected and hash(got) == hash(expected)
    assert got.model_fields_set == expected.model_fields_set
    assert list(got.__dict__) == list(expected.__dict__)
    assert [type(v) for v in got.__dict__.values()] == [type(v) for v in expected.__dict__.values()]
    assert got.model_dump_json() == expected.model_dump_json()


def raw_bar(ts_open: int = TS, **changes: object) -> RawBar:
    return RawBar("dataset", "SYN000", "1m", ts_open, ts_open + MINUTE, 100.0, 101.0, 99.0, 100.5, 10.0)._replace(**changes)


prices = st.floats(min_value=5e-324, max_value=1e300, allow_nan=False, allow_infinity=False)


@given(st.lists(prices, min_size=4, max_size=4), st.floats(0.0, 1e300) | st.just(-0.0), st.integers(0, 2**62),
       st.integers(0, 2**62), st.sampled_from(["", "venue-x"]))
def test_bar_equals_validated_construction(four_prices: list[float], volume: float, ts_open: int, ts_init: int,
                                           venue: str) -> None:
    low, o, close, high = sorted(four_prices)
    events = CleanEvents(SOURCE)
    for raw in (raw_bar(ts_open, venue=venue), raw_bar(ts_open + 1, open=o, high=high, low=low, close=close,
                                                       volume=volume, venue=venue)):
        assert_same(events.bar(raw, ts_init), expected_bar(raw, ts_init))  # the first builds by validation, the next not


@pytest.mark.parametrize("changes", [
    {"open": 100}, {"volume": 10}, {"ts_open": True}, {"symbol": type("Text", (str,), {})("SYN000")},
])
def test_values_validation_would_convert_are_converted(changes: dict[str, object]) -> None:
    events = CleanEvents(SOURCE)
    events.bar(raw_bar(TS - MINUTE), TS)
    raw = raw_bar()._replace(**changes)
    assert_same(events.bar(raw, TS), expected_bar(raw, TS))


@pytest.mark.parametrize("changes", [
    {"open": math.nan}, {"high": math.inf}, {"low": 0.0}, {"volume": -1.0}, {"volume": math.inf},
    {"high": 99.5}, {"low": 100.7}, {"ts_open": -1}, {"ts_close": TS - 1}, {"ts_close": MAX_TS_NS + 1},
])
def test_values_validation_refuses_still_raise(changes: dict[str, object]) -> None:
    events = CleanEvents(SOURCE)
    events.bar(raw_bar(TS - MINUTE), TS)
    with pytest.raises(ValidationError):
        events.bar(raw_bar()._replace(**changes), TS)


def test_invalid_strings_raise_every_time() -> None:
    events = CleanEvents(SOURCE)
    for _ in range(2):
        with pytest.raises(ValidationError):
            events.bar(raw_bar(symbol="lower"), TS)
    with pytest.raises(ValidationError):
        events.bar(raw_bar(ts_open=TS, timeframe="1 minute"), TS)
    with pytest.raises(ValidationError):
        CleanEvents("").bar(raw_bar(), TS)


@given(st.integers(0, MAX_TS_NS), st.integers(0, MAX_TS_NS), st.sampled_from(["calm", "stress"]))
def test_truth_equals_validated_construction(ts: int, ts_init: int, volatility: str) -> None:
    events = CleanEvents(SOURCE)
    for obs in (RegimeObservation("dataset", 0, "bull", volatility), RegimeObservation("dataset", ts, "bull", volatility)):
        assert_same(events.truth(obs, ts_init), expected_truth(obs, ts_init))
    with pytest.raises(ValidationError):
        events.truth(RegimeObservation("dataset", -1, "bull", volatility), ts_init)
    with pytest.raises(ValidationError):
        events.truth(RegimeObservation("dataset", ts, "bull", "storm"), ts_init)
