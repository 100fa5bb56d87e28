"""Online features of a symbol, bar by bar (the RL state and the attribution study use them).

Every feature at bar ``t`` uses bars ``0..t`` and the context known at ``t`` only. Names:

=================  =============================================================
``ret_1``          log return of the bar
``ret_5/ret_20``   log return over the last 5 / 20 bars
``vol_20``         annualised realised volatility of the last 20 log returns
``vol_ratio``      ``vol_20 / vol_100`` (volatility regime, >1 when rising)
``z_20``           z-score of the close over 20 bars (0 on a flat window)
``ma_gap_50``      ``close / SMA_50 - 1``
``drawdown_63``    ``close / max(close over 63 bars) - 1``
``sentiment``      latest decayed sentiment score (0 before any)
``regime_<label>`` one-hot of the regime in force (all 0 when unknown)
``ret_20_x_vol``   ``ret_20`` when the regime is volatile, else 0 (regime-conditional)
``z_20_x_vol``     ``z_20`` when the regime is volatile, else 0 (regime-conditional)
=================  =============================================================
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from ata.events import RegimeLabel
from ata.quant.windows import SlidingChannel, SlidingMoments, SlidingRealizedVolatility
from ata.strategy.core.strategies import Bar, MarketContext, is_volatile

REGIME_LABELS: tuple[str, ...] = tuple(label.value for label in RegimeLabel)
MARKET_FEATURES = ("ret_1", "ret_5", "ret_20", "vol_20", "vol_ratio", "z_20", "ma_gap_50", "drawdown_63", "sentiment")
FEATURE_NAMES: tuple[str, ...] = (*MARKET_FEATURES, *(f"regime_{label}" for label in REGIME_LABELS), "ret_20_x_vol", "z_20_x_vol")
WARMUP_BARS = 101
#: The regime one-hot block by label (all 0 for an unknown or missing label).
_ONE_HOT: dict[str, tuple[float, ...]] = {
    label: tuple(1.0 if label == other else 0.0 for other in REGIME_LABELS) for label in REGIME_LABELS
}
_NO_REGIME = (0.0,) * len(REGIME_LABELS)

FloatVector = npt.NDArray[np.float64]


class OnlineFeatures:
    """Per-symbol feature state; ``update`` returns the feature vector or ``None`` while warming up."""

    def __init__(self) -> None:
        self._closes: deque[float] = deque(maxlen=21)
        self._vol20 = SlidingRealizedVolatility(20)
        self._vol100 = SlidingRealizedVolatility(100)
        self._z = SlidingMoments(20)
        self._sma = SlidingMoments(50)
        self._peak = SlidingChannel(63)

    def update(self, bar: Bar, context: MarketContext) -> FloatVector | None:
        c = bar.close
        closes = self._closes
        prev = closes[-1] if closes else math.nan
        closes.append(c)
        vol20 = self._vol20.update(c)
        vol100 = self._vol100.update(c)  # NaN exactly until its window is full (the longest one)
        z_window = self._z
        z_window.push(c)
        z = z_window.zscore()
        sma = self._sma.push(c)
        peak, _ = self._peak.update(c, c)
        if math.isnan(vol100):
            return None
        ret20 = math.log(c / closes[0])
        z = 0.0 if math.isnan(z) else z
        regime = context.regime
        volatile = 1.0 if is_volatile(regime) else 0.0
        sentiment = context.sentiment
        return np.array((
            math.log(c / prev),
            math.log(c / closes[-6]),
            ret20,
            vol20,
            vol20 / vol100 if vol100 > 0.0 else 1.0,
            z,
            c / sma - 1.0,
            0.0 if math.isnan(peak) else c / peak - 1.0,
            0.0 if sentiment is None else sentiment,
            *_ONE_HOT.get(regime, _NO_REGIME),
            ret20 * volatile,
            z * volatile,
        ), dtype=np.float64)

    def snapshot(self) -> dict[str, Any]:
        return {
            "closes": list(self._closes),
            "vol20": self._vol20.snapshot(),
            "vol100": self._vol100.snapshot(),
            "z": self._z.snapshot("ZScore"),
            "sma": self._sma.snapshot("Sma"),
            "peak": self._peak.snapshot(),
        }

    @classmethod
    def restore(cls, state: dict[str, Any]) -> Self:
        obj = cls()
        obj._closes = deque(state["closes"], maxlen=21)
        obj._vol20 = SlidingRealizedVolatility.restore(state["vol20"])
        obj._vol100 = SlidingRealizedVolatility.restore(state["vol100"])
        obj._z = SlidingMoments.restore(state["z"])
        obj._sma = SlidingMoments.restore(state["sma"])
        obj._peak = SlidingChannel.restore(state["peak"])
        return obj
