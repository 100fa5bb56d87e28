"""A self-contained online regime labeller for offline studies (evaluate, optimise, train, attribute).

Live, the strategy service takes regimes from the regime service (``RegimeStateUpdated``). Offline
tools need the same label set without running that service, so this labeller derives it bar by
bar from the symbol's own bars, with no look-ahead:

- ``rv`` = annualised realised volatility of the last ``short_window`` log returns; ``base`` = the
  long-run volatility (EW root mean square of log returns, half-life ``long_halflife`` bars);
- ``trend`` = ``ln(close_t / close_{t-trend_window}) / (base_daily * sqrt(trend_window))``;
- volatile when ``rv > volatile_ratio * base``: ``crisis`` if also ``rv > crisis_ratio * base``
  and ``trend < 0``, else ``bear_volatile`` (trend < 0) or ``bull_volatile``;
- quiet: ``bull_quiet`` if ``trend > trend_threshold``, ``bear_quiet`` if below
  ``-trend_threshold``, else ``sideways``;
- a new raw label is confirmed after ``confirm_bars`` consecutive bars (hysteresis); ``""``
  during warm-up.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from ata.quant.windows import SlidingRealizedVolatility
from ata.strategy.core.strategies import Bar
from ata.strategy.core.tracking import halflife_alpha


@dataclass(frozen=True)
class RegimeProxyParams:
    short_window: int = 21
    long_halflife: float = 252.0
    trend_window: int = 63
    volatile_ratio: float = 1.25
    crisis_ratio: float = 2.0
    trend_threshold: float = 0.5
    confirm_bars: int = 3
    periods_per_year: float = 252.0


class RegimeProxy:
    def __init__(self, params: RegimeProxyParams | None = None) -> None:
        self.params = params or RegimeProxyParams()
        self._rv = SlidingRealizedVolatility(self.params.short_window, self.params.periods_per_year)
        self._alpha = halflife_alpha(self.params.long_halflife)
        self._mean_sq = math.nan
        self._closes: deque[float] = deque(maxlen=self.params.trend_window + 1)
        self._candidate = ""
        self._streak = 0
        self.label = ""

    def update(self, bar: Bar) -> str:
        """The confirmed label after ``bar`` (``""`` while warming up)."""
        p = self.params
        closes = self._closes
        if closes:
            r = math.log(bar.close / closes[-1])
            self._mean_sq = r * r if math.isnan(self._mean_sq) else self._mean_sq + self._alpha * (r * r - self._mean_sq)
        closes.append(bar.close)
        rv = self._rv.update(bar.close)  # NaN exactly until its window is full
        if len(closes) <= p.trend_window or math.isnan(rv) or not self._mean_sq > 0.0:
            return self.label
        base_daily = math.sqrt(self._mean_sq)
        base = base_daily * math.sqrt(p.periods_per_year)
        trend = math.log(bar.close / closes[0]) / (base_daily * math.sqrt(p.trend_window))
        raw = self._raw(rv, base, trend)
        if not self.label:
            self.label = raw
        elif raw == self.label:
            self._candidate, self._streak = "", 0
        else:
            self._streak = self._streak + 1 if raw == self._candidate else 1
            self._candidate = raw
            if self._streak >= p.confirm_bars:
                self.label, self._candidate, self._streak = raw, "", 0
        return self.label

    def _raw(self, rv: float, base: float, trend: float) -> str:
        p = self.params
        if rv > p.volatile_ratio * base:
            if trend < 0.0:
                return "crisis" if rv > p.crisis_ratio * base else "bear_volatile"
            return "bull_volatile"
        if trend > p.trend_threshold:
            return "bull_quiet"
        if trend < -p.trend_threshold:
            return "bear_quiet"
        return "sideways"


def label_series(bars: list[Bar], params: RegimeProxyParams | None = None) -> list[str]:
    """The proxy's confirmed label after each bar."""
    proxy = RegimeProxy(params)
    return [proxy.update(b) for b in bars]
