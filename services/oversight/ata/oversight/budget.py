"""Per-minute and per-day provider call budgets, shared by every replica through Redis.

Fixed windows keyed by the wall-clock minute and UTC day: one Lua script checks both counters
and increments them together, so concurrent replicas never overspend. When Redis cannot be
reached the call is refused (cost control fails closed; the review falls back).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError

Window = Literal["minute", "day", "unavailable"]

_TAKE = """
local minute = tonumber(redis.call('GET', KEYS[1]) or '0')
local day = tonumber(redis.call('GET', KEYS[2]) or '0')
if minute >= tonumber(ARGV[1]) then return 1 end
if day >= tonumber(ARGV[2]) then return 2 end
redis.call('INCR', KEYS[1]); redis.call('EXPIRE', KEYS[1], 120)
redis.call('INCR', KEYS[2]); redis.call('EXPIRE', KEYS[2], 172800)
return 0
"""


class BudgetExhaustedError(RuntimeError):
    def __init__(self, window: Window) -> None:
        super().__init__(f"call budget exhausted ({window})")
        self.window = window


class CallBudget:
    def __init__(self, redis: Redis[bytes], prefix: str, per_minute: int, per_day: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self._prefix = prefix
        self.per_minute = per_minute
        self.per_day = per_day
        self._clock = clock

    async def take(self) -> None:
        """Spend one call or raise :class:`BudgetExhaustedError` naming the exhausted window."""
        now = self._clock()
        keys = [f"{self._prefix}:budget:minute:{int(now // 60)}", f"{self._prefix}:budget:day:{int(now // 86_400)}"]
        try:
            result = await self._redis.eval(_TAKE, 2, *keys, self.per_minute, self.per_day)  # type: ignore[no-untyped-call]
        except RedisError as exc:
            raise BudgetExhaustedError("unavailable") from exc
        if result == 1:
            raise BudgetExhaustedError("minute")
        if result == 2:
            raise BudgetExhaustedError("day")
