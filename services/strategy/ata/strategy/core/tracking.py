"""Exponentially weighted performance statistics of a strategy's bar returns."""

from __future__ import annotations

import math
from typing import Any, Self


def halflife_alpha(halflife_bars: float) -> float:
    """Smoothing factor whose weights halve every ``halflife_bars`` observations."""
    if not halflife_bars > 0:
        raise ValueError("halflife_bars must be positive")
    return 1.0 - math.exp(math.log(0.5) / halflife_bars)


class EwStats:
    """EW mean and variance (West's incremental form) of a return stream, with a count.

    ``sharpe(periods_per_year)`` is ``mean / std * sqrt(periods_per_year)``; NaN when the std is 0.
    """

    __slots__ = ("_keep", "alpha", "count", "mean", "var")

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self._keep = 1.0 - alpha
        self.count = 0
        self.mean = 0.0
        self.var = 0.0

    def update(self, x: float) -> None:
        if self.count:
            alpha = self.alpha
            delta = x - self.mean
            self.mean += alpha * delta
            self.var = self._keep * (self.var + alpha * delta * delta)
        else:
            self.mean = x
        self.count += 1

    @property
    def std(self) -> float:
        return math.sqrt(self.var)

    def sharpe(self, periods_per_year: float) -> float:
        std = math.sqrt(self.var)
        return self.mean / std * math.sqrt(periods_per_year) if std > 0.0 else math.nan

    def snapshot(self) -> list[float]:
        return [self.alpha, float(self.count), self.mean, self.var]

    @classmethod
    def restore(cls, state: list[Any]) -> Self:
        obj = cls(float(state[0]))
        obj.count, obj.mean, obj.var = int(state[1]), float(state[2]), float(state[3])
        return obj
