"""Parameters adapted to the regime: a quiet and a volatile parameterisation of one strategy.

Both variants see every bar (so each is warm when the regime switches to it); the signal is the
variant's that matches the volatility class of the regime in force. The volatile variant has its
lookbacks multiplied by ``lookback_scale`` (default 0.5: react faster when markets move fast)
and its thresholds by ``threshold_scale`` (default 1.5: demand more evidence amid noise).
"""

from __future__ import annotations

from typing import Any

from ata.strategy.core.strategies.base import Bar, MarketContext, Signal, Strategy, StrategyParams

VOLATILE_REGIMES = frozenset({"bull_volatile", "bear_volatile", "crisis"})


def is_volatile(regime: str) -> bool:
    return regime in VOLATILE_REGIMES


class RegimeAdaptive:
    """Wraps two instances of one strategy class; emits under the strategy's own name."""

    def __init__(self, strategy_type: type[Strategy], params: StrategyParams | None = None, *,
                 lookback_scale: float = 0.5, threshold_scale: float = 1.5) -> None:
        self.quiet = strategy_type(params)
        self.volatile = strategy_type(self.quiet.params.scaled(lookback_scale, threshold_scale))
        self.signal_name = self.quiet.name
        self.volatile.signal_name = self.signal_name

    def update(self, bar: Bar, context: MarketContext) -> Signal | None:
        quiet = self.quiet.step(bar, context)
        volatile = self.volatile.step(bar, context)
        # Only the signal in force is built.
        if context.regime in VOLATILE_REGIMES:
            return None if volatile is None else self.volatile.signal_of(volatile)
        return None if quiet is None else self.quiet.signal_of(quiet)

    def snapshot(self) -> dict[str, Any]:
        return {"adaptive": True, "quiet": self.quiet.snapshot(), "volatile": self.volatile.snapshot()}

    def restore_state(self, state: dict[str, Any]) -> None:
        """Load ``snapshot()`` output into this (identically configured) instance."""
        self.quiet = type(self.quiet).restore(state["quiet"])
        self.volatile = type(self.volatile).restore(state["volatile"])
