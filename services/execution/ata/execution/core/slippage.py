"""Slippage models: where an order fills relative to the market, as pure closed forms.

Every model turns a reference market state into an execution price for one side:

- fixed basis points: ``p = ref · (1 + s · bps / 10⁴)``;
- half spread: ``p = mid + s · (ask − bid) / 2`` (buy at the ask, sell at the bid);
- square-root market impact: ``p = ref · (1 + s · Y · σ · √(Q / V))`` where ``Q / V`` is the
  participation rate of the order in the traded volume, ``σ`` the volatility over the
  same horizon and ``Y`` a coefficient of order one (Almgren et al. 2005; Tóth et al. 2011).

``s`` is +1 for a buy and −1 for a sell, so slippage is always a cost. ``ref`` is the mid
when a quote is known, else the last trade (or the bar price the fill is modelled at).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from ata.events import Side


@dataclass(frozen=True)
class MarketState:
    """What the market looks like at a fill: a quote, a last price and the traded volume."""

    last: float | None = None
    bid: float | None = None
    ask: float | None = None
    volume: float | None = None  # volume traded in the interval the fill belongs to

    @property
    def mid(self) -> float | None:
        if self.bid is not None and self.ask is not None:
            return (self.bid + self.ask) / 2.0
        return None

    @property
    def reference(self) -> float | None:
        mid = self.mid
        return mid if mid is not None else self.last


def fixed_bps_price(reference: float, side: Side, bps: float) -> float:
    return reference * (1.0 + side.sign * bps / 1e4)


def half_spread_price(bid: float, ask: float, side: Side) -> float:
    return (bid + ask) / 2.0 + side.sign * (ask - bid) / 2.0


def sqrt_impact_price(reference: float, side: Side, *, quantity: float, volume: float, volatility: float,
                      coefficient: float = 1.0) -> float:
    if volume <= 0:
        raise ValueError("volume must be positive for the square-root impact model")
    participation = quantity / volume
    return reference * (1.0 + side.sign * coefficient * volatility * math.sqrt(participation))


class SlippageModel(Protocol):
    def fill_price(self, side: Side, market: MarketState, quantity: float) -> float:
        """Execution price for ``quantity`` given ``market`` (which has a reference price)."""
        ...


def _reference(market: MarketState) -> float:
    ref = market.reference
    if ref is None:
        raise ValueError("market state has neither a quote nor a last price")
    return ref


@dataclass(frozen=True)
class FixedBps:
    bps: float = 0.0

    def fill_price(self, side: Side, market: MarketState, quantity: float) -> float:
        return fixed_bps_price(_reference(market), side, self.bps)


@dataclass(frozen=True)
class HalfSpread:
    """Cross the spread; without a quote (bars only) fill at the reference price."""

    def fill_price(self, side: Side, market: MarketState, quantity: float) -> float:
        if market.bid is not None and market.ask is not None:
            return half_spread_price(market.bid, market.ask, side)
        return _reference(market)


@dataclass(frozen=True)
class SquareRootImpact:
    """Square-root impact on top of the half spread; without volume, the half spread alone."""

    volatility: float = 0.01
    coefficient: float = 1.0

    def fill_price(self, side: Side, market: MarketState, quantity: float) -> float:
        base = HalfSpread().fill_price(side, market, quantity)
        if not market.volume:
            return base
        return sqrt_impact_price(base, side, quantity=quantity, volume=market.volume, volatility=self.volatility,
                                 coefficient=self.coefficient)


def cost_bps(side: Side, reference: float, price: float) -> float:
    """Slippage of ``price`` against ``reference`` in basis points, positive when it costs."""
    return side.sign * (price - reference) / reference * 1e4


def model_from_name(name: str, *, bps: float = 0.0, volatility: float = 0.01, coefficient: float = 1.0) -> SlippageModel:
    """``fixed_bps`` | ``half_spread`` | ``sqrt_impact`` (for configuration)."""
    if name == "fixed_bps":
        return FixedBps(bps)
    if name == "half_spread":
        return HalfSpread()
    if name == "sqrt_impact":
        return SquareRootImpact(volatility, coefficient)
    raise ValueError(f"unknown slippage model {name!r}; expected fixed_bps, half_spread or sqrt_impact")
