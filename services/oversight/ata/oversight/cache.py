"""The prompt/response cache in Redis, keyed by provider, model and prompt hash.

Only answers that validated (schema and bounds) are stored, so a hit never replays a bad
answer. A Redis failure is a miss: the cache saves money, it is never needed for a verdict.
"""

from __future__ import annotations

import hashlib

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ata.oversight.providers import Completion


class PromptCache:
    def __init__(self, redis: Redis[bytes], prefix: str, ttl_s: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self.ttl_s = ttl_s

    def key(self, provider: str, model: str, prompt_sha256: str) -> str:
        digest = hashlib.sha256(f"{provider}\x00{model}\x00{prompt_sha256}".encode()).hexdigest()
        return f"{self._prefix}:cache:{digest}"

    async def get(self, key: str) -> Completion | None:
        """The cached completion, or None (absent, unreadable, or Redis down)."""
        try:
            raw = await self._redis.get(key)
        except RedisError:
            return None
        if raw is None:
            return None
        try:
            data = orjson.loads(raw)
            return Completion(text=str(data["text"]), model=str(data["model"]), prompt_tokens=int(data["prompt_tokens"]),
                              completion_tokens=int(data["completion_tokens"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    async def put(self, key: str, completion: Completion) -> None:
        if self.ttl_s <= 0:
            return
        value = orjson.dumps({"text": completion.text, "model": completion.model, "prompt_tokens": completion.prompt_tokens,
                              "completion_tokens": completion.completion_tokens})
        try:
            await self._redis.set(key, value, ex=self.ttl_s)
        except RedisError:
            return
