"""Order rate throttle: a token bucket refilled on event time (never the wall clock)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

NS_PER_MINUTE = 60_000_000_000


@dataclass(slots=True)
class TokenBucket:
    """``rate_per_minute`` tokens per minute, at most ``burst`` banked; one order takes one."""

    rate_per_minute: float
    burst: float
    tokens: float = -1.0  # -1: full on first use
    last_ts_ns: int = 0

    def _refill(self, ts_ns: int) -> None:
        if self.tokens < 0:
            self.tokens, self.last_ts_ns = self.burst, ts_ns
        elif ts_ns > self.last_ts_ns:
            self.tokens = min(self.burst, self.tokens + (ts_ns - self.last_ts_ns) * self.rate_per_minute / NS_PER_MINUTE)
            self.last_ts_ns = ts_ns

    def available(self, ts_ns: int) -> bool:
        """Would an order at ``ts_ns`` get a token? (Does not take it.)"""
        self._refill(ts_ns)
        return self.tokens >= 1.0

    def take(self, ts_ns: int) -> bool:
        self._refill(ts_ns)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def reconfigure(self, rate_per_minute: float, burst: float) -> None:
        self.rate_per_minute, self.burst = rate_per_minute, burst
        self.tokens = min(self.tokens, burst)

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TokenBucket:
        return cls(**state)
