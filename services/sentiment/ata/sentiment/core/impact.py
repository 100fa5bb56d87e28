"""News impact: an event study of abnormal returns after news (market model), pure numpy.

Contract of :func:`event_study`:

- Bars are daily closes per symbol plus the market's, on one shared calendar of close times
  (ns). Returns are simple close-to-close returns; return ``t`` ends at close ``t``.
- Day 0 of an event is the first return whose close is strictly after the item's availability
  (publication + delay): the first return the news could have moved. Nothing at or after day 0
  enters the estimation.
- Market model per event: OLS ``r_i = alpha + beta * r_m`` over the ``estimation_days`` returns
  ending ``gap_days`` before day 0; events with fewer than ``min_estimation`` returns, or whose
  window ``[0, horizon_days]`` runs past the data, are skipped (and counted).
- Abnormal return ``AR_t = r_i,t - (alpha + beta * r_m,t)`` for ``t = 0..horizon_days``;
  cumulative ``CAR_t``. :func:`summarize` groups events by a key (source, category, label) and
  reports the mean CAR path, the count, and the t-statistic of the mean final CAR across events.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class NewsEvent:
    symbol: str
    available_ns: int
    source: str
    category: str
    label: str
    score: float = 0.0


@dataclass(frozen=True, slots=True)
class EventResult:
    event: NewsEvent
    alpha: float
    beta: float
    abnormal: FloatArray  # AR_0..AR_h

    @property
    def car(self) -> FloatArray:
        return np.cumsum(self.abnormal)


@dataclass(frozen=True, slots=True)
class StudyParams:
    estimation_days: int = 120
    gap_days: int = 5
    horizon_days: int = 5
    min_estimation: int = 60


@dataclass(frozen=True, slots=True)
class GroupSummary:
    key: str
    count: int
    mean_car: FloatArray  # mean CAR_0..CAR_h across events
    t_stat: float  # of the mean final CAR


@dataclass(frozen=True, slots=True)
class Study:
    results: list[EventResult]
    skipped: int


def simple_returns(closes: FloatArray) -> FloatArray:
    """``r_t = c_t / c_{t-1} - 1``, with ``r_0`` NaN so returns stay aligned with closes."""
    out = np.full(closes.shape, np.nan)
    out[1:] = closes[1:] / closes[:-1] - 1.0
    return out


def market_model(stock: FloatArray, market: FloatArray) -> tuple[float, float, int]:
    """OLS ``alpha, beta`` of ``stock`` on ``market`` over the rows where both are finite, and that row count."""
    ok = np.isfinite(stock) & np.isfinite(market)
    x, y = market[ok], stock[ok]
    n = int(ok.sum())
    if n < 2 or float(np.var(x)) == 0.0:
        return float("nan"), float("nan"), n
    beta = float(np.cov(x, y, ddof=1)[0, 1] / np.var(x, ddof=1))
    alpha = float(y.mean() - beta * x.mean())
    return alpha, beta, n


def event_study(
    close_ns: Sequence[int], closes: Mapping[str, FloatArray], market: FloatArray, events: Sequence[NewsEvent],
    params: StudyParams | None = None,
) -> Study:
    """Abnormal returns of each event (see the module contract)."""
    p = params or StudyParams()
    times = np.asarray(close_ns, dtype=np.int64)
    market_r = simple_returns(np.asarray(market, dtype=np.float64))
    stock_r = {s: simple_returns(np.asarray(c, dtype=np.float64)) for s, c in closes.items()}
    results, skipped = [], 0
    for event in events:
        r = stock_r.get(event.symbol)
        day0 = int(np.searchsorted(times, event.available_ns, side="right"))
        end = day0 + p.horizon_days
        start = day0 - p.gap_days - p.estimation_days
        if r is None or start < 1 or end >= len(times):
            skipped += 1
            continue
        est = slice(start, day0 - p.gap_days)
        alpha, beta, n = market_model(r[est], market_r[est])
        if n < p.min_estimation or not np.isfinite(beta):
            skipped += 1
            continue
        window = slice(day0, end + 1)
        results.append(EventResult(event, alpha, beta, r[window] - (alpha + beta * market_r[window])))
    return Study(results, skipped)


def summarize(results: Sequence[EventResult], key: Callable[[NewsEvent], str]) -> list[GroupSummary]:
    """Mean CAR path per group, sorted by key."""
    groups: dict[str, list[FloatArray]] = defaultdict(list)
    for result in results:
        groups[key(result.event)].append(result.car)
    summaries = []
    for name in sorted(groups):
        cars = np.vstack(groups[name])
        final = cars[:, -1]
        sd = float(final.std(ddof=1)) if len(final) > 1 else float("nan")
        t = float(final.mean() / (sd / np.sqrt(len(final)))) if sd and np.isfinite(sd) else float("nan")
        summaries.append(GroupSummary(name, len(final), cars.mean(axis=0), t))
    return summaries


def synthetic_closes(
    close_ns: Sequence[int], symbols: Sequence[str], events: Sequence[NewsEvent], *, seed: int,
    impact_by_label: Mapping[str, float], market_vol: float = 0.01, idio_vol: float = 0.015,
) -> tuple[dict[str, FloatArray], FloatArray, dict[str, float]]:
    """Seeded daily closes with a market factor, per-symbol betas, and a known news effect.

    Each event adds ``impact_by_label[label]`` to its symbol's return on its day 0, so an event
    study can be checked against the effect it should recover. Returns closes, market closes,
    and the true betas.
    """
    rng = np.random.default_rng(seed)
    n = len(close_ns)
    market_r = rng.normal(0.0003, market_vol, n)
    times = np.asarray(close_ns, dtype=np.int64)
    betas = {s: float(rng.uniform(0.6, 1.4)) for s in symbols}
    shocks = {s: np.zeros(n) for s in symbols}
    for event in events:
        day0 = int(np.searchsorted(times, event.available_ns, side="right"))
        if event.symbol in shocks and day0 < n:
            shocks[event.symbol][day0] += impact_by_label.get(event.label, 0.0)
    closes: dict[str, FloatArray] = {}
    for s in symbols:
        r = betas[s] * market_r + rng.normal(0.0, idio_vol, n) + shocks[s]
        r[0] = 0.0
        closes[s] = np.asarray(100.0 * np.cumprod(1.0 + r), dtype=np.float64)
    market_r[0] = 0.0
    return closes, np.asarray(100.0 * np.cumprod(1.0 + market_r), dtype=np.float64), betas
