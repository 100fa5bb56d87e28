"""Execution's local record of orders and positions in Redis (a cache; the journal is the record)."""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as aioredis

from ata.execution.core.state_machine import TrackedOrder


class RedisOrderStore:
    """:class:`~ata.execution.core.engine.OrderStore` on two Redis hashes under ``prefix``."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._redis = client
        self._orders = f"{prefix}:orders"
        self._positions = f"{prefix}:positions"

    @classmethod
    def from_url(cls, url: str, prefix: str) -> RedisOrderStore:
        return cls(aioredis.Redis.from_url(url), prefix)

    async def load(self) -> list[dict[str, Any]]:
        raw = await self._redis.hgetall(self._orders)
        return [orjson.loads(value) for value in raw.values()]

    async def save(self, order: TrackedOrder) -> None:
        await self._redis.hset(self._orders, order.client_order_id, orjson.dumps(order.snapshot()))

    async def load_positions(self) -> dict[str, dict[str, float]]:
        raw = await self._redis.hgetall(self._positions)
        return {key.decode(): orjson.loads(value) for key, value in raw.items()}

    async def save_positions(self, broker: str, positions: dict[str, float]) -> None:
        await self._redis.hset(self._positions, broker, orjson.dumps(positions))

    async def close(self) -> None:
        await self._redis.aclose()
