"""Redis-backed hot state of the sentiment service: token-bucket rate limits, article dedup, engine snapshot.

All keys start with the configured prefix and carry TTLs, so Redis stays a cache:

- ``<prefix>:bucket:<source>`` — a hash (``tokens``, ``ts_ms``) per source, updated atomically by
  :data:`TOKEN_BUCKET_LUA` using the Redis server clock (``TIME``), so replicas share one bucket
  and client clocks do not matter. A request takes a token or learns how many ms until one is
  there. TTL: twice the time to refill the bucket (an idle bucket expires full).
- ``<prefix>:seen:<source>:<article key>`` — ``SET NX EX``: the first caller wins; TTL ``dedup_ttl_s``.
- ``<prefix>:engine`` — the engine snapshot (JSON), restored on start.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import orjson
from redis.asyncio import Redis

from ata.sentiment.core.news import Article

TOKEN_BUCKET_LUA = """
local key = KEYS[1]
local rate = tonumber(ARGV[1])          -- tokens per second
local capacity = tonumber(ARGV[2])
local ttl_ms = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', key, 'tokens', 'ts_ms')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then tokens = capacity; ts = now end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate / 1000)
local wait_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait_ms = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', key, 'tokens', tostring(tokens), 'ts_ms', tostring(now))
redis.call('PEXPIRE', key, ttl_ms)
return wait_ms
"""


class RateLimitTimeoutError(TimeoutError):
    """No token became available within the caller's bound."""


class RedisRateLimiter:
    """Per-source token bucket (``rate_per_s`` refill, ``burst`` capacity), atomic in Redis."""

    def __init__(self, redis: Redis[Any], prefix: str, rate_per_s: float, burst: int) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.redis = redis
        self.prefix = prefix
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.ttl_ms = max(1000, math.ceil(2 * burst / rate_per_s * 1000))
        self._script = redis.register_script(TOKEN_BUCKET_LUA)
        self.waits = 0

    def key(self, source: str) -> str:
        return f"{self.prefix}:bucket:{source}"

    async def try_acquire(self, source: str) -> int:
        """Take a token: 0 when granted, else the ms until one will be available (nothing taken)."""
        return int(await self._script(keys=[self.key(source)], args=[self.rate_per_s, self.burst, self.ttl_ms]))

    async def acquire(self, source: str, timeout_s: float = 60.0) -> None:
        """Wait for a token, at most ``timeout_s`` (then :class:`RateLimitTimeoutError`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (wait_ms := await self.try_acquire(source)) > 0:
            self.waits += 1
            if loop.time() + wait_ms / 1000 > deadline:
                raise RateLimitTimeoutError(f"no rate-limit token for {source} within {timeout_s} s")
            await asyncio.sleep(wait_ms / 1000)


class RedisDeduplicator:
    """Remembers article keys per source for ``ttl_s``; :meth:`first_seen` is true exactly once per key."""

    def __init__(self, redis: Redis[Any], prefix: str, ttl_s: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.hits = 0

    def key(self, article: Article) -> str:
        return f"{self.prefix}:seen:{article.news_source}:{article.key()}"

    async def first_seen(self, article: Article) -> bool:
        fresh = bool(await self.redis.set(self.key(article), b"1", nx=True, ex=self.ttl_s))
        if not fresh:
            self.hits += 1
        return fresh


class RedisSnapshotStore:
    """The engine snapshot under ``<prefix>:engine`` (a cache; the journal is the record)."""

    def __init__(self, redis: Redis[Any], prefix: str, ttl_s: int) -> None:
        self.redis = redis
        self.key = f"{prefix}:engine"
        self.ttl_s = ttl_s

    async def save(self, snapshot: dict[str, Any]) -> None:
        await self.redis.set(self.key, orjson.dumps(snapshot), ex=self.ttl_s)

    async def load(self) -> dict[str, Any] | None:
        raw = await self.redis.get(self.key)
        if raw is None:
            return None
        data: dict[str, Any] = orjson.loads(raw)
        return data
