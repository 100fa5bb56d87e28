"""News for a backtest: sentiment's replay files, mapped to symbols as the live service maps them."""

from __future__ import annotations

from pathlib import Path

from ata.backtest.data import DataSpec
from ata.events import NewsPublished
from ata.sentiment.core import EntityMapper, to_news_event
from ata.sentiment.fixtures import default_universe
from ata.sentiment.sources.replay import load_articles

NEWS_SOURCE = "sentiment/backtest"


def load_news(path: Path, spec: DataSpec) -> list[NewsPublished]:
    """``NewsPublished`` events of a JSONL/CSV headline file (publication time is the event time)."""
    universe = default_universe()
    for symbol in spec.symbols:
        universe.setdefault(symbol, [])
    mapper = EntityMapper(universe)
    return [to_news_event(a, mapper, source=NEWS_SOURCE, ts_init=a.published_ns) for a in load_articles(path)]
