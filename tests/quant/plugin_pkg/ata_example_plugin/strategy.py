"""A strategy plugin: always long with a fixed strength."""

from __future__ import annotations

from dataclasses import dataclass

from ata.strategy.core.strategies.base import Bar, MarketContext, Signal, Strategy, StrategyParams


@dataclass(frozen=True)
class AlwaysLongParams(StrategyParams):
    strength: float = 0.5


class AlwaysLong(Strategy):
    name = "example_always_long"
    description = "example plugin: always long at a fixed strength"
    params_type = AlwaysLongParams
    params: AlwaysLongParams

    def update(self, bar: Bar, context: MarketContext) -> Signal | None:
        return self._signal(self.params.strength, 1)
