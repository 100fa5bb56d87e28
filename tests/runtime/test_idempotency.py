"""AppliedIds: bounded memory, shared through real Redis across instances, degrades to memory without Redis."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from prometheus_client import REGISTRY as METRICS
from redis.asyncio import Redis

from ata.runtime.idempotency import AppliedIds


async def test_memory_only_set_is_a_bounded_lru() -> None:
    applied = AppliedIds("g", capacity=3)
    ids = [uuid.uuid4() for _ in range(4)]
    for event_id in ids[:3]:
        await applied.add(event_id)
    assert await applied.contains(ids[0])  # touch: ids[1] becomes the least recent
    await applied.add(ids[3])
    assert len(applied) == 3
    assert await applied.contains(ids[0]) and await applied.contains(ids[2]) and await applied.contains(ids[3])
    assert not await applied.contains(ids[1]), "the least recently used id was evicted"


async def test_redis_backed_ids_survive_a_restart_per_group(redis_url: str, unique_name: Callable[[str], str]) -> None:
    group, other = unique_name("group"), unique_name("group")
    event_id, never = uuid.uuid4(), uuid.uuid4()
    first = AppliedIds.from_url(group, redis_url, capacity=1, ttl_s=600)
    await first.add(event_id)
    await first.add(uuid.uuid4())  # evicts event_id from memory: the next answer must come from Redis
    assert await first.contains(event_id)
    await first.close()

    restarted = AppliedIds.from_url(group, redis_url)
    stranger = AppliedIds.from_url(other, redis_url)
    try:
        assert len(restarted) == 0
        assert await restarted.contains(event_id), "a new instance of the group still knows the id"
        assert not await restarted.contains(never)
        assert not await stranger.contains(event_id), "another group applies the id independently"
    finally:
        await restarted.close()
        await stranger.close()

    client: Redis[bytes] = Redis.from_url(redis_url)
    try:
        ttl = await client.ttl(f"ata:applied:{group}:{event_id}")
        assert 0 < ttl <= 600, "every id expires"
    finally:
        await client.aclose()  # type: ignore[attr-defined]


async def test_batches_are_written_and_looked_up_in_redis(redis_url: str, unique_name: Callable[[str], str]) -> None:
    group = unique_name("group")
    written, unknown = [uuid.uuid4() for _ in range(50)], [uuid.uuid4() for _ in range(5)]
    first = AppliedIds.from_url(group, redis_url, ttl_s=600)
    try:
        await first.add_many(written)
    finally:
        await first.close()
    restarted = AppliedIds.from_url(group, redis_url)  # nothing in memory: every answer comes from Redis
    try:
        assert await restarted.contains_many([*unknown, *written]) == set(written)
        assert len(restarted) == len(written), "ids found in Redis are remembered"
    finally:
        await restarted.close()
    client: Redis[bytes] = Redis.from_url(redis_url)
    try:
        ttls = [await client.ttl(f"ata:applied:{group}:{event_id}") for event_id in written]
        assert all(0 < ttl <= 600 for ttl in ttls), "every id of a batch expires"
    finally:
        await client.aclose()  # type: ignore[attr-defined]


async def test_unreachable_redis_degrades_to_memory_and_is_counted(unique_name: Callable[[str], str]) -> None:
    group = unique_name("group")
    applied = AppliedIds.from_url(group, "redis://127.0.0.1:1/0")
    event_id = uuid.uuid4()
    try:
        assert not await applied.contains(event_id)
        await applied.add(event_id)
        assert await applied.contains(event_id), "memory still answers"
        other = uuid.uuid4()
        assert await applied.contains_many([event_id, other]) == {event_id}
        await applied.add_many([other])
        assert await applied.contains_many([other]) == {other}
    finally:
        await applied.close()
    assert METRICS.get_sample_value("ata_dedup_backend_errors_total", {"group": group}) == 4
