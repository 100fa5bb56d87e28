"""News and sentiment events."""

from __future__ import annotations

from pydantic import Field

from ata.events.envelope import Event
from ata.events.values import FiniteFloat, NonNegativeFloat, Probability, Symbol, Unit


class NewsPublished(Event):
    """A news item. ``ts_event`` is its publication time; it is usable only from then
    plus the configured availability delay (point in time)."""

    article_id: str = Field(min_length=1, max_length=256)
    news_source: str = Field(min_length=1, max_length=128)
    headline: str = Field(min_length=1, max_length=2000)
    summary: str = Field(default="", max_length=20000)
    url: str = Field(default="", max_length=2000)
    symbols: tuple[Symbol, ...] = ()
    category: str = Field(default="", max_length=64)


class SentimentScored(Event):
    """Per-symbol sentiment after an item (or decay tick): raw item score and decayed level."""

    symbol: Symbol
    article_id: str = Field(default="", max_length=256)
    item_score: Unit
    decayed_score: Unit
    novelty: Probability
    news_volume: NonNegativeFloat = Field(description="decayed count of items")
    components: dict[str, FiniteFloat] = Field(default_factory=dict, description="per-model scores")
