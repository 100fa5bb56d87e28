"""Event builders for tests and benchmarks of the strategy service."""

from __future__ import annotations

from ata.events import BarClosed, RegimeLabel, RegimeStateUpdated, SentimentScored
from ata.strategy.core.strategies import Bar

DAY_NS = 86_400_000_000_000


def bar_event(symbol: str, bar: Bar, timeframe: str = "1d") -> BarClosed:
    return BarClosed.origin(
        natural_key=("test", symbol, bar.ts_ns), ts_event=bar.ts_ns, ts_init=bar.ts_ns, source="marketdata/test",
        symbol=symbol, timeframe=timeframe, ts_open=bar.ts_ns, open=bar.open, high=bar.high, low=bar.low, close=bar.close,
        volume=bar.volume,
    )


def regime_state(symbol: str, ts: int, label: RegimeLabel) -> RegimeStateUpdated:
    return RegimeStateUpdated.origin(
        natural_key=("test", symbol, ts), ts_event=ts, ts_init=ts, source="regime/test", symbol=symbol, label=label,
        confirmed_label=label, probabilities={label.value: 1.0}, confidence=1.0,
    )


def sentiment_score(symbol: str, ts: int, score: float) -> SentimentScored:
    return SentimentScored.origin(
        natural_key=("test", symbol, ts), ts_event=ts, ts_init=ts, source="sentiment/test", symbol=symbol,
        item_score=score, decayed_score=score, novelty=1.0, news_volume=1.0,
    )
