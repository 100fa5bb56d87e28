"""Calendar seasonality of returns: day-of-week and month-of-year effects with their significance.

For each calendar grouping the report gives per-group mean return, count and t-statistic
against zero, and two tests of "all groups have the same return distribution": the
Kruskal-Wallis H test (rank based, robust to fat tails) and the one-way ANOVA F test
(equivalent to OLS on group dummies). An effect is flagged significant when the
Kruskal-Wallis p-value is below ``alpha``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from scipy import stats

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True, slots=True)
class GroupStat:
    name: str
    count: int
    mean: float
    t_stat: float


@dataclass(frozen=True, slots=True)
class SeasonalEffect:
    """One calendar grouping's test result."""

    grouping: str
    groups: tuple[GroupStat, ...]
    kruskal_h: float
    kruskal_p: float
    anova_f: float
    anova_p: float
    significant: bool


def _effect(grouping: str, names: Sequence[str], codes: np.ndarray, returns: np.ndarray, alpha: float) -> SeasonalEffect:
    samples = []
    groups = []
    for code, name in enumerate(names):
        x = returns[codes == code]
        if len(x) < 2:
            continue
        sd = float(np.std(x, ddof=1))
        t = float(np.mean(x)) / (sd / math.sqrt(len(x))) if sd > 0 else 0.0
        groups.append(GroupStat(name, len(x), float(np.mean(x)), t))
        samples.append(x)
    if len(samples) < 2:
        raise ValueError(f"{grouping}: need at least two groups with two observations each")
    h, hp = stats.kruskal(*samples)
    f, fp = stats.f_oneway(*samples)
    return SeasonalEffect(grouping, tuple(groups), float(h), float(hp), float(f), float(fp), bool(hp < alpha))


def seasonality_report(
    ts_ns: Sequence[int], returns: Sequence[float], alpha: float = 0.05
) -> tuple[SeasonalEffect, SeasonalEffect]:
    """Day-of-week and month-of-year effects of ``returns`` stamped with UTC ``ts_ns`` (bar close times)."""
    if len(ts_ns) != len(returns):
        raise ValueError("ts_ns and returns must have the same length")
    days = np.empty(len(ts_ns), dtype=np.int64)
    months = np.empty(len(ts_ns), dtype=np.int64)
    for i, ts in enumerate(ts_ns):
        when = datetime.fromtimestamp(ts / 1e9, tz=UTC)
        days[i] = when.weekday()
        months[i] = when.month - 1
    r = np.asarray(returns, dtype=np.float64)
    return _effect("day_of_week", DAY_NAMES, days, r, alpha), _effect("month_of_year", MONTH_NAMES, months, r, alpha)
