"""Performance metrics of an equity curve, shared by the backtester, risk and reporting.

Conventions (they follow empyrical, so numbers can be compared with the wider ecosystem):

- ``equity`` is the account value per period, finite and strictly positive (a curve that
  reaches zero has no defined returns; ``ValueError``). ``returns`` are simple per-period
  returns ``e_t / e_{t-1} - 1``.
- ``periods_per_year`` annualises: 252 for daily bars (default), 52 weekly, 12 monthly,
  ``252 * 390`` for regular-session minute bars.
- Volatility, Sharpe: sample standard deviation (``ddof=1``); Sharpe is
  ``mean(r - rf) / std(r - rf) * sqrt(periods_per_year)`` with ``risk_free`` *per period*.
- Sortino: ``mean(r - target) * ppy / (downside_deviation * sqrt(ppy))`` where the downside
  deviation is ``sqrt(mean(min(r - target, 0)^2))`` over *all* periods (returns above the
  target count as zero, they are not dropped), as empyrical's ``downside_risk``.
- Drawdowns are positive fractions: 0.25 means 25 % below the previous peak;
  ``max_drawdown`` lies in [0, 1). Durations are counted in periods from the peak to the
  recovery (the first period back at or above the peak value); a drawdown not recovered by
  the last period is measured to the last period and flagged ``recovered=False``.
- CAGR: ``(e_last / e_first) ** (ppy / (n - 1)) - 1`` for ``n`` equity points (``n - 1``
  elapsed periods); Calmar: ``CAGR / max_drawdown``.

Edge cases, defined rather than left to division warnings (a ratio is NaN where it is
undefined, never ±inf from a zero denominator):

=============================================  ===========================================
input                                          result
=============================================  ===========================================
empty equity                                   total return, CAGR NaN; max drawdown 0.0
a single equity point                          total return 0.0; CAGR NaN (no time elapsed)
fewer than two returns                         volatility, Sharpe, Sortino NaN
returns constant (spread <= 1e-12)             volatility 0.0; Sharpe NaN
no return below the target                     Sortino NaN (zero downside deviation)
equity never below its running peak            max drawdown 0.0, durations 0, Calmar NaN
no trades / no periods                         hit rate / exposure / turnover NaN
growth too large to annualise in a float       CAGR +inf (e.g. 17x in a day at 252/year)
=============================================  ===========================================
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from ata.quant.indicators import FloatArray, _as_series

__all__ = [
    "Drawdown",
    "PerformanceSummary",
    "annual_volatility",
    "cagr",
    "calmar_ratio",
    "downside_deviation",
    "drawdown_series",
    "drawdowns",
    "exposure",
    "hit_rate",
    "log_returns",
    "max_drawdown",
    "sharpe_ratio",
    "simple_returns",
    "sortino_ratio",
    "summarize",
    "total_return",
    "turnover",
]

DEFAULT_PERIODS_PER_YEAR = 252.0


def _equity(equity: npt.ArrayLike) -> FloatArray:
    e = _as_series(equity, "equity")
    if np.any(e <= 0.0):
        raise ValueError("equity must be strictly positive")
    return e


# Returns whose spread is below this are constant: e.g. a cash balance compounding at a fixed
# rate gives returns that differ only by float rounding (~1e-16), and must not score a Sharpe
# ratio of 1e13. Real return series spread many orders of magnitude wider.
CONSTANT_RETURN_SPREAD = 1e-12


def _constant(r: FloatArray) -> bool:
    """True when the returns are constant up to float rounding: volatility is then 0."""
    return bool(r.max() - r.min() <= CONSTANT_RETURN_SPREAD)


def simple_returns(equity: npt.ArrayLike) -> FloatArray:
    """``e_t / e_{t-1} - 1``; one element shorter than ``equity``."""
    e = _equity(equity)
    return np.asarray(e[1:] / e[:-1] - 1.0, dtype=np.float64)


def log_returns(equity: npt.ArrayLike) -> FloatArray:
    """``ln(e_t / e_{t-1})``; one element shorter than ``equity``."""
    e = _equity(equity)
    return np.asarray(np.diff(np.log(e)), dtype=np.float64)


def total_return(equity: npt.ArrayLike) -> float:
    """``e_last / e_first - 1``; NaN for an empty curve."""
    e = _equity(equity)
    return float(e[-1] / e[0] - 1.0) if e.shape[0] else math.nan


def cagr(equity: npt.ArrayLike, periods_per_year: float = DEFAULT_PERIODS_PER_YEAR) -> float:
    """Compound annual growth rate over the ``n - 1`` elapsed periods; NaN when none elapsed."""
    e = _equity(equity)
    if e.shape[0] < 2:
        return math.nan
    with np.errstate(over="ignore"):  # e.g. 17x in one day, annualised: +inf, as documented
        return float(np.power(e[-1] / e[0], periods_per_year / (e.shape[0] - 1)) - 1.0)


def annual_volatility(returns: npt.ArrayLike, periods_per_year: float = DEFAULT_PERIODS_PER_YEAR) -> float:
    """``std(returns, ddof=1) * sqrt(periods_per_year)``; exactly 0.0 for constant returns."""
    r = _as_series(returns, "returns")
    if r.shape[0] < 2:
        return math.nan
    if _constant(r):
        return 0.0
    return float(np.std(r, ddof=1) * math.sqrt(periods_per_year))


def sharpe_ratio(
    returns: npt.ArrayLike, risk_free: float = 0.0, periods_per_year: float = DEFAULT_PERIODS_PER_YEAR
) -> float:
    """Annualised Sharpe ratio of per-period ``returns`` over a per-period ``risk_free`` rate.

    NaN with fewer than two returns or zero volatility (a riskless stream has no Sharpe ratio).
    """
    r = _as_series(returns, "returns") - risk_free
    if r.shape[0] < 2 or _constant(r):
        return math.nan
    return float(np.mean(r) / np.std(r, ddof=1) * math.sqrt(periods_per_year))


def downside_deviation(returns: npt.ArrayLike, target: float = 0.0) -> float:
    """Per-period ``sqrt(mean(min(r - target, 0)^2))`` over all periods; NaN when empty."""
    r = _as_series(returns, "returns")
    if r.shape[0] == 0:
        return math.nan
    below = np.minimum(r - target, 0.0)
    return float(np.sqrt(np.mean(below * below)))


def sortino_ratio(returns: npt.ArrayLike, target: float = 0.0, periods_per_year: float = DEFAULT_PERIODS_PER_YEAR) -> float:
    """Annualised Sortino ratio against a per-period ``target`` return (empyrical convention).

    NaN with fewer than two returns or when no return falls below the target.
    """
    r = _as_series(returns, "returns")
    dd = downside_deviation(r, target)
    if r.shape[0] < 2 or dd == 0.0:
        return math.nan
    return float(np.mean(r - target) * math.sqrt(periods_per_year) / dd)


def drawdown_series(equity: npt.ArrayLike) -> FloatArray:
    """``1 - e_t / max(e_0..e_t)`` per period, in [0, 1)."""
    e = _equity(equity)
    return np.asarray(1.0 - e / np.maximum.accumulate(e), dtype=np.float64)


def max_drawdown(equity: npt.ArrayLike) -> float:
    """Largest peak-to-trough decline as a positive fraction; 0.0 with no drawdown or no data."""
    dd = drawdown_series(equity)
    return float(dd.max()) if dd.shape[0] else 0.0


@dataclass(frozen=True, slots=True)
class Drawdown:
    """The deepest drawdown episode of a curve, and the longest one.

    Indices are positions in the equity array. ``duration_periods`` is ``recovery - peak``
    (or ``last - peak`` when not recovered); ``longest_underwater_periods`` is the same measure
    for the longest episode of the curve, which need not be the deepest.
    """

    max_drawdown: float
    peak_index: int
    trough_index: int
    recovery_index: int | None
    duration_periods: int
    longest_underwater_periods: int

    @property
    def recovered(self) -> bool:
        """True when the curve is back at its peak by the end (trivially so without drawdown)."""
        return self.recovery_index is not None or self.max_drawdown == 0.0


def drawdowns(equity: npt.ArrayLike) -> Drawdown:
    """Depth, location and durations of drawdowns (see ``Drawdown``); all zero with none."""
    e = _equity(equity)
    n = e.shape[0]
    if n == 0:
        return Drawdown(0.0, 0, 0, None, 0, 0)
    dd = 1.0 - e / np.maximum.accumulate(e)
    underwater = dd > 0.0
    if not underwater.any():
        return Drawdown(0.0, 0, 0, None, 0, 0)
    # Runs of underwater periods [start, end): the peak is start - 1 (index 0 is never underwater),
    # the recovery is end when end < n.
    edges = np.diff(np.concatenate(([0], underwater.view(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    peaks = starts - 1
    lengths = np.where(ends < n, ends, n - 1) - peaks
    trough = int(np.argmax(dd))
    episode = int(np.searchsorted(starts, trough, side="right") - 1)
    recovery = int(ends[episode]) if ends[episode] < n else None
    return Drawdown(
        max_drawdown=float(dd[trough]),
        peak_index=int(peaks[episode]),
        trough_index=trough,
        recovery_index=recovery,
        duration_periods=int(lengths[episode]),
        longest_underwater_periods=int(lengths.max()),
    )


def calmar_ratio(equity: npt.ArrayLike, periods_per_year: float = DEFAULT_PERIODS_PER_YEAR) -> float:
    """``CAGR / max_drawdown``; NaN when there is no drawdown."""
    mdd = max_drawdown(equity)
    return cagr(equity, periods_per_year) / mdd if mdd > 0.0 else math.nan


def _weights(positions: npt.ArrayLike, equity: npt.ArrayLike | None) -> FloatArray:
    """Positions as an ``(n, assets)`` array of fractions of equity."""
    p = np.asarray(positions, dtype=np.float64)
    if p.ndim == 1:
        p = p[:, None]
    if p.ndim != 2 or not np.all(np.isfinite(p)):
        raise ValueError("positions must be a finite 1-D or 2-D (periods x assets) array")
    if equity is None:
        return p
    e = _equity(equity)
    if e.shape[0] != p.shape[0]:
        raise ValueError(f"positions have {p.shape[0]} periods but equity has {e.shape[0]}")
    return np.asarray(p / e[:, None], dtype=np.float64)


def turnover(positions: npt.ArrayLike, equity: npt.ArrayLike | None = None) -> float:
    """Mean one-sided turnover per period: ``mean_t(sum_i |w_t,i - w_{t-1},i|) / 2``.

    ``positions`` are weights (fractions of equity) per period, ``(n,)`` for one asset or
    ``(n, assets)``; with ``equity`` they are market values in account currency and are
    divided by equity first. Moving the whole book from one asset to another is a turnover of
    1.0. Weights also drift with prices, so this measures rebalancing plus drift, the usual
    approximation when fills are not at hand. NaN with fewer than two periods. Multiply by
    ``periods_per_year`` for annual turnover.
    """
    w = _weights(positions, equity)
    if w.shape[0] < 2:
        return math.nan
    return float(np.abs(np.diff(w, axis=0)).sum(axis=1).mean() / 2.0)


def exposure(positions: npt.ArrayLike) -> float:
    """Fraction of periods holding any non-zero position; NaN with no periods."""
    w = _weights(positions, None)
    return float(np.any(w != 0.0, axis=1).mean()) if w.shape[0] else math.nan


def hit_rate(trade_pnls: npt.ArrayLike) -> float:
    """Fraction of closed trades with a strictly positive P&L (break-even trades are not hits);
    NaN with no trades."""
    pnl = _as_series(trade_pnls, "trade_pnls")
    return float(np.mean(pnl > 0.0)) if pnl.shape[0] else math.nan


@dataclass(frozen=True, slots=True)
class PerformanceSummary:
    """Headline statistics of one equity curve (see the module docstring for conventions).

    ``turnover_annual``, ``exposure`` are None when no positions were given, ``hit_rate`` and
    ``trades`` when no trade P&Ls were given; NaN means given but undefined.
    """

    periods: int
    periods_per_year: float
    total_return: float
    cagr: float
    annual_volatility: float
    sharpe: float
    sortino: float
    max_drawdown: float
    max_drawdown_duration_periods: int
    max_drawdown_recovered: bool
    longest_underwater_periods: int
    calmar: float
    turnover_annual: float | None
    exposure: float | None
    hit_rate: float | None
    trades: int | None

    def to_dict(self) -> dict[str, float | int | bool | None]:
        """Plain values for JSON: NaN becomes None."""
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in asdict(self).items()}


def summarize(
    equity: npt.ArrayLike,
    periods_per_year: float = DEFAULT_PERIODS_PER_YEAR,
    positions: npt.ArrayLike | None = None,
    trade_pnls: npt.ArrayLike | None = None,
    risk_free: float = 0.0,
) -> PerformanceSummary:
    """All headline metrics of ``equity`` in one pass over the data.

    ``positions`` (market values per period, aligned with ``equity``) add turnover and
    exposure; ``trade_pnls`` (one P&L per closed trade) add hit rate and trade count.
    ``risk_free`` is per period and used for Sharpe; Sortino uses a target of 0.
    """
    if periods_per_year <= 0:
        raise ValueError(f"periods_per_year must be positive, got {periods_per_year!r}")
    e = _equity(equity)
    r = np.asarray(e[1:] / e[:-1] - 1.0, dtype=np.float64)
    dd = drawdowns(e)
    growth = cagr(e, periods_per_year)
    pnl = None if trade_pnls is None else _as_series(trade_pnls, "trade_pnls")
    return PerformanceSummary(
        periods=int(e.shape[0]),
        periods_per_year=float(periods_per_year),
        total_return=total_return(e),
        cagr=growth,
        annual_volatility=annual_volatility(r, periods_per_year),
        sharpe=sharpe_ratio(r, risk_free, periods_per_year),
        sortino=sortino_ratio(r, 0.0, periods_per_year),
        max_drawdown=dd.max_drawdown,
        max_drawdown_duration_periods=dd.duration_periods,
        max_drawdown_recovered=dd.recovered,
        longest_underwater_periods=dd.longest_underwater_periods,
        calmar=growth / dd.max_drawdown if dd.max_drawdown > 0.0 else math.nan,
        turnover_annual=None if positions is None else turnover(positions, e) * periods_per_year,
        exposure=None if positions is None else exposure(positions),
        hit_rate=None if pnl is None else hit_rate(pnl),
        trades=None if pnl is None else int(pnl.shape[0]),
    )
