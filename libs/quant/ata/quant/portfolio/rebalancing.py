"""Rebalancing policy: when a new target allocation becomes orders, and which symbols trade.

Rule, applied by :meth:`RebalancePolicy.decide` at bar index ``bar`` with current and target
weights (missing symbols count as 0):

1. A symbol whose target is exactly 0 while it is held always trades (exits are never held
   back by thresholds). A symbol not allowed by the schedule is otherwise left alone.
2. Off schedule (``bar % every_n_bars != 0``), nothing else trades unless the largest
   absolute drift ``|target - current|`` reaches ``urgent_drift`` (a large move is not kept
   waiting for the next scheduled bar).
3. On schedule, the portfolio rebalances when the largest drift reaches ``drift_threshold``
   or the total drift ``Σ|target - current|`` reaches ``total_drift_threshold``.
4. When it rebalances, only symbols whose drift reaches ``min_trade_weight`` trade; the others
   keep their current weight. So tiny weight changes never produce orders.

The decision lists the new weight of each symbol that trades; every other symbol keeps its
current weight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["RebalanceDecision", "RebalancePolicy"]


@dataclass(frozen=True)
class RebalanceDecision:
    rebalance: bool
    reason: str
    trades: dict[str, float]
    max_drift: float
    total_drift: float


class RebalancePolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    every_n_bars: int = Field(default=1, ge=1)
    drift_threshold: float = Field(default=0.02, ge=0.0, le=10.0)
    total_drift_threshold: float = Field(default=0.05, ge=0.0, le=20.0)
    min_trade_weight: float = Field(default=0.005, ge=0.0, le=10.0)
    urgent_drift: float = Field(default=0.10, gt=0.0, le=10.0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min_trade_weight > self.drift_threshold:
            raise ValueError("min_trade_weight must be <= drift_threshold (else a triggered rebalance could trade nothing)")
        if self.urgent_drift < self.drift_threshold:
            raise ValueError("urgent_drift must be >= drift_threshold")
        return self

    def decide(self, current: Mapping[str, float], target: Mapping[str, float], bar: int) -> RebalanceDecision:
        symbols = sorted(set(current) | set(target))
        drift = {s: target.get(s, 0.0) - current.get(s, 0.0) for s in symbols}
        max_drift = max((abs(d) for d in drift.values()), default=0.0)
        total = sum(abs(d) for d in drift.values())
        exits = {s: 0.0 for s in symbols if target.get(s, 0.0) == 0.0 and current.get(s, 0.0) != 0.0}
        scheduled = bar % self.every_n_bars == 0
        if scheduled and (max_drift >= self.drift_threshold or total >= self.total_drift_threshold):
            reason = "drift"
        elif max_drift >= self.urgent_drift:
            reason = "urgent_drift"
        else:
            return RebalanceDecision(bool(exits), "exit" if exits else "below_threshold" if scheduled else "off_schedule",
                                     exits, max_drift, total)
        trades = {s: target.get(s, 0.0) for s in symbols if abs(drift[s]) >= self.min_trade_weight}
        return RebalanceDecision(True, reason, {**trades, **exits}, max_drift, total)
