"""Mean reversion on the z-score of the close (a Bollinger band rule).

``z_t = (close_t - SMA_w(close)_t) / std_w(close)_t`` (sample std, the window includes ``t``).
Inside the band (``|z| < entry_z``) the signal is flat; outside it leans against the move:
``strength = clip(-z / full_z, -1, 1)``. An undefined z (a flat window) gives a flat signal.
Horizon: ``window / 2`` bars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from ata.quant.windows import SlidingMoments
from ata.strategy.core.strategies.base import Bar, MarketContext, Strategy, StrategyParams


@dataclass(frozen=True)
class MeanReversionParams(StrategyParams):
    window: int = 20
    entry_z: float = 1.0
    full_z: float = 2.5

    LOOKBACKS: ClassVar[tuple[str, ...]] = ("window",)
    THRESHOLDS: ClassVar[tuple[str, ...]] = ("entry_z", "full_z")
    SPACE: ClassVar[dict[str, tuple[float, float]]] = {"window": (5, 60), "entry_z": (0.5, 2.5), "full_z": (1.0, 4.0)}

    def validate(self) -> None:
        if self.window < 2:
            raise ValueError("mean_reversion needs window >= 2")


class MeanReversion(Strategy):
    name = "mean_reversion"
    description = "mean reversion: fade closes outside a z-score (Bollinger) band"
    params_type = MeanReversionParams
    _windows = {"_z": "ZScore"}
    params: MeanReversionParams

    def __init__(self, params: MeanReversionParams | None = None) -> None:
        super().__init__(params)
        self._z = SlidingMoments(self.params.window)
        self._entry_z = self.params.entry_z
        self._full_z = self.params.full_z

    def _horizon(self) -> int:
        return self.params.window // 2

    def step(self, bar: Bar, context: MarketContext) -> float | None:
        window = self._z
        window.push(bar.close)
        z = window.zscore()
        if math.isnan(z):  # warming up (std NaN), or a flat window (std 0: undefined z, flat signal)
            return None if math.isnan(window.std()) else 0.0
        if abs(z) < self._entry_z:
            return 0.0
        return -z / self._full_z
