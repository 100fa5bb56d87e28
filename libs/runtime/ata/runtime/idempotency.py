"""Which event ids a consumer group has already applied, so a redelivery has no second effect.

Delivery is at-least-once: a crash between handling a message and committing its offset
redelivers it. Because output ids are derived deterministically from their cause, a consumer
that remembers applied ids can drop the repeat. :class:`AppliedIds` remembers:

- in memory, the most recent ``capacity`` ids (LRU), for the common case of a redelivery to
  the same instance;
- optionally in Redis (one key per id, ``SET`` with a TTL, under a per-group prefix), so a
  restarted instance, or the instance a partition moved to, still drops duplicates. A batch is
  one command either way: ``MGET`` to look ids up, a server-side script setting every key to
  write them (a pipeline of one command per id cost the client ~30 us per id in redis-py, more
  than most handlers). Both are multi-key commands: a Redis Cluster would need the keys of a
  group in one hash slot.

Redis is a cache, never the only copy of anything: when it is unreachable the set degrades to
memory only and counts the failure (``ata_dedup_backend_errors_total``) instead of stopping the
service. The TTL bounds how long a redelivery can be recognised; choose it above the longest
time a message can wait between handling and commit (minutes), the default is a week.
"""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ata.runtime import metrics

__all__ = ["AppliedIds"]

DEFAULT_CAPACITY = 100_000
DEFAULT_TTL_S = 7 * 86_400
KEY_PREFIX = "ata:applied"

_log = logging.getLogger(__name__)

#: ``KEYS``: the ids' keys; ``ARGV[1]``: the TTL in seconds.
_SET_ALL = "for _, key in ipairs(KEYS) do redis.call('SET', key, '1', 'EX', ARGV[1]) end"

BACKEND_ERRORS = metrics.counter(
    "ata_dedup_backend_errors_total", "Redis errors while reading or writing applied event ids (dedup fell back to memory)",
    ("group",),
)


class AppliedIds:
    """A bounded set of applied event ids for one consumer group, optionally shared through Redis."""

    def __init__(
        self,
        group: str,
        *,
        capacity: int = DEFAULT_CAPACITY,
        redis: Redis[bytes] | None = None,
        ttl_s: int = DEFAULT_TTL_S,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        if ttl_s < 1:
            raise ValueError("ttl_s must be >= 1")
        self.group = group
        self.capacity = capacity
        self.ttl_s = ttl_s
        self._redis = redis
        self._set_all = None if redis is None else redis.register_script(_SET_ALL)
        self._owns_redis = False
        self._recent: OrderedDict[uuid.UUID, None] = OrderedDict()

    @classmethod
    def from_url(cls, group: str, redis_url: str, *, capacity: int = DEFAULT_CAPACITY, ttl_s: int = DEFAULT_TTL_S) -> AppliedIds:
        """A Redis-backed set owning its connection pool; call :meth:`close` when done."""
        applied = cls(group, capacity=capacity, redis=Redis.from_url(redis_url), ttl_s=ttl_s)
        applied._owns_redis = True
        return applied

    def _key(self, event_id: uuid.UUID) -> str:
        return f"{KEY_PREFIX}:{self.group}:{event_id}"

    def _remember(self, event_id: uuid.UUID) -> None:
        self._recent[event_id] = None
        self._recent.move_to_end(event_id)
        if len(self._recent) > self.capacity:
            self._recent.popitem(last=False)

    def _backend_failed(self, action: str, exc: RedisError) -> None:
        BACKEND_ERRORS.labels(group=self.group).inc()
        _log.warning("applied-id store: redis %s failed, using memory only: %s", action, exc)

    async def contains(self, event_id: uuid.UUID) -> bool:
        """True if ``event_id`` was applied (remembered here, or recorded in Redis by any instance of the group)."""
        if event_id in self._recent:
            self._recent.move_to_end(event_id)
            return True
        if self._redis is None:
            return False
        try:
            found = bool(await self._redis.exists(self._key(event_id)))
        except RedisError as exc:
            self._backend_failed("read", exc)
            return False
        if found:
            self._remember(event_id)
        return found

    async def contains_many(self, event_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        """The subset of ``event_ids`` already applied; one Redis command for all ids not remembered here."""
        found = set()
        unknown = []
        for event_id in event_ids:
            if event_id in self._recent:
                self._recent.move_to_end(event_id)
                found.add(event_id)
            else:
                unknown.append(event_id)
        if not unknown or self._redis is None:
            return found
        try:
            answers = await self._redis.mget([self._key(event_id) for event_id in unknown])
        except RedisError as exc:
            self._backend_failed("read", exc)
            return found
        for event_id, answer in zip(unknown, answers, strict=True):
            if answer:
                self._remember(event_id)
                found.add(event_id)
        return found

    async def add_many(self, event_ids: Sequence[uuid.UUID]) -> None:
        """Record every id in ``event_ids`` as applied: :meth:`add` for a batch, one Redis command."""
        for event_id in event_ids:
            self._remember(event_id)
        if self._set_all is None or not event_ids:
            return
        try:
            await self._set_all(keys=[self._key(event_id) for event_id in event_ids], args=[self.ttl_s])
        except RedisError as exc:
            self._backend_failed("write", exc)

    async def add(self, event_id: uuid.UUID) -> None:
        """Record ``event_id`` as applied (after its effects are durable: outputs acknowledged)."""
        self._remember(event_id)
        if self._redis is None:
            return
        try:
            await self._redis.set(self._key(event_id), b"1", ex=self.ttl_s)
        except RedisError as exc:
            self._backend_failed("write", exc)

    def __len__(self) -> int:
        """Ids remembered in memory (at most ``capacity``)."""
        return len(self._recent)

    async def close(self) -> None:
        """Close the Redis connection pool if this set created it (:meth:`from_url`)."""
        if self._redis is not None and self._owns_redis:
            # The installed types-redis stubs predate ``aclose`` (redis>=5), which replaced ``close``.
            await self._redis.aclose()  # type: ignore[attr-defined]
