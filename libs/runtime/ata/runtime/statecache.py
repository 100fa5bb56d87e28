"""A Redis copy of a service core's state, so that a restart resumes where the last run stopped.

Contract:

- **Redis is a cache, never the only copy.** The journal is the system of record: a service that
  finds no usable cached state starts fresh (and a recovering service rebuilds from the journal's
  snapshots and tail). So nothing here raises on a Redis failure: an unreachable server, a
  timeout (``timeout_s``, default 2 s, for connecting and for every command) or an undecodable
  value is logged as a warning, :meth:`StateCache.load` then returns ``None`` and
  :meth:`StateCache.save` returns ``False``.
- **What is stored** is ``snapshot()`` encoded with orjson (JSON: UTF-8, no NaN), under one key,
  overwritten by each save. ``load`` returns the decoded JSON value; the service restores its core
  from it, and decides what a snapshot that does not fit its configuration means.
- **When** is the service's choice, with two moments built in: :meth:`StateCache.handled` after
  each message (or batch of messages) saves every ``save_every_messages`` messages, and :meth:`StateCache.close` saves
  a last time before it closes the client. Snapshots are taken only when a save is due
  (``snapshot`` is a callable).

Typical shell::

    async def on_start(self):
        if (state := await self.cache.load()) is not None:
            self.engine.restore(state)

    async def handle(self, message, delivery):
        outputs = self.engine.handle(message)
        await self.cache.handled(self.engine.snapshot)
        return outputs

    async def on_stop(self):
        await self.cache.close(self.engine.snapshot)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

__all__ = ["Snapshot", "StateCache"]

#: Produces the JSON-serialisable state to cache.
Snapshot = Callable[[], Any]

_log = logging.getLogger(__name__)


class StateCache:
    """The cached state of one core under ``key`` (see the module contract)."""

    def __init__(self, redis_url: str, key: str, *, save_every_messages: int, timeout_s: float = 2.0,
                 log: logging.Logger | None = None) -> None:
        if not key:
            raise ValueError("the state cache needs a non-empty key")
        if save_every_messages < 1:
            raise ValueError("save_every_messages must be at least 1")
        self.key = key
        self.save_every_messages = save_every_messages
        self._redis_url = redis_url
        self._timeout_s = timeout_s
        self._log = log or _log
        self._redis: Redis[bytes] | None = None
        self._since_save = 0

    def _client(self) -> Redis[bytes]:
        if self._redis is None:
            self._redis = Redis.from_url(self._redis_url, socket_timeout=self._timeout_s,
                                         socket_connect_timeout=self._timeout_s)
        return self._redis

    async def load(self) -> Any | None:
        """The cached state, or ``None`` when there is none, Redis is unreachable or the value is
        not JSON (each logged)."""
        try:
            raw = await self._client().get(self.key)
        except RedisError as exc:
            self._log.warning("state cache unreachable, starting fresh: %s", exc)
            return None
        if raw is None:
            return None
        try:
            state = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            self._log.warning("cached state under %s is not JSON, starting fresh: %s", self.key, exc)
            return None
        self._log.info("restored state from cache %s", self.key)
        return state

    async def save(self, snapshot: Snapshot) -> bool:
        """Store ``snapshot()`` now; ``False`` (logged) when Redis failed. Restarts the message count."""
        try:
            await self._client().set(self.key, orjson.dumps(snapshot()))
        except RedisError as exc:
            self._log.warning("could not cache state under %s: %s", self.key, exc)
            return False
        self._since_save = 0
        return True

    async def handled(self, snapshot: Snapshot, count: int = 1) -> None:
        """Count ``count`` handled messages (a batch handled at once); save when ``save_every_messages`` have
        passed since the last save (one save per call, however many that makes)."""
        self._since_save += count
        if self._since_save >= self.save_every_messages:
            await self.save(snapshot)

    async def close(self, snapshot: Snapshot | None = None) -> None:
        """Save ``snapshot()`` a last time (when given and the cache was used), then close the client."""
        if self._redis is None:
            return
        if snapshot is not None:
            await self.save(snapshot)
        await self._redis.aclose()  # type: ignore[attr-defined]  # redis>=5; the stubs predate it
        self._redis = None
