"""ata.quant.indicators: hand-computed values, pandas references on real S&P 500 data, and
streaming == vectorised / snapshot-restore / no-look-ahead properties."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest
from arch.data import nasdaq, sp500
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from ata.quant import indicators as ind

NAN = math.nan


def close(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, scale: float = 1.0) -> None:
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-9, atol=1e-9 * scale, equal_nan=True)


# ----------------------------------------------------------------------------- hand-computed


def test_sma_hand_computed() -> None:
    close(ind.sma([1, 2, 3, 4], 2), [NAN, 1.5, 2.5, 3.5])
    close(ind.sma([1, 2], 3), [NAN, NAN])
    assert ind.sma([], 3).shape == (0,)


def test_ema_hand_computed() -> None:
    close(ind.ema([1, 2, 3], alpha=0.5), [1.0, 1.5, 2.25])
    close(ind.ema([4, 1], span=3), [4.0, 2.5])  # alpha = 2 / (3 + 1) = 0.5


def test_rolling_std_and_zscore_hand_computed() -> None:
    close(ind.rolling_std([1, 2, 3, 5], 3), [NAN, NAN, 1.0, math.sqrt(7 / 3)])
    close(ind.rolling_std([1, 3], 2, ddof=0), [NAN, 1.0])
    # window [2, 3, 5]: mean 10/3, sample std sqrt(7/3)
    close(ind.zscore([1, 2, 3, 5], 3), [NAN, NAN, 1.0, (5 - 10 / 3) / math.sqrt(7 / 3)])


def test_constant_window_has_zero_std_and_undefined_zscore_and_correlation() -> None:
    x = [0.1, 0.1, 0.1, 0.1, 0.2]
    std = ind.rolling_std(x, 3)
    assert std[2] == 0.0 and std[3] == 0.0 and std[4] > 0.0
    z = ind.zscore(x, 3)
    assert np.isnan(z[2]) and np.isnan(z[3]) and z[4] > 0.0
    corr = ind.rolling_correlation(x, [1.0, 2.0, 3.0, 4.0, 5.0], 3)
    assert np.isnan(corr[3]) and not np.isnan(corr[4])
    streaming = ind.ZScore(3)
    assert [math.isnan(streaming.update(v)) for v in x] == [True, True, True, True, False]


def test_atr_hand_computed() -> None:
    high, low, close_ = [10.0, 12.0, 11.0, 15.0], [8.0, 9.0, 7.0, 12.0], [9.0, 11.0, 8.0, 14.0]
    # true ranges: 2 (h-l of first bar), max(3, 3, 0)=3, max(4, 0, 4)=4, max(3, 7, 4)=7
    close(ind.true_range(high, low, close_), [2.0, 3.0, 4.0, 7.0])
    # seed = mean(2, 3) = 2.5 at index 1, then 0.5*4 + 0.5*2.5 = 3.25, then 0.5*7 + 0.5*3.25 = 5.125
    close(ind.atr(high, low, close_, 2), [NAN, 2.5, 3.25, 5.125])


def test_donchian_hand_computed() -> None:
    upper, lower = ind.donchian([3, 1, 2, 5, 4], [1, 0, 1, 3, 2], 3)
    close(upper, [NAN, NAN, 3, 5, 5])
    close(lower, [NAN, NAN, 0, 0, 1])


def test_realized_volatility_hand_computed() -> None:
    prices = [100.0, 110.0, 99.0]
    r1, r2 = math.log(1.1), math.log(0.9)
    close(ind.realized_volatility(prices, 2, periods_per_year=1), [NAN, NAN, math.sqrt((r1 * r1 + r2 * r2) / 2)])
    close(ind.realized_volatility(prices, 1, periods_per_year=4), [NAN, 2 * abs(r1), 2 * abs(r2)])


def test_rolling_correlation_hand_computed() -> None:
    x = [1.0, 2.0, 3.0, 4.0]
    close(ind.rolling_correlation(x, [2.0, 4.0, 6.0, 9.0], 3), [NAN, NAN, 1.0, np.corrcoef([2, 3, 4], [4, 6, 9])[0, 1]])
    close(ind.rolling_correlation(x, [-v for v in x], 2), [NAN, -1.0, -1.0, -1.0])


@pytest.mark.parametrize(
    "call",
    [
        lambda: ind.sma([1.0, NAN], 1),
        lambda: ind.ema([math.inf], span=2),
        lambda: ind.sma([1.0], 0),
        lambda: ind.rolling_std([1.0, 2.0], 1),  # ddof=1 needs two observations
        lambda: ind.ema([1.0]),
        lambda: ind.ema([1.0], span=2, alpha=0.5),
        lambda: ind.realized_volatility([1.0, 0.0], 1),
        lambda: ind.rolling_correlation([1.0, 2.0], [1.0], 2),
        lambda: ind.Sma(3).update(NAN),
        lambda: ind.Atr(3).update(1.0, math.inf, 1.0),
        lambda: ind.RealizedVolatility(3).update(-1.0),
        lambda: ind.Sma.restore(ind.Ema(span=3).snapshot()),
    ],
)
def test_invalid_input_is_refused(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        call()


# ----------------------------------------------------------------------------- references on real data


@pytest.fixture(scope="module")
def spx() -> pd.DataFrame:
    return sp500.load()


def test_vectorised_match_pandas_on_sp500(spx: pd.DataFrame) -> None:
    c = spx["Adj Close"]
    scale = float(c.max())
    close(ind.sma(c, 50), c.rolling(50).mean(), scale)
    close(ind.ema(c, span=20), c.ewm(span=20, adjust=False).mean(), scale)
    close(ind.ema(c, alpha=0.06), c.ewm(alpha=0.06, adjust=False).mean(), scale)
    close(ind.rolling_std(c, 20), c.rolling(20).std(), scale)
    close(ind.rolling_std(c, 20, ddof=0), c.rolling(20).std(ddof=0), scale)
    close(ind.zscore(c, 20), (c - c.rolling(20).mean()) / c.rolling(20).std())
    upper, lower = ind.donchian(spx["High"], spx["Low"], 55)
    close(upper, spx["High"].rolling(55).max())
    close(lower, spx["Low"].rolling(55).min())
    r = np.log(c).diff()
    close(ind.realized_volatility(c, 21), np.sqrt(252 * (r**2).rolling(21).mean()))
    ndx = nasdaq.load()["Adj Close"].reindex(c.index)
    assert not ndx.isna().any()
    close(ind.rolling_correlation(c.pct_change().fillna(0.0), ndx.pct_change().fillna(0.0), 63),
          c.pct_change().fillna(0.0).rolling(63).corr(ndx.pct_change().fillna(0.0)))


def test_atr_matches_wilder_reference_on_sp500(spx: pd.DataFrame) -> None:
    h, lo, c = spx["High"], spx["Low"], spx["Close"]
    tr = pd.concat([h - lo, (h - c.shift()).abs(), (lo - c.shift()).abs()], axis=1).max(axis=1)
    n = 14
    expected = [NAN] * (n - 1) + [tr.iloc[:n].mean()]
    for v in tr.iloc[n:]:
        expected.append(expected[-1] + (v - expected[-1]) / n)
    close(ind.atr(h, lo, c, n), expected, float(h.max()))


# ----------------------------------------------------------------------------- streaming properties

prices = st.lists(st.integers(100, 100_000).map(lambda cents: cents / 100), max_size=120)
windows = st.integers(2, 25)


def streaming_cases(window: int) -> list[tuple[Callable[[], ind.StreamingIndicator], Callable[..., Any], int]]:
    """(factory, vectorised function on an (n, 3) price array, number of update arguments)."""
    return [
        (lambda: ind.Sma(window), lambda a: ind.sma(a[:, 0], window), 1),
        (lambda: ind.Ema(span=window), lambda a: ind.ema(a[:, 0], span=window), 1),
        (lambda: ind.RollingStd(window), lambda a: ind.rolling_std(a[:, 0], window), 1),
        (lambda: ind.RollingStd(window, ddof=0), lambda a: ind.rolling_std(a[:, 0], window, ddof=0), 1),
        (lambda: ind.ZScore(window), lambda a: ind.zscore(a[:, 0], window), 1),
        (lambda: ind.RealizedVolatility(window), lambda a: ind.realized_volatility(a[:, 0], window), 1),
        (lambda: ind.RollingCorrelation(window), lambda a: ind.rolling_correlation(a[:, 0], a[:, 1], window), 2),
        (lambda: ind.Donchian(window), lambda a: np.stack(ind.donchian(a[:, 0], a[:, 1], window), axis=1), 2),
        (lambda: ind.Atr(window), lambda a: ind.atr(a[:, 0], a[:, 1], a[:, 2], window), 3),
    ]


def bars(values: list[float], other: list[float]) -> np.ndarray:
    """(high, low, close)-shaped rows: column 0 >= column 2 >= column 1."""
    n = len(values)
    b = np.asarray(other[:n] + [1.0] * (n - len(other[:n])), float)
    return np.stack([np.asarray(values, float) + b, np.asarray(values, float), np.asarray(values, float) + b / 2], axis=1)


def conditioning(rows: np.ndarray, window: int) -> float:
    """Largest squared spread of a column over its smallest non-zero window variance (at least 1).

    The streaming forms add and remove values from running moments: after a large value leaves a
    window, a nearly constant window keeps an absolute error of about an ulp of the squared
    spread, so a standardised output (z-score, correlation) may differ from the two-pass
    vectorised one by about ``eps * conditioning``; real disagreements are far larger."""
    worst = 1.0
    if rows.shape[0] < window:
        return worst
    for column in rows.T:
        variances = sliding_window_view(column, window).var(axis=1)
        nonzero = variances[variances > 0.0]
        if nonzero.size:
            worst = max(worst, float(np.ptp(column)) ** 2 / float(nonzero.min()))
    return worst


def feed(indicator: Any, rows: np.ndarray, arity: int) -> list[Any]:
    return [indicator.update(*row[:arity]) for row in rows]


@settings(max_examples=150, deadline=None)
@given(values=prices, other=prices, window=windows)
def test_streaming_matches_vectorised(values: list[float], other: list[float], window: int) -> None:
    rows = bars(values, other)
    for factory, vectorised, arity in streaming_cases(window):
        expected = vectorised(rows)
        streamed = np.asarray(feed(factory(), rows, arity), float).reshape(expected.shape)
        finite = expected[np.isfinite(expected)]
        scale = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0
        close(streamed, expected, scale * (1.0 + 1e-6 * conditioning(rows, window)))


@settings(max_examples=100, deadline=None)
@given(values=prices, other=prices, window=windows, data=st.data())
def test_snapshot_restore_continues_identically(
    values: list[float], other: list[float], window: int, data: st.DataObject
) -> None:
    rows = bars(values, other)
    split = data.draw(st.integers(0, len(rows)))
    for factory, _, arity in streaming_cases(window):
        uninterrupted = feed(factory(), rows, arity)
        first = factory()
        head = feed(first, rows[:split], arity)
        state = json.loads(json.dumps(first.snapshot(), allow_nan=False))
        restored = type(first).restore(state)
        assert restored.snapshot() == first.snapshot()
        resumed = head + feed(restored, rows[split:], arity)
        np.testing.assert_array_equal(np.asarray(resumed, float), np.asarray(uninterrupted, float))


@settings(max_examples=100, deadline=None)
@given(values=prices, other=prices, window=windows, data=st.data())
def test_vectorised_never_look_ahead(values: list[float], other: list[float], window: int, data: st.DataObject) -> None:
    """Output t is unchanged when everything after t is replaced."""
    rows = bars(values, other)
    cut = data.draw(st.integers(0, len(rows)))
    altered = rows.copy()
    altered[cut:] = altered[cut:] * 1.5 + 3.0
    for _, vectorised, _ in streaming_cases(window):
        np.testing.assert_array_equal(vectorised(rows)[:cut], vectorised(altered)[:cut])


def test_streaming_stays_accurate_over_long_runs() -> None:
    """Sliding updates are re-synchronised from the buffer, so error does not build up."""
    rng = np.random.default_rng(7)
    x = 1e4 + np.cumsum(rng.normal(0.0, 5.0, 200_000))
    s = ind.RollingStd(30)
    streamed = np.asarray([s.update(v) for v in x])
    close(streamed[-1000:], ind.rolling_std(x, 30)[-1000:], float(np.abs(x).max()))


def test_flat_stretch_after_a_large_move_gives_exact_zeros() -> None:
    """Regression: the sliding mean of squared returns once came out at -3e-18 (sqrt domain error)."""
    s = ind.Sma(20)
    values = [0.1776, 0.48, 1e-9, 3e-7] + [0.0] * 20
    assert [s.update(v) for v in values][-1] == 0.0
    rv = ind.RealizedVolatility(3)
    out = [rv.update(p) for p in [100.0, 160.0, 160.0, 160.0, 160.0, 160.0]]
    assert out[-1] == 0.0
    std = ind.RollingStd(3)
    assert [std.update(v) for v in [5.0, 1e6, 0.3, 0.3, 0.3]][-1] == 0.0


def test_ready_and_value_properties() -> None:
    d = ind.Donchian(2)
    d.update(5.0, 1.0)
    assert not d.ready and math.isnan(d.upper)
    assert d.update(4.0, 2.0) == (5.0, 1.0)
    assert d.ready and d.value == 3.0
    z = ind.ZScore(2)
    z.update(1.0)
    z.update(3.0)
    assert (z.mean, z.std, z.value) == (2.0, math.sqrt(2.0), 1 / math.sqrt(2.0))
    e = ind.Ema(alpha=0.5)
    assert not e.ready and math.isnan(e.value)
    assert e.update(2.0) == 2.0 and e.ready


def test_recursive_and_extreme_indicators_are_bit_identical_on_sp500(spx: pd.DataFrame) -> None:
    """EMA, ATR (after warm-up) and Donchian use the same float operations in both forms."""
    h, lo, c = (spx[k].to_numpy() for k in ("High", "Low", "Close"))
    e = ind.Ema(span=12)
    np.testing.assert_array_equal([e.update(v) for v in c], ind.ema(c, span=12))
    a = ind.Atr(14)
    np.testing.assert_array_equal([a.update(*bar) for bar in zip(h, lo, c, strict=True)], ind.atr(h, lo, c, 14))
    d = ind.Donchian(20)
    np.testing.assert_array_equal([d.update(*bar) for bar in zip(h, lo, strict=True)], np.stack(ind.donchian(h, lo, 20), axis=1))
