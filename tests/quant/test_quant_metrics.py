"""ata.quant.metrics: hand-computed values, empyrical-style references on the real S&P 500
series, the defined edge cases, and hypothesis properties."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import warnings

import empyrical
import numpy as np
import pandas as pd
import pytest
from arch.data import sp500
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ata.quant import metrics as m

approx = pytest.approx


# ----------------------------------------------------------------------------- hand-computed


def test_returns_total_return_cagr_hand_computed() -> None:
    e = [100.0, 110.0, 99.0, 121.0]
    assert m.simple_returns(e) == approx([0.1, -0.1, 22 / 99])
    assert m.log_returns(e) == approx([math.log(1.1), math.log(0.9), math.log(121 / 99)])
    assert m.total_return(e) == approx(0.21)
    assert m.cagr(e, periods_per_year=3) == approx(0.21)  # three periods elapsed = one year
    assert m.cagr(e, periods_per_year=6) == approx(1.21**2 - 1)  # half a year
    assert m.calmar_ratio(e, periods_per_year=3) == approx(0.21 / 0.1)


def test_volatility_sharpe_sortino_hand_computed() -> None:
    assert m.annual_volatility([0.01, 0.03], periods_per_year=4) == approx(math.sqrt(2e-4) * 2)
    assert m.sharpe_ratio([0.01, 0.03], periods_per_year=1) == approx(0.02 / math.sqrt(2e-4))
    assert m.sharpe_ratio([0.01, 0.03], risk_free=0.01, periods_per_year=1) == approx(0.01 / math.sqrt(2e-4))
    r = [0.02, -0.01, 0.03, -0.02]
    # downside over all four periods: sqrt((0 + 1e-4 + 0 + 4e-4) / 4)
    assert m.downside_deviation(r) == approx(math.sqrt(1.25e-4))
    assert m.sortino_ratio(r, periods_per_year=1) == approx(0.005 / math.sqrt(1.25e-4))
    assert m.sortino_ratio(r, periods_per_year=252) == approx(0.005 * math.sqrt(252) / math.sqrt(1.25e-4))
    # target 0.01: adjusted [0.01, -0.02, 0.02, -0.03], downside sqrt((4e-4 + 9e-4) / 4)
    assert m.sortino_ratio(r, target=0.01, periods_per_year=1) == approx(-0.005 / math.sqrt(3.25e-4))


def test_drawdown_recovered_hand_computed() -> None:
    d = m.drawdowns([100.0, 110.0, 99.0, 121.0])
    assert d == m.Drawdown(approx(0.1), 1, 2, 3, 2, 2)
    assert d.recovered


def test_drawdown_not_recovered_is_measured_to_the_end() -> None:
    d = m.drawdowns([100.0, 120.0, 90.0, 100.0, 110.0])
    assert (d.max_drawdown, d.peak_index, d.trough_index, d.recovery_index) == (approx(0.25), 1, 2, None)
    assert d.duration_periods == 3 and d.longest_underwater_periods == 3 and not d.recovered


def test_longest_underwater_can_differ_from_deepest() -> None:
    d = m.drawdowns([100.0, 90.0, 100.0, 105.0, 104.0, 103.0, 102.0, 106.0])
    assert (d.max_drawdown, d.peak_index, d.trough_index, d.recovery_index) == (approx(0.1), 0, 1, 2)
    assert d.duration_periods == 2
    assert d.longest_underwater_periods == 4  # peak at 3 (105), back above it at 7


def test_turnover_exposure_hit_rate_hand_computed() -> None:
    assert m.turnover([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]) == approx(0.5)
    assert m.turnover([50.0, 50.0, 0.0], equity=[100.0, 100.0, 100.0]) == approx(0.125)
    assert m.turnover([10.0, 20.0], equity=[100.0, 200.0]) == approx(0.0)  # same weight, no turnover
    assert m.exposure([0.0, 1.0, 0.0, -2.0]) == 0.5
    assert m.exposure([[0.0, 0.0], [0.0, 1.0]]) == 0.5
    assert m.hit_rate([1.0, -1.0, 0.0, 2.0]) == 0.5  # break-even is not a hit


def test_summarize_hand_computed_and_json() -> None:
    e = [100.0, 110.0, 99.0, 121.0]
    s = m.summarize(e, periods_per_year=3, positions=[0.0, 55.0, 49.5, 0.0], trade_pnls=[10.0, -5.0])
    assert s.periods == 4 and s.total_return == approx(0.21) and s.cagr == approx(0.21)
    assert s.max_drawdown == approx(0.1) and s.max_drawdown_duration_periods == 2 and s.max_drawdown_recovered
    assert s.calmar == approx(2.1)
    # weights 0, 0.5, 0.5, 0 -> one-sided turnover per period (0.5 + 0 + 0.5) / 3 / 2, times 3 periods a year
    assert s.turnover_annual == approx(0.5) and s.exposure == 0.5
    assert s.hit_rate == 0.5 and s.trades == 2
    r = m.simple_returns(e)
    assert s.sharpe == m.sharpe_ratio(r, periods_per_year=3) and s.sortino == m.sortino_ratio(r, periods_per_year=3)
    bare = m.summarize(e)
    assert (bare.turnover_annual, bare.exposure, bare.hit_rate, bare.trades) == (None, None, None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        bare.cagr = 0.0  # type: ignore[misc]


# ----------------------------------------------------------------------------- edge cases


def test_empty_equity() -> None:
    s = m.summarize([])
    assert s.periods == 0 and math.isnan(s.total_return) and math.isnan(s.cagr)
    assert math.isnan(s.annual_volatility) and math.isnan(s.sharpe) and math.isnan(s.sortino)
    assert s.max_drawdown == 0.0 and s.max_drawdown_duration_periods == 0 and math.isnan(s.calmar)
    assert math.isnan(m.hit_rate([])) and math.isnan(m.exposure([]))


def test_single_point() -> None:
    s = m.summarize([100.0])
    assert s.total_return == 0.0 and math.isnan(s.cagr) and math.isnan(s.sharpe) and s.max_drawdown == 0.0
    assert math.isnan(m.turnover([1.0]))


def test_zero_volatility_sharpe_is_nan_not_inf() -> None:
    r = np.full(49, 0.001)
    assert m.annual_volatility(r) == 0.0 and math.isnan(m.sharpe_ratio(r))
    flat = m.summarize(np.full(10, 100.0))
    assert flat.annual_volatility == 0.0 and math.isnan(flat.sharpe) and math.isnan(flat.sortino)
    assert flat.total_return == 0.0 and flat.cagr == 0.0


def test_constant_growth_with_rounding_noise_counts_as_riskless() -> None:
    cash = 100.0 * 1.0001 ** np.arange(500)  # interest accrual: returns differ only in the last bits
    r = m.simple_returns(cash)
    assert r.max() != r.min()  # the noise this rule exists for
    s = m.summarize(cash)
    assert s.annual_volatility == 0.0 and math.isnan(s.sharpe) and s.max_drawdown == 0.0
    assert s.cagr == approx(1.0001**252 - 1)


def test_no_downside_sortino_is_nan_and_no_drawdown_calmar_is_nan() -> None:
    e = [100.0, 101.0, 103.0, 103.5]
    s = m.summarize(e)
    assert math.isnan(s.sortino) and not math.isnan(s.sharpe)
    assert s.max_drawdown == 0.0 and s.longest_underwater_periods == 0 and s.max_drawdown_recovered
    assert math.isnan(s.calmar)
    assert json.loads(json.dumps(s.to_dict()))["sortino"] is None


@pytest.mark.parametrize("equity", [[100.0, 0.0], [100.0, -5.0], [100.0, math.nan], [[100.0]]])
def test_invalid_equity_is_refused(equity: list[float]) -> None:
    with pytest.raises(ValueError):
        m.summarize(equity)


def test_cagr_overflow_is_inf_without_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert m.cagr([1.0, 17.0]) == math.inf


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        m.summarize([1.0, 2.0], periods_per_year=0)
    with pytest.raises(ValueError, match="periods"):
        m.turnover([1.0, 2.0, 3.0], equity=[1.0, 2.0])


# ----------------------------------------------------------------------------- S&P 500 references


@pytest.fixture(scope="module")
def spx() -> pd.Series:
    return sp500.load()["Adj Close"]


def test_sp500_against_empyrical_definitions_in_pandas(spx: pd.Series) -> None:
    """Reference numbers computed here with pandas, the way empyrical defines each statistic."""
    r = spx.pct_change().dropna()
    ann = 252
    cum = (1 + r).cumprod()
    ref_mdd = -(cum / cum.cummax() - 1).min()
    ref_cagr = cum.iloc[-1] ** (ann / len(r)) - 1
    ref = {
        "annual_volatility": r.std() * math.sqrt(ann),
        "sharpe": r.mean() / r.std() * math.sqrt(ann),
        "sortino": r.mean() * ann / (math.sqrt((r.clip(upper=0) ** 2).mean()) * math.sqrt(ann)),
        "cagr": ref_cagr,
        "max_drawdown": ref_mdd,
        "calmar": ref_cagr / ref_mdd,
        "total_return": spx.iloc[-1] / spx.iloc[0] - 1,
    }
    got = m.summarize(spx.to_numpy()).to_dict()
    for key, value in ref.items():
        assert got[key] == approx(value, rel=1e-9), key
    rf = 0.02 / 252
    assert m.sharpe_ratio(r, risk_free=rf) == approx((r - rf).mean() / (r - rf).std() * math.sqrt(ann), rel=1e-9)
    tgt = 0.0002
    ref_sortino_tgt = (r - tgt).mean() * ann / (math.sqrt(((r - tgt).clip(upper=0) ** 2).mean()) * math.sqrt(ann))
    assert m.sortino_ratio(r, target=tgt) == approx(ref_sortino_tgt, rel=1e-9)


def test_sp500_against_empyrical_package(spx: pd.Series) -> None:
    r = spx.pct_change().dropna()
    e = spx.to_numpy()
    assert m.sharpe_ratio(r) == approx(empyrical.sharpe_ratio(r), rel=1e-9)
    assert m.sharpe_ratio(r, risk_free=1e-4) == approx(empyrical.sharpe_ratio(r, risk_free=1e-4), rel=1e-9)
    assert m.sortino_ratio(r) == approx(empyrical.sortino_ratio(r), rel=1e-9)
    assert m.sortino_ratio(r, target=3e-4) == approx(empyrical.sortino_ratio(r, required_return=3e-4), rel=1e-9)
    assert m.downside_deviation(r) * math.sqrt(252) == approx(empyrical.downside_risk(r), rel=1e-9)
    assert m.annual_volatility(r) == approx(empyrical.annual_volatility(r), rel=1e-9)
    assert m.cagr(e) == approx(empyrical.annual_return(r), rel=1e-9)
    assert m.max_drawdown(e) == approx(-empyrical.max_drawdown(r), rel=1e-9)
    assert m.calmar_ratio(e) == approx(empyrical.calmar_ratio(r), rel=1e-9)
    weekly = spx.resample("W").last()
    assert m.sharpe_ratio(weekly.pct_change().dropna(), periods_per_year=52) == approx(
        empyrical.sharpe_ratio(weekly.pct_change().dropna(), period="weekly"), rel=1e-9
    )


def test_sp500_drawdown_episodes_are_the_known_ones(spx: pd.Series) -> None:
    d = m.drawdowns(spx.to_numpy())
    dates = spx.index
    # The 2007-2009 crisis: peak 9 Oct 2007, trough 9 Mar 2009, back at the peak (total return) on 28 Mar 2013.
    assert (dates[d.peak_index], dates[d.trough_index]) == (pd.Timestamp("2007-10-09"), pd.Timestamp("2009-03-09"))
    assert d.recovery_index is not None and dates[d.recovery_index] == pd.Timestamp("2013-03-28")
    assert d.duration_periods == d.recovery_index - d.peak_index
    # The longest stretch is the dot-com one (2000 to 2007), longer but shallower.
    assert d.longest_underwater_periods > d.duration_periods
    assert d.longest_underwater_periods == reference_longest_underwater(spx.to_numpy())


# ----------------------------------------------------------------------------- properties


def reference_longest_underwater(equity: np.ndarray) -> int:
    """Plain loop: the most periods from a peak to its recovery (or to the last period)."""
    longest, peak_value, peak_index = 0, equity[0], 0
    for i, v in enumerate(equity):
        if v >= peak_value:
            if i - peak_index > 1:  # everything in between was below the peak
                longest = max(longest, i - peak_index)
            peak_value, peak_index = v, i
    return int(max(longest, len(equity) - 1 - peak_index))


def reference_drawdowns(equity: list[float]) -> tuple[float, int, int, int | None, int]:
    """Plain loop: (max drawdown, peak, trough, recovery, duration) of the deepest episode."""
    best = (0.0, 0, 0, None, 0)
    peak_value, peak_index = equity[0], 0
    for i, v in enumerate(equity):
        if v >= peak_value:
            peak_value, peak_index = v, i
            continue
        depth = 1.0 - v / peak_value
        if depth > best[0]:
            recovery = next((j for j in range(i + 1, len(equity)) if equity[j] >= peak_value), None)
            end = recovery if recovery is not None else len(equity) - 1
            best = (depth, peak_index, i, recovery, end - peak_index)
    return best


equity_curves = st.lists(st.integers(1, 10_000).map(float), min_size=1, max_size=80)
returns_lists = st.lists(st.integers(-5_000, 5_000).map(lambda bp: bp / 10_000), min_size=2, max_size=80)


@settings(max_examples=200, deadline=None)
@given(equity_curves)
def test_drawdowns_match_a_plain_loop(equity: list[float]) -> None:
    d = m.drawdowns(equity)
    depth, peak, trough, recovery, duration = reference_drawdowns(equity)
    assert d.max_drawdown == approx(depth, abs=1e-15)
    assert (d.peak_index, d.trough_index, d.recovery_index, d.duration_periods) == (peak, trough, recovery, duration)
    assert d.longest_underwater_periods == reference_longest_underwater(np.asarray(equity))
    assert 0.0 <= d.max_drawdown < 1.0
    assert d.longest_underwater_periods >= d.duration_periods >= d.trough_index - d.peak_index >= 0
    assert (d.max_drawdown == 0.0) == bool(np.all(np.diff(equity) >= 0))


@settings(max_examples=100, deadline=None)
@given(equity_curves, st.floats(0.01, 1000.0))
def test_scaling_equity_changes_nothing(equity: list[float], k: float) -> None:
    a, b = m.summarize(equity).to_dict(), m.summarize([k * v for v in equity]).to_dict()
    for key, value in a.items():
        assert b[key] == (approx(value, rel=1e-9, abs=1e-12) if isinstance(value, float) else value), key


@settings(max_examples=200, deadline=None)
@given(returns_lists, st.floats(0.01, 100.0))
def test_sharpe_and_sortino_are_scale_invariant(r: list[float], c: float) -> None:
    assume(max(r) != min(r))
    scaled = [c * x for x in r]
    assert m.sharpe_ratio(scaled) == approx(m.sharpe_ratio(r), rel=1e-7)
    assert m.sharpe_ratio([-x for x in r]) == approx(-m.sharpe_ratio(r), rel=1e-9)
    assert m.annual_volatility(scaled) == approx(c * m.annual_volatility(r), rel=1e-7)
    assume(min(r) < 0.0)
    assert m.sortino_ratio(scaled) == approx(m.sortino_ratio(r), rel=1e-7)


@settings(max_examples=100, deadline=None)
@given(equity_curves, st.sampled_from([1.0, 12.0, 52.0, 252.0]))
def test_cagr_compounds_back_to_total_return(equity: list[float], ppy: float) -> None:
    assume(len(equity) >= 2)
    growth = m.cagr(equity, ppy)
    # annualising over a short span under- or overflows a float (documented: -100 % or +inf)
    assume(1e-9 < 1 + growth < 1e300)
    years = (len(equity) - 1) / ppy
    # 1 + growth carries the float error of forming it (an ulp of 1, large relative to a tiny
    # 1 + growth after a near-total loss), and raising it to ``years`` multiplies that error.
    tolerance = 1e-9 + years * 2 * sys.float_info.epsilon / (1 + growth)
    assert (1 + growth) ** years == approx(1 + m.total_return(equity), rel=tolerance)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.integers(-5, 5).map(float), min_size=2, max_size=2), min_size=2, max_size=40))
def test_turnover_and_exposure_bounds(weights: list[list[float]]) -> None:
    w = np.asarray(weights)
    t = m.turnover(w)
    assert t >= 0.0
    assert t <= np.abs(w).sum(axis=1).max()  # each step trades at most |old| + |new| (halved, summed twice)
    assert 0.0 <= m.exposure(w) <= 1.0
    assert m.turnover(np.vstack([w[:1]] * len(w))) == 0.0
