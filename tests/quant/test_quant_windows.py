"""The sliding windows against the streaming indicators they replace on hot paths --
``SlidingMoments`` against ``Sma`` / ``RollingStd`` / ``ZScore``, ``SlidingRealizedVolatility``
against ``RealizedVolatility``, ``SlidingChannel`` against ``Donchian``: values bit for bit,
snapshots interchangeable."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ata.quant.indicators import Donchian, RealizedVolatility, RollingStd, Sma, ZScore
from ata.quant.windows import SlidingChannel, SlidingMoments, SlidingRealizedVolatility

#: Prices from a small grid (repeats give zero returns and constant windows) or anywhere positive.
_prices = st.one_of(st.integers(min_value=1, max_value=6).map(lambda i: i / 2.0),
                    st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False))


#: Values from a small grid, so repeats, constant stretches and exact cancellations occur.
_grid_values = st.integers(min_value=-8, max_value=8).map(lambda i: i / 4.0)
_values = st.one_of(_grid_values, st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False))


@settings(max_examples=200, deadline=None)
@given(xs=st.lists(_values, max_size=120), window=st.integers(min_value=2, max_value=25))
def test_sliding_moments_equal_the_streaming_indicators_bit_for_bit(xs: list[float], window: int) -> None:
    moments, sma, std, zscore = SlidingMoments(window), Sma(window), RollingStd(window), ZScore(window)
    for x in xs:
        mean = moments.push(x)
        expected = sma.update(x)
        assert mean == expected or (math.isnan(mean) and math.isnan(expected))
        for ours, theirs in ((moments.std(), std.update(x)), (moments.zscore(), zscore.update(x))):
            assert ours == theirs or (math.isnan(ours) and math.isnan(theirs))
    assert moments.snapshot("Sma") == sma.snapshot()
    assert moments.snapshot("RollingStd") == std.snapshot()
    assert moments.snapshot("ZScore") == zscore.snapshot()


@settings(max_examples=100, deadline=None)
@given(head=st.lists(_values, max_size=60), tail=st.lists(_values, max_size=40), window=st.integers(min_value=1, max_value=12))
def test_sliding_moments_resume_from_an_indicator_snapshot(head: list[float], tail: list[float], window: int) -> None:
    sma = Sma(window)
    for x in head:
        sma.update(x)
    moments = SlidingMoments.restore(sma.snapshot())
    for x in tail:
        ours, theirs = moments.push(x), sma.update(x)
        assert ours == theirs or (math.isnan(ours) and math.isnan(theirs))
    assert moments.snapshot("Sma") == sma.snapshot()


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


@settings(max_examples=200, deadline=None)
@given(prices=st.lists(_prices, max_size=120), window=st.integers(min_value=1, max_value=25),
       periods=st.sampled_from([1.0, 252.0, 98_280.0]))
def test_sliding_realized_volatility_equals_the_indicator_bit_for_bit(prices: list[float], window: int,
                                                                       periods: float) -> None:
    ours, theirs = SlidingRealizedVolatility(window, periods), RealizedVolatility(window, periods)
    for p in prices:
        assert _same(ours.update(p), theirs.update(p))
    assert ours.snapshot() == theirs.snapshot()


@settings(max_examples=100, deadline=None)
@given(head=st.lists(_prices, max_size=60), tail=st.lists(_prices, min_size=1, max_size=40),
       window=st.integers(min_value=1, max_value=12))
def test_sliding_realized_volatility_resumes_from_either_snapshot(head: list[float], tail: list[float],
                                                                  window: int) -> None:
    indicator, sliding = RealizedVolatility(window), SlidingRealizedVolatility(window)
    for p in head:
        indicator.update(p)
        sliding.update(p)
    from_indicator = SlidingRealizedVolatility.restore(indicator.snapshot())
    back = RealizedVolatility.restore(sliding.snapshot())
    for p in tail:
        expected = indicator.update(p)
        assert _same(from_indicator.update(p), expected)
        assert _same(back.update(p), expected)
    assert from_indicator.snapshot() == indicator.snapshot()


def _bars(prices: list[float], spreads: list[float]) -> list[tuple[float, float]]:
    return [(p + s, p) for p, s in zip(prices, spreads, strict=False)]


@settings(max_examples=200, deadline=None)
@given(prices=st.lists(_prices, max_size=120), spreads=st.lists(_prices, min_size=120, max_size=120),
       window=st.integers(min_value=1, max_value=25))
def test_sliding_channel_equals_donchian_exactly(prices: list[float], spreads: list[float], window: int) -> None:
    ours, theirs = SlidingChannel(window), Donchian(window)
    for high, low in _bars(prices, spreads):
        (u1, l1), (u2, l2) = ours.update(high, low), theirs.update(high, low)
        assert _same(u1, u2) and _same(l1, l2)
    assert ours.snapshot() == theirs.snapshot()


@settings(max_examples=100, deadline=None)
@given(head=st.lists(_prices, max_size=60), tail=st.lists(_prices, min_size=1, max_size=40),
       window=st.integers(min_value=1, max_value=12))
def test_sliding_channel_resumes_from_either_snapshot(head: list[float], tail: list[float], window: int) -> None:
    indicator, sliding = Donchian(window), SlidingChannel(window)
    for p in head:
        indicator.update(p * 1.5, p)
        sliding.update(p * 1.5, p)
    from_indicator, back = SlidingChannel.restore(indicator.snapshot()), Donchian.restore(sliding.snapshot())
    for p in tail:
        expected = indicator.update(p * 1.5, p)
        for got in (from_indicator.update(p * 1.5, p), back.update(p * 1.5, p)):
            assert _same(got[0], expected[0]) and _same(got[1], expected[1])
    assert from_indicator.snapshot() == indicator.snapshot()


@pytest.mark.parametrize(("restore", "kind"), [(SlidingRealizedVolatility.restore, "RealizedVolatility"),
                                               (SlidingChannel.restore, "Donchian")])
def test_a_restore_refuses_another_kind_of_snapshot(restore: Callable[[dict[str, Any]], object], kind: str) -> None:
    with pytest.raises(ValueError, match=kind):
        restore({"kind": "Sma", "version": 1})
