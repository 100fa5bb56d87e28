"""The built-in strategy library (see each module for its exact definition)."""

from ata.strategy.core.strategies.adaptive import RegimeAdaptive, is_volatile
from ata.strategy.core.strategies.base import Bar, MarketContext, Signal, Strategy, StrategyParams, clip_unit
from ata.strategy.core.strategies.breakout import DonchianBreakout, DonchianParams
from ata.strategy.core.strategies.reversion import MeanReversion, MeanReversionParams
from ata.strategy.core.strategies.sentiment import SentimentParams, SentimentTilt
from ata.strategy.core.strategies.trend import MaCrossoverParams, MomentumParams, MovingAverageCrossover, TimeSeriesMomentum
from ata.strategy.core.strategies.volatility import VolatilityManaged, VolManagedParams

#: Built-in strategies by name, in the order signals are emitted.
BUILTIN: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (MovingAverageCrossover, TimeSeriesMomentum, MeanReversion, DonchianBreakout, VolatilityManaged, SentimentTilt)
}

__all__ = [
    "BUILTIN",
    "Bar",
    "DonchianBreakout",
    "DonchianParams",
    "MaCrossoverParams",
    "MarketContext",
    "MeanReversion",
    "MeanReversionParams",
    "MomentumParams",
    "MovingAverageCrossover",
    "RegimeAdaptive",
    "SentimentParams",
    "SentimentTilt",
    "Signal",
    "Strategy",
    "StrategyParams",
    "TimeSeriesMomentum",
    "VolManagedParams",
    "VolatilityManaged",
    "clip_unit",
    "is_volatile",
]
