"""StateCache against the real (embedded) Redis: round trip, save cadence, last save on close, and
every Redis failure degrading to "start fresh" instead of raising."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from ata.runtime.statecache import StateCache


@pytest.fixture
def key() -> str:
    return f"test:statecache:{uuid.uuid4().hex}"


@pytest.fixture
async def raw_redis(redis_url: str) -> AsyncIterator[Redis[bytes]]:
    client: Redis[bytes] = Redis.from_url(redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
    yield client
    await client.aclose()  # type: ignore[attr-defined]


def closed_port_url() -> str:
    """A redis:// URL on 127.0.0.1 where nothing listens (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


async def test_a_new_instance_loads_what_the_last_one_saved(redis_url: str, key: str) -> None:
    state: dict[str, Any] = {"books": {"SPX": [1.5, None, "x"]}, "count": 3}
    first = StateCache(redis_url, key, save_every_messages=10)
    assert await first.load() is None  # nothing cached yet
    assert await first.save(lambda: state)
    await first.close()
    second = StateCache(redis_url, key, save_every_messages=10)
    assert await second.load() == state
    await second.close()


async def test_saves_every_n_messages_and_on_close(redis_url: str, key: str, raw_redis: Redis[bytes]) -> None:
    counter = {"n": 0}
    snapshots = 0

    def snapshot() -> dict[str, int]:
        nonlocal snapshots
        snapshots += 1
        return dict(counter)

    cache = StateCache(redis_url, key, save_every_messages=3)
    await cache.load()
    for n in range(1, 8):
        counter["n"] = n
        await cache.handled(snapshot)
        stored = await raw_redis.get(key)
        expected = {"n": 3 * (n // 3)} if n >= 3 else None
        assert (orjson.loads(stored) if stored is not None else None) == expected, n
    assert snapshots == 2  # taken only when a save was due (after messages 3 and 6)
    counter["n"] = 99
    await cache.close(snapshot)
    assert orjson.loads(await raw_redis.get(key) or b"null") == {"n": 99}


async def test_a_batch_counts_all_its_messages_and_saves_once(redis_url: str, key: str, raw_redis: Redis[bytes]) -> None:
    taken = []

    def snapshot(n: int) -> dict[str, int]:
        taken.append(n)
        return {"n": n}

    cache = StateCache(redis_url, key, save_every_messages=3)
    await cache.handled(lambda: snapshot(2), count=2)
    assert taken == [] and await raw_redis.get(key) is None
    await cache.handled(lambda: snapshot(9), count=7)  # past 3 and 6: one save
    assert taken == [9] and orjson.loads(await raw_redis.get(key) or b"null") == {"n": 9}
    await cache.handled(lambda: snapshot(10))  # the count restarted at the save
    assert taken == [9]
    await cache.close()


async def test_close_without_use_touches_nothing(redis_url: str, key: str, raw_redis: Redis[bytes]) -> None:
    await StateCache(redis_url, key, save_every_messages=1).close(lambda: {"never": True})
    assert await raw_redis.get(key) is None


async def test_undecodable_cache_is_ignored(redis_url: str, key: str, raw_redis: Redis[bytes],
                                            caplog: pytest.LogCaptureFixture) -> None:
    await raw_redis.set(key, b"\xff not json")
    cache = StateCache(redis_url, key, save_every_messages=1)
    with caplog.at_level(logging.WARNING):
        assert await cache.load() is None
    assert "not JSON" in caplog.text
    await cache.close()


async def test_unreachable_redis_degrades_to_starting_fresh(caplog: pytest.LogCaptureFixture) -> None:
    cache = StateCache(closed_port_url(), "k", save_every_messages=1, timeout_s=1.0)
    with caplog.at_level(logging.WARNING):
        assert await cache.load() is None
        assert await cache.save(lambda: {"a": 1}) is False
        await cache.handled(lambda: {"a": 2})  # a due save that fails is logged, not raised
        await cache.close(lambda: {"a": 3})
    assert "state cache unreachable" in caplog.text and "could not cache state" in caplog.text


def test_rejects_an_empty_key_or_a_non_positive_cadence() -> None:
    with pytest.raises(ValueError, match="key"):
        StateCache("redis://127.0.0.1:1/0", "", save_every_messages=1)
    with pytest.raises(ValueError, match="save_every_messages"):
        StateCache("redis://127.0.0.1:1/0", "k", save_every_messages=0)
