"""Donchian channel breakout (stop and reverse).

The channel of bar ``t`` is the highest high and lowest low of the ``window`` bars *before* ``t``.
A close above the upper line goes long (+1), below the lower line short (-1); otherwise the
position of the previous bar is kept (0 until the first breakout). Horizon: ``window`` bars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from ata.quant.windows import SlidingChannel
from ata.strategy.core.strategies.base import Bar, MarketContext, Strategy, StrategyParams


@dataclass(frozen=True)
class DonchianParams(StrategyParams):
    window: int = 55

    LOOKBACKS: ClassVar[tuple[str, ...]] = ("window",)
    SPACE: ClassVar[dict[str, tuple[float, float]]] = {"window": (10, 120)}


class DonchianBreakout(Strategy):
    name = "donchian_breakout"
    description = "breakout: stop-and-reverse on closes beyond the previous Donchian channel"
    params_type = DonchianParams
    _indicators = ("_channel",)
    _state = ("_upper", "_lower", "_position")
    params: DonchianParams

    def __init__(self, params: DonchianParams | None = None) -> None:
        super().__init__(params)
        self._channel = SlidingChannel(self.params.window)
        self._upper = math.nan
        self._lower = math.nan
        self._position = 0

    def _horizon(self) -> int:
        return self.params.window

    def step(self, bar: Bar, context: MarketContext) -> float | None:
        warm = not math.isnan(self._upper)
        if warm:
            close = bar.close
            if close > self._upper:
                self._position = 1
            elif close < self._lower:
                self._position = -1
        self._upper, self._lower = self._channel.update(bar.high, bar.low)
        return float(self._position) if warm else None
