"""Volatility-managed exposure: long, scaled by target over realised volatility.

``rv_t = sqrt(periods_per_year * mean(r^2))`` over the last ``vol_window`` log returns (the
``ata.quant`` realised-volatility convention); ``strength = min(1, target_vol / rv)``. It holds
less when volatility is high (risk per unit of exposure is higher then). Horizon: ``vol_window``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from ata.quant.windows import SlidingRealizedVolatility
from ata.strategy.core.strategies.base import Bar, MarketContext, Strategy, StrategyParams


@dataclass(frozen=True)
class VolManagedParams(StrategyParams):
    vol_window: int = 20
    target_vol_annual: float = 0.12
    periods_per_year: float = 252.0

    LOOKBACKS: ClassVar[tuple[str, ...]] = ("vol_window",)
    SPACE: ClassVar[dict[str, tuple[float, float]]] = {"vol_window": (5, 120), "target_vol_annual": (0.05, 0.4)}


class VolatilityManaged(Strategy):
    name = "vol_managed"
    description = "exposure: long, sized by target volatility over realised volatility"
    params_type = VolManagedParams
    _indicators = ("_rv",)
    params: VolManagedParams

    def __init__(self, params: VolManagedParams | None = None) -> None:
        super().__init__(params)
        self._rv = SlidingRealizedVolatility(self.params.vol_window, self.params.periods_per_year)
        self._target = self.params.target_vol_annual

    def _horizon(self) -> int:
        return self.params.vol_window

    def step(self, bar: Bar, context: MarketContext) -> float | None:
        rv = self._rv.update(bar.close)
        if math.isnan(rv):  # NaN exactly until the window is full
            return None
        return 1.0 if not rv > 0.0 else min(1.0, self._target / rv)
