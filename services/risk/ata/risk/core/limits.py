"""Risk limits: the numbers every pre-trade check compares against, and their validation.

Units: ``*_notional`` and ``*_exposure`` are money in the account currency; ``*_pct`` are
fractions (0.05 == 5 %); ``max_leverage`` is gross exposure divided by equity.
Portfolio-wide limits apply to every symbol; a ``SetRiskLimits`` naming symbols stores
per-symbol overrides of the per-order and per-position fields only.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ata.events import RiskLimits

#: Fields a per-symbol override may change; the rest are portfolio-wide by nature.
PER_SYMBOL_FIELDS = frozenset({"max_order_quantity", "max_order_notional", "max_position_notional", "price_collar_pct"})


class LimitsError(ValueError):
    """A limit set is inconsistent; the message is the refusal reason published to operators."""


@dataclass(frozen=True, slots=True)
class Limits:
    max_order_quantity: float
    max_order_notional: float
    max_position_notional: float
    max_gross_exposure: float
    max_net_exposure: float
    max_cluster_exposure_pct: float
    max_orders_per_minute: int
    order_burst: int
    price_collar_pct: float
    max_staleness_ms: int
    max_leverage: float
    daily_loss_limit_pct: float

    def validate(self) -> Limits:
        """Return ``self`` or raise :class:`LimitsError` naming the offending field."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not (math.isfinite(value) and value > 0):
                raise LimitsError(f"{field.name} must be finite and > 0, got {value!r}")
        for name in ("price_collar_pct", "daily_loss_limit_pct"):
            if getattr(self, name) > 1:
                raise LimitsError(f"{name} is a fraction and must be <= 1")
        if self.max_net_exposure > self.max_gross_exposure:
            raise LimitsError("max_net_exposure must not exceed max_gross_exposure")
        if self.max_position_notional > self.max_gross_exposure:
            raise LimitsError("max_position_notional must not exceed max_gross_exposure")
        if self.max_order_notional > self.max_gross_exposure:
            raise LimitsError("max_order_notional must not exceed max_gross_exposure")
        return self

    def merged(self, update: RiskLimits, *, per_symbol: bool) -> Limits:
        """A validated copy with the fields ``update`` sets; refuses portfolio fields per symbol."""
        changes: dict[str, Any] = update.model_dump(exclude_none=True)
        if not changes:
            raise LimitsError("SetRiskLimits changes nothing")
        if per_symbol and (extra := sorted(set(changes) - PER_SYMBOL_FIELDS)):
            raise LimitsError(f"portfolio-wide limits cannot be set per symbol: {', '.join(extra)}")
        return dataclasses.replace(self, **changes).validate()

    def to_state(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Limits:
        return cls(**state)


class LimitBook:
    """Portfolio limits plus per-symbol overrides."""

    def __init__(self, portfolio: Limits) -> None:
        self.portfolio = portfolio.validate()
        self.overrides: dict[str, Limits] = {}
        self._cache: dict[str, Limits] = {}

    def for_symbol(self, symbol: str) -> Limits:
        limits = self._cache.get(symbol)
        if limits is None:
            limits = self._cache[symbol] = self.overrides.get(symbol, self.portfolio)
        return limits

    def apply(self, update: RiskLimits, symbols: tuple[str, ...]) -> None:
        """Apply a ``SetRiskLimits``; all-or-nothing, :class:`LimitsError` leaves the book unchanged."""
        if not symbols:
            new_portfolio = self.portfolio.merged(update, per_symbol=False)
            # Overrides keep their own per-symbol fields but follow the new portfolio-wide ones.
            new_overrides = {
                s: dataclasses.replace(new_portfolio, **{f: getattr(o, f) for f in PER_SYMBOL_FIELDS}).validate()
                for s, o in self.overrides.items()
            }
            self.portfolio, self.overrides = new_portfolio, new_overrides
        else:
            staged = {s: self.for_symbol(s).merged(update, per_symbol=True) for s in symbols}
            self.overrides.update(staged)
        self._cache.clear()

    def to_state(self) -> dict[str, Any]:
        return {"portfolio": self.portfolio.to_state(), "overrides": {s: o.to_state() for s, o in sorted(self.overrides.items())}}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LimitBook:
        book = cls(Limits.from_state(state["portfolio"]))
        book.overrides = {s: Limits.from_state(o) for s, o in state["overrides"].items()}
        return book
