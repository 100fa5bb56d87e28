"""Market stress early warning, the tiered reduction protocol, emergency unwind and auto-hedge.

Stress level = number of warning signals firing: crisis regime on the market, a volatility
spike (short-horizon vol over long-horizon vol), a correlation spike (mean pairwise
correlation of recent returns) and a liquidity drop (bar volume far below its average, or
the quoted spread far above its average). Each level maps to a size multiplier; from a
configured level trading goes REDUCING, and from another an emergency unwind starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class StressPolicy:
    vol_spike_ratio: float  # short vol / long vol at or above this is a spike
    correlation_spike: float  # mean pairwise correlation at or above this is a spike
    liquidity_drop_ratio: float  # volume / average volume at or below this is a drop
    spread_spike_ratio: float  # spread / average spread at or above this is a drop in liquidity
    level_scales: tuple[float, ...]  # size multiplier per level 0..4
    reducing_level: int  # from this level on: REDUCING
    unwind_level: int  # from this level on: emergency unwind (when enabled)

    def __post_init__(self) -> None:
        if len(self.level_scales) != 5 or any(not 0 <= s <= 1 for s in self.level_scales):
            raise ValueError("level_scales needs 5 multipliers within [0, 1] (levels 0..4)")
        if list(self.level_scales) != sorted(self.level_scales, reverse=True):
            raise ValueError("level_scales must not increase with the stress level")
        if not 1 <= self.reducing_level <= 4 or not 1 <= self.unwind_level <= 4:
            raise ValueError("reducing_level and unwind_level must be within 1..4")


@dataclass(frozen=True, slots=True)
class StressSignals:
    crisis: bool = False
    vol_spike: bool = False
    correlation_spike: bool = False
    liquidity_drop: bool = False

    @property
    def level(self) -> int:
        return sum((self.crisis, self.vol_spike, self.correlation_spike, self.liquidity_drop))

    def describe(self) -> str:
        names = [n for n in ("crisis", "vol_spike", "correlation_spike", "liquidity_drop") if getattr(self, n)]
        return ", ".join(names) or "none"


@dataclass(frozen=True, slots=True)
class Exposure:
    """What unwind planning needs to know about one open position."""

    symbol: str
    quantity: float
    price: float
    vol_per_bar: float
    avg_volume: float


@dataclass(slots=True)
class UnwindLeg:
    symbol: str
    remaining: float  # signed quantity still to trade (opposite sign of the position)
    slice_quantity: float  # magnitude per bar

    def to_state(self) -> list[Any]:
        return [self.symbol, self.remaining, self.slice_quantity]


def plan_unwind(exposures: list[Exposure], participation: float) -> list[UnwindLeg]:
    """Legs ordered by risk (|value| x vol) largest first; each bar trades at most
    ``participation`` of the symbol's average bar volume (everything at once without volume data)."""
    ranked = sorted(exposures, key=lambda e: (-abs(e.quantity * e.price) * e.vol_per_bar, e.symbol))
    legs = []
    for e in ranked:
        if e.quantity == 0:
            continue
        per_bar = participation * e.avg_volume if e.avg_volume > 0 else abs(e.quantity)
        legs.append(UnwindLeg(e.symbol, -e.quantity, max(per_bar, 1e-12)))
    return legs


def next_slice(leg: UnwindLeg) -> float:
    """Signed quantity of the leg's next slice (and book it as sent)."""
    size = math.copysign(min(abs(leg.remaining), leg.slice_quantity), leg.remaining)
    leg.remaining -= size
    if abs(leg.remaining) < 1e-9 * max(abs(size), 1e-12):
        leg.remaining = 0.0
    return size


def hedge_quantity(net_beta_value: float, equity: float, max_net_beta: float, index_price: float) -> float:
    """Signed index quantity that brings net beta exposure back to zero when
    ``|net_beta_value| / equity`` exceeds ``max_net_beta``; 0 otherwise."""
    if equity <= 0 or index_price <= 0 or abs(net_beta_value) / equity <= max_net_beta:
        return 0.0
    return -net_beta_value / index_price
