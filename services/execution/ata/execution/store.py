"""Execution's local record of orders and positions in Redis (a cache; the journal is the record).

Writes are group-committed: :meth:`RedisOrderStore.save` marks the order as changed and returns
once a write holding its state (or a later one) has reached Redis. Everything marked while one
write is in flight goes together in the next, as one pipelined ``HSET`` per hash: the 64 orders
handled at once out of a consumed batch cost one round trip instead of one each, and an order
changed twice in that time is written once. The contract callers rely on is unchanged: when
``save`` returns, Redis holds the order at least as far as it was when ``save`` was called
(write-ahead before a broker submission); a failed write raises in every ``save`` it carried.
"""

from __future__ import annotations

import asyncio
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
        self._changed_orders: dict[str, TrackedOrder] = {}
        self._changed_positions: dict[str, dict[str, float]] = {}
        self._waiting: list[asyncio.Future[None]] = []  # one per save, resolved by the write that takes its change
        self._writer: asyncio.Task[None] | None = None
        #: Round trips made by writes (for the bench and tests: batching is visible here).
        self.writes = 0

    @classmethod
    def from_url(cls, url: str, prefix: str) -> RedisOrderStore:
        return cls(aioredis.Redis.from_url(url), prefix)

    async def load(self) -> list[dict[str, Any]]:
        raw = await self._redis.hgetall(self._orders)
        return [orjson.loads(value) for value in raw.values()]

    async def save(self, order: TrackedOrder) -> None:
        self._changed_orders[order.client_order_id] = order
        await self._committed()

    async def load_positions(self) -> dict[str, dict[str, float]]:
        raw = await self._redis.hgetall(self._positions)
        return {key.decode(): orjson.loads(value) for key, value in raw.items()}

    async def save_positions(self, broker: str, positions: dict[str, float]) -> None:
        self._changed_positions[broker] = positions
        await self._committed()

    async def _committed(self) -> None:
        """Wait for the write that carries the changes marked so far."""
        # A future per caller: a cancelled caller cancels only its own, never the write others wait on.
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all(), name="execution:store-writer")
        await waiter

    async def _write_all(self) -> None:
        while self._waiting:
            waiters, self._waiting = self._waiting, []
            orders, self._changed_orders = self._changed_orders, {}
            positions, self._changed_positions = self._changed_positions, {}
            # Serialised now, not when marked: a later state of the same order is what must be stored.
            try:
                pipe = self._redis.pipeline(transaction=False)
                if orders:
                    pipe.hset(self._orders, mapping={coid: orjson.dumps(o.snapshot()) for coid, o in orders.items()})
                if positions:
                    pipe.hset(self._positions, mapping={b: orjson.dumps(p) for b, p in positions.items()})
                await pipe.execute()
            except Exception as exc:  # every save carried by this write fails with it
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
            else:
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)
            self.writes += 1

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
        await self._redis.aclose()
