"""Market data events: bars, quotes, data anomalies and data reliability."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from ata.events.envelope import Event
from ata.events.values import NonNegativeFloat, Price, Symbol


class BarClosed(Event):
    """An OHLCV bar that passed integrity checks. ``ts_event`` is the bar's close time."""

    symbol: Symbol
    timeframe: str = Field(pattern=r"^[0-9]+(s|m|h|d|w)$", description="bar size, e.g. 1m, 1d")
    ts_open: int = Field(ge=0, description="bar open time, ns since epoch")
    open: Price
    high: Price
    low: Price
    close: Price
    volume: NonNegativeFloat
    venue: str = Field(default="", max_length=64, description="data source name")

    @model_validator(mode="after")
    def _ohlc_consistent(self) -> BarClosed:
        if not (self.low <= min(self.open, self.close) and self.high >= max(self.open, self.close)):
            raise ValueError("invalid OHLC: low must be <= open,close <= high")
        if self.ts_open > self.ts_event:
            raise ValueError("ts_open must not be after ts_event (the close)")
        return self


class QuoteUpdated(Event):
    """Top of book. A crossed quote (bid > ask) is an anomaly, never a QuoteUpdated."""

    symbol: Symbol
    bid: Price
    ask: Price
    bid_size: NonNegativeFloat = 0.0
    ask_size: NonNegativeFloat = 0.0
    venue: str = Field(default="", max_length=64)

    @model_validator(mode="after")
    def _not_crossed(self) -> QuoteUpdated:
        if self.bid > self.ask:
            raise ValueError("crossed quote: bid > ask")
        return self


class AnomalyKind(StrEnum):
    PRICE_SPIKE = "price_spike"
    STALE_FEED = "stale_feed"
    GAP = "gap"
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"
    INVALID_OHLC = "invalid_ohlc"
    NON_POSITIVE = "non_positive"
    CROSSED_QUOTE = "crossed_quote"
    SOURCE_DISAGREEMENT = "source_disagreement"
    #: A source record that could not be parsed (evidence names the file and line).
    MALFORMED_RECORD = "malformed_record"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class DataAnomalyDetected(Event):
    """A data-integrity problem. ``quarantined`` says the offending record was withheld."""

    symbol: Symbol
    kind: AnomalyKind
    severity: Severity
    quarantined: bool
    evidence: dict[str, str | float | int | bool | None] = Field(default_factory=dict)


class DataReliabilityChanged(Event):
    """The per-symbol data breaker opened (unreliable) or closed (reliable) again. Risk honours it."""

    symbol: Symbol
    reliable: bool
    reason: str = Field(max_length=500)


class GroundTruthRegimeObserved(Event):
    """The synthetic generator's true regime for a bar, published for evaluation only."""

    symbol: Symbol
    regime: str = Field(min_length=1, max_length=64)
    volatility_regime: Literal["calm", "stress"]
