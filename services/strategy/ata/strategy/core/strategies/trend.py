"""Trend following: moving-average crossover and time-series momentum.

Definitions (the tests recompute them with plain pandas on the real S&P 500 series):

- ``ma_crossover``: ``gap_t = SMA_fast(close)_t / SMA_slow(close)_t - 1``;
  ``strength = clip(gap / band, -1, 1)``. Horizon: ``fast`` bars.
- ``ts_momentum``: ``m_t = ln(close_t / close_{t-L})``, ``sigma_t`` = sample std (ddof 1) of the
  last ``vol_window`` daily log returns; ``strength = clip(m / (sigma * sqrt(L)) / full_t, -1, 1)``
  (a volatility-scaled momentum t-statistic; a flat window gives 0). Horizon: ``L / 4`` bars.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import ClassVar

from ata.quant.windows import SlidingMoments
from ata.strategy.core.strategies.base import Bar, MarketContext, Strategy, StrategyParams


@dataclass(frozen=True)
class MaCrossoverParams(StrategyParams):
    fast: int = 20
    slow: int = 100
    band: float = 0.05

    LOOKBACKS: ClassVar[tuple[str, ...]] = ("fast", "slow")
    THRESHOLDS: ClassVar[tuple[str, ...]] = ("band",)
    SPACE: ClassVar[dict[str, tuple[float, float]]] = {"fast": (5, 60), "slow": (40, 250), "band": (0.005, 0.2)}

    def validate(self) -> None:
        if not self.fast < self.slow:
            raise ValueError("ma_crossover needs fast < slow")


class MovingAverageCrossover(Strategy):
    name = "ma_crossover"
    description = "trend: fast/slow simple moving average gap, scaled by a band"
    params_type = MaCrossoverParams
    _windows = {"_fast": "Sma", "_slow": "Sma"}
    params: MaCrossoverParams

    def __init__(self, params: MaCrossoverParams | None = None) -> None:
        super().__init__(params)
        self._fast = SlidingMoments(self.params.fast)
        self._slow = SlidingMoments(self.params.slow)
        self._band = self.params.band

    def _horizon(self) -> int:
        return self.params.fast

    def step(self, bar: Bar, context: MarketContext) -> float | None:
        close = bar.close
        fast = self._fast.push(close)
        slow = self._slow.push(close)
        if math.isnan(slow):  # NaN exactly until the slow window is full
            return None
        return (fast / slow - 1.0) / self._band


@dataclass(frozen=True)
class MomentumParams(StrategyParams):
    lookback: int = 126
    vol_window: int = 60
    full_t: float = 2.0

    LOOKBACKS: ClassVar[tuple[str, ...]] = ("lookback", "vol_window")
    THRESHOLDS: ClassVar[tuple[str, ...]] = ("full_t",)
    SPACE: ClassVar[dict[str, tuple[float, float]]] = {"lookback": (20, 252), "vol_window": (10, 120), "full_t": (0.5, 4.0)}

    def validate(self) -> None:
        if self.vol_window < 2:
            raise ValueError("ts_momentum needs vol_window >= 2")


class TimeSeriesMomentum(Strategy):
    name = "ts_momentum"
    description = "trend: volatility-scaled log return over a lookback"
    params_type = MomentumParams
    _windows = {"_vol": "RollingStd"}
    _state = ("_closes",)
    params: MomentumParams

    def __init__(self, params: MomentumParams | None = None) -> None:
        super().__init__(params)
        self._vol = SlidingMoments(self.params.vol_window)
        self._closes: deque[float] = deque(maxlen=self.params.lookback + 1)
        self._lookback = self.params.lookback
        self._sqrt_lookback = math.sqrt(self.params.lookback)
        self._full_t = self.params.full_t

    def _horizon(self) -> int:
        return self.params.lookback // 4

    def step(self, bar: Bar, context: MarketContext) -> float | None:
        close = bar.close
        closes = self._closes
        sigma = math.nan
        if closes:
            vol = self._vol
            vol.push(math.log(close / closes[-1]))
            sigma = vol.std()  # NaN exactly until the window is full
        closes.append(close)
        if len(closes) <= self._lookback or math.isnan(sigma):
            return None
        if not sigma > 0.0:
            return 0.0
        t_stat = math.log(close / closes[0]) / (sigma * self._sqrt_lookback)
        return t_stat / self._full_t
