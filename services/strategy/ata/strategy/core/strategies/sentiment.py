"""Sentiment tilt from the decayed per-symbol sentiment score (``SentimentScored.decayed_score``).

``strength = clip(score / full_score, -1, 1)`` when ``|score| >= threshold``, else flat. The
score is the latest one published up to the bar's close (point in time); before any score the
strategy is silent. Horizon: ``horizon_bars``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ata.strategy.core.strategies.base import Bar, MarketContext, Strategy, StrategyParams


@dataclass(frozen=True)
class SentimentParams(StrategyParams):
    threshold: float = 0.05
    full_score: float = 0.5
    horizon_bars: int = 5

    THRESHOLDS: ClassVar[tuple[str, ...]] = ("threshold",)
    SPACE: ClassVar[dict[str, tuple[float, float]]] = {"threshold": (0.01, 0.3), "full_score": (0.1, 1.0)}


class SentimentTilt(Strategy):
    name = "sentiment_tilt"
    description = "sentiment: lean with the decayed news sentiment of the symbol"
    params_type = SentimentParams
    params: SentimentParams

    def _horizon(self) -> int:
        return self.params.horizon_bars

    def step(self, bar: Bar, context: MarketContext) -> float | None:
        score = context.sentiment
        if score is None:
            return None
        if abs(score) < self.params.threshold:
            return 0.0
        return score / self.params.full_score
