"""Pure core of the sentiment service: entity mapping, scoring, temporal state, event study.

No Kafka, Redis, HTTP or file I/O here; time comes from events or the caller.
"""

from ata.sentiment.core.engine import EngineParams, SentimentEngine, SymbolView
from ata.sentiment.core.entities import EntityMapper
from ata.sentiment.core.news import Article, categorize, content_hash, to_news_event
from ata.sentiment.core.scoring import ItemScore, Label, Scorer, ScoringWeights

__all__ = [
    "Article", "EngineParams", "EntityMapper", "ItemScore", "Label", "Scorer", "ScoringWeights", "SentimentEngine",
    "SymbolView", "categorize", "content_hash", "to_news_event",
]
