"""Strategy events: per-strategy signals, per-symbol target proposals, strategy switches, allocation fallbacks."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ata.events.envelope import Event
from ata.events.values import FiniteFloat, Price, Symbol, Unit


class SignalGenerated(Event):
    """One strategy's view of one symbol at one bar, published when it changes.

    A signal equal (direction, strength, horizon) to the last one published for its symbol and
    strategy is left out, so the signal in force at a bar is the latest published at or before it;
    every ``TargetProposed`` also carries each strategy's strength at its bar in ``contributions``.
    """

    strategy: str = Field(min_length=1, max_length=64)
    symbol: Symbol
    direction: int = Field(ge=-1, le=1)
    strength: Unit
    horizon_bars: int = Field(ge=1)


class ContributingSignal(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: str
    strength: Unit
    weight: FiniteFloat


class TargetProposed(Event):
    """The meta-strategy's target for a symbol, as a fraction of equity (signed)."""

    symbol: Symbol
    target_weight: float = Field(ge=-10.0, le=10.0, allow_inf_nan=False)
    reference_price: Price
    method: str = Field(min_length=1, max_length=64)
    regime: str = Field(default="", max_length=64)
    contributions: tuple[ContributingSignal, ...] = ()


class AllocationFallbackEngaged(Event):
    """A portfolio component (an optimiser, an RL policy) failed or produced invalid output,
    so the documented simple allocation (``fallback_method``) decided instead."""

    component: str = Field(min_length=1, max_length=128)
    reason: str = Field(min_length=1, max_length=64)
    detail: str = Field(max_length=1000)
    fallback_method: str = Field(min_length=1, max_length=64)
    regime: str = Field(default="", max_length=64)
    symbols: tuple[Symbol, ...] = ()


class StrategySwitched(Event):
    """Adaptive switching turned one strategy of a symbol off or back on (with hysteresis).

    ``previous_strategy`` and ``current_strategy`` are the symbol's active strategy sets before
    and after the switch, names sorted and joined with ``+``; ``reason`` states the rule that
    fired. Carried on the targets topic, so per symbol it precedes the target it shapes.
    """

    symbol: Symbol
    strategy: str = Field(min_length=1, max_length=64)
    active: bool
    previous_strategy: str = Field(max_length=1000)
    current_strategy: str = Field(max_length=1000)
    reason: str = Field(min_length=1, max_length=500)
    tracked_sharpe: FiniteFloat
    regime: str = Field(default="", max_length=64)
