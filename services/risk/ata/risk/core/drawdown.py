"""Tiered drawdown response and the daily loss limit.

Tiers by drawdown from the high-water mark: NORMAL; WARNING (sizes scaled down);
CRITICAL (REDUCING: only risk-reducing orders); FATAL (HALTED and flatten). FATAL latches
until an operator resumes; the lower tiers follow the drawdown both ways.
The daily loss limit compares equity with the equity at the first event of the UTC day.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import IntEnum
from typing import Any

NS_PER_DAY = 86_400_000_000_000


class DrawdownTier(IntEnum):
    NORMAL = 0
    WARNING = 1
    CRITICAL = 2
    FATAL = 3


@dataclass(frozen=True, slots=True)
class DrawdownPolicy:
    warning_pct: float
    critical_pct: float
    fatal_pct: float
    warning_scale: float  # size multiplier in the WARNING tier

    def __post_init__(self) -> None:
        if not 0 < self.warning_pct < self.critical_pct < self.fatal_pct <= 1:
            raise ValueError("drawdown tiers must satisfy 0 < warning < critical < fatal <= 1")
        if not 0 <= self.warning_scale <= 1:
            raise ValueError("warning_scale must be within [0, 1]")

    def tier(self, drawdown: float) -> DrawdownTier:
        if drawdown >= self.fatal_pct:
            return DrawdownTier.FATAL
        if drawdown >= self.critical_pct:
            return DrawdownTier.CRITICAL
        if drawdown >= self.warning_pct:
            return DrawdownTier.WARNING
        return DrawdownTier.NORMAL

    def scale(self, tier: DrawdownTier) -> float:
        if tier is DrawdownTier.NORMAL:
            return 1.0
        return self.warning_scale if tier is DrawdownTier.WARNING else 0.0


@dataclass(slots=True)
class DailyLoss:
    """Equity at the start of the current UTC day, and whether today's loss limit was hit."""

    day: int = -1
    start_equity: float = 0.0
    breached: bool = False

    def observe(self, ts_ns: int, equity: float, limit_pct: float) -> bool:
        """Fold an equity observation in; return True when the breached flag changed."""
        day = ts_ns // NS_PER_DAY
        before = self.breached
        if day > self.day:
            self.day, self.start_equity, self.breached = day, equity, False
        elif self.start_equity > 0 and equity <= self.start_equity * (1 - limit_pct):
            self.breached = True
        return self.breached != before

    def loss_pct(self, equity: float) -> float:
        return 0.0 if self.start_equity <= 0 else max(0.0, 1 - equity / self.start_equity)

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DailyLoss:
        return cls(**state)
