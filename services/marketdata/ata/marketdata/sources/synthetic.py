"""Synthetic source: :mod:`ata.quant.synthetic` bars on the session calendar's intraday slots.

Per bar time it yields the ground-truth :class:`RegimeObservation` (published for
evaluation) and then one :class:`RawBar` per symbol. Bars sit on the calendar's session
slots (holidays and early closes respected), so the integrity checker sees no gaps; without
a calendar they are consecutive (24/7).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from ata.marketdata.core.calendar import I64, SessionCalendar
from ata.marketdata.core.records import RawBar, RegimeObservation, SourceItem, timeframe_ns
from ata.marketdata.sources.base import HealthValue
from ata.quant.synthetic import SyntheticConfig, SyntheticMarket


def synthetic_symbols(count: int) -> list[str]:
    """Default names ``SYN000``, ``SYN001``, ..."""
    return [f"SYN{i:03d}" for i in range(count)]


class SyntheticSource:
    """A :class:`~ata.marketdata.sources.base.HistoricalSource` of seeded synthetic bars."""

    def __init__(self, config: SyntheticConfig, *, symbols: Sequence[str], timeframe: str, start_ns: int,
                 calendar: SessionCalendar | None, max_bars: int | None = None) -> None:
        if len(symbols) != config.n_symbols:
            raise ValueError(f"{len(symbols)} symbol names for {config.n_symbols} synthetic symbols")
        self.name = f"synthetic-{config.seed}"
        self.config = config
        self.symbols = list(symbols)
        self.timeframe = timeframe
        self.bar_ns = timeframe_ns(timeframe)
        self.start_ns = start_ns
        self.calendar = calendar
        self.max_bars = max_bars
        self.bars = 0

    def _times(self, start_ns: int, count: int) -> I64:
        if self.calendar is None:
            return start_ns + np.arange(count, dtype=np.int64) * self.bar_ns
        return self.calendar.bar_opens(start_ns, count, self.timeframe)

    def __iter__(self) -> Iterator[SourceItem]:
        market = SyntheticMarket(self.config)
        names = market.regime_names
        vol_names = [r.volatility_regime for r in self.config.regimes]
        source, timeframe, bar_ns, symbols = self.name, self.timeframe, self.bar_ns, self.symbols
        next_start = self.start_ns
        steps_left = None if self.max_bars is None else -(-self.max_bars // len(symbols))
        while steps_left is None or steps_left > 0:
            block = market.next_block()
            n = block.n_bars if steps_left is None else min(block.n_bars, steps_left)
            opens = self._times(next_start, n).tolist()
            next_start = opens[-1] + bar_ns
            # Columns by symbol (``.T``): a list of floats per symbol rather than a list per bar time.
            o, h, low, c, v = (column[:n].T.tolist() for column in (block.open, block.high, block.low, block.close,
                                                                   block.volume))
            regimes = block.regime[:n].tolist()
            for step, ts_open in enumerate(opens):
                ts_close = ts_open + bar_ns
                regime = regimes[step]
                yield RegimeObservation(source, ts_close, names[regime], vol_names[regime])
                for k, symbol in enumerate(symbols):
                    if self.max_bars is not None and self.bars >= self.max_bars:
                        return
                    self.bars += 1
                    yield RawBar(source, symbol, timeframe, ts_open, ts_close, o[k][step], h[k][step], low[k][step],
                                 c[k][step], v[k][step], "synthetic")
            if steps_left is not None:
                steps_left -= n

    def health(self) -> dict[str, HealthValue]:
        return {"source": "synthetic", "seed": self.config.seed, "symbols": len(self.symbols), "bars_generated": self.bars}
