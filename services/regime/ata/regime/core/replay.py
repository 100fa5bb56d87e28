"""Deterministic drivers: feed bar arrays through a detector with refits run inline.

Backtests and evaluations use these; running each due refit right after the bar that
made it due (and applying it before the next bar) makes the outputs a pure function of
the input bars.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ata.regime.core.detector import RegimeDetector, RegimeState
from ata.regime.core.refit import RefitRequest, RefitResult, run_refit


@dataclass(frozen=True, slots=True)
class BarInput:
    symbol: str
    ts_event: int
    close: float
    volume: float
    timeframe: str = "1d"


def replay(
    detector: RegimeDetector,
    bars: Iterable[BarInput],
    refit: Callable[[RefitRequest], RefitResult] = run_refit,
) -> Iterator[RegimeState]:
    """Yield every state the bars produce, fitting models inline whenever one is due."""
    for bar in bars:
        yield from detector.update(bar.symbol, bar.ts_event, bar.close, bar.volume, bar.timeframe)
        for request in detector.needs_refit():
            detector.apply_refit(refit(request))
