"""``SlidingRealizedVolatility`` against the streaming ``RealizedVolatility``: values bit for bit,
snapshots interchangeable in both directions. (``SlidingMoments`` against ``Sma`` / ``RollingStd`` /
``ZScore`` is held to the same standard in the regime service's hot-path tests.)"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ata.quant.indicators import RealizedVolatility
from ata.quant.windows import SlidingRealizedVolatility

#: Prices from a small grid (repeats give zero returns and constant windows) or anywhere positive.
_prices = st.one_of(st.integers(min_value=1, max_value=6).map(lambda i: i / 2.0),
                    st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False))


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


def test_a_restore_refuses_another_kind_of_snapshot() -> None:
    with pytest.raises(ValueError, match="RealizedVolatility"):
        SlidingRealizedVolatility.restore({"kind": "Sma", "version": 1})
