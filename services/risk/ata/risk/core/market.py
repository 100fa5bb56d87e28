"""Risk's view of the market per symbol: last trade, freshness, volatility, ATR, liquidity.

Everything is updated from events only (bars and quotes), so a replay rebuilds it exactly.
Volatility is an exponentially weighted (RiskMetrics) estimate of per-bar log-return
variance; a short and a long estimate are kept so stress detection can see a spike.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class MarketParams:
    vol_lambda: float  # EWMA decay of the sizing volatility estimate (0.94 RiskMetrics daily)
    short_vol_lambda: float  # faster decay for the stress spike detector
    long_vol_lambda: float  # slower decay: the baseline a spike is measured against
    atr_bars: int  # Wilder smoothing length of the average true range
    volume_lambda: float  # EWMA decay of bar volume (liquidity baseline)
    min_vol_observations: int  # returns needed before the estimate counts as warm


@dataclass(slots=True)
class SymbolMarket:
    symbol: str
    last_price: float = 0.0  # last trade (bar close); 0 until the first bar
    last_ts_ns: int = 0  # newest bar or quote time
    last_bar_ts_ns: int = 0
    observations: int = 0
    variance: float = 0.0  # per-bar log-return variance (sizing)
    short_variance: float = 0.0
    long_variance: float = 0.0
    atr: float = 0.0
    avg_volume: float = 0.0
    last_volume: float = 0.0
    spread_pct: float = 0.0  # latest quoted spread / mid
    avg_spread_pct: float = 0.0
    last_return: float = 0.0

    @property
    def has_price(self) -> bool:
        return self.last_price > 0.0

    def warm(self, params: MarketParams) -> bool:
        return self.observations >= params.min_vol_observations

    def on_bar(self, params: MarketParams, ts_ns: int, *, high: float, low: float, close: float, volume: float) -> float | None:
        """Fold one bar in; return its log return (None for the first bar or an out-of-order bar)."""
        if ts_ns <= self.last_bar_ts_ns:
            return None
        prev = self.last_price
        self.last_bar_ts_ns = ts_ns
        self.last_ts_ns = max(self.last_ts_ns, ts_ns)
        self.last_price = close
        self.last_volume = volume
        decay = params.volume_lambda
        self.avg_volume = volume if self.avg_volume == 0.0 else decay * self.avg_volume + (1 - decay) * volume
        if prev <= 0.0:
            self.atr = high - low
            return None
        true_range = max(high - low, abs(high - prev), abs(low - prev))
        self.atr += (true_range - self.atr) / params.atr_bars
        ret = math.log(close / prev)
        sq = ret * ret
        self.observations += 1
        if self.observations == 1:
            self.variance = self.short_variance = self.long_variance = sq
        else:
            self.variance = params.vol_lambda * self.variance + (1 - params.vol_lambda) * sq
            self.short_variance = params.short_vol_lambda * self.short_variance + (1 - params.short_vol_lambda) * sq
            self.long_variance = params.long_vol_lambda * self.long_variance + (1 - params.long_vol_lambda) * sq
        self.last_return = ret
        return ret

    def on_quote(self, ts_ns: int, bid: float, ask: float) -> None:
        self.last_ts_ns = max(self.last_ts_ns, ts_ns)
        mid = (bid + ask) / 2
        self.spread_pct = (ask - bid) / mid
        self.avg_spread_pct = self.spread_pct if self.avg_spread_pct == 0.0 else 0.9 * self.avg_spread_pct + 0.1 * self.spread_pct

    def vol_per_bar(self, params: MarketParams, default: float) -> float:
        """Per-bar volatility estimate; ``default`` until enough returns were seen."""
        return math.sqrt(self.variance) if self.warm(params) else default

    def to_state(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SymbolMarket:
        return cls(**state)
