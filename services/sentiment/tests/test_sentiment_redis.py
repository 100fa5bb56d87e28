"""Rate limiting, dedup and decayed state against the real Redis (``redis_url`` fixture)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from ata.sentiment.core import Article, EngineParams, EntityMapper, Scorer, SentimentEngine, to_news_event
from ata.sentiment.fixtures import default_universe, labelled_headlines
from ata.sentiment.redis_state import RateLimitTimeoutError, RedisDeduplicator, RedisRateLimiter, RedisSnapshotStore


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis[Any]]:
    client: Redis[Any] = Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        yield client
    finally:
        await client.aclose()  # type: ignore[attr-defined]


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex}"


async def test_token_bucket_grants_exactly_the_burst_under_concurrency(redis: Redis[Any], prefix: str) -> None:
    # A token per 20 s: the 40 calls cannot straddle a refill, however slowly a loaded machine makes them.
    limiter = RedisRateLimiter(redis, prefix, rate_per_s=0.05, burst=5)
    waits = await asyncio.gather(*(limiter.try_acquire("wire") for _ in range(40)))
    assert sum(w == 0 for w in waits) == 5
    # The next token is at most 20 seconds away.
    assert all(0 < w <= 20_000 for w in waits if w)
    # Buckets are per source.
    assert await limiter.try_acquire("other") == 0
    assert 0 < await redis.pttl(limiter.key("wire")) <= limiter.ttl_ms


async def test_acquire_waits_for_a_refill_and_counts_the_wait(redis: Redis[Any], prefix: str) -> None:
    # Two at once with one token and a refill per second: one of them waits (unless a second passed between them).
    limiter = RedisRateLimiter(redis, prefix, rate_per_s=1.0, burst=1)
    await asyncio.gather(limiter.acquire("wire", timeout_s=10), limiter.acquire("wire", timeout_s=10))
    assert limiter.waits >= 1
    slow = RedisRateLimiter(redis, prefix + ":slow", rate_per_s=0.01, burst=1)
    await slow.acquire("wire", timeout_s=1)
    with pytest.raises(RateLimitTimeoutError):
        await slow.acquire("wire", timeout_s=1)


async def test_dedup_by_id_or_content_hash_with_ttl(redis: Redis[Any], prefix: str) -> None:
    # A TTL no loaded machine outlasts between the calls; the expiry is shown on a 1 s TTL below.
    dedup = RedisDeduplicator(redis, prefix, ttl_s=600)
    with_id = Article(news_source="wire", headline="Halvorsen beats", published_ns=1, article_id="a-1")
    same_id = Article(news_source="wire", headline="Halvorsen beats estimates (updated)", published_ns=2, article_id="a-1")
    no_id = Article(news_source="rss", headline="Corvane recalls inhalers", published_ns=3)
    reworded_spacing = Article(news_source="rss", headline="  corvane recalls   inhalers", published_ns=4)
    results = await asyncio.gather(*(dedup.first_seen(with_id) for _ in range(10)))
    assert sum(results) == 1
    assert not await dedup.first_seen(same_id)
    assert await dedup.first_seen(no_id)
    assert not await dedup.first_seen(reworded_spacing)
    assert dedup.hits == 9 + 1 + 1
    assert 500 < await redis.ttl(dedup.key(with_id)) <= 600
    # After the TTL an article may be seen again.
    short = RedisDeduplicator(redis, prefix + ":short", ttl_s=1)
    assert await short.first_seen(no_id)
    async with asyncio.timeout(30):
        while await redis.exists(short.key(no_id)):  # noqa: ASYNC110  (no event for an expiry)
            await asyncio.sleep(0.1)
    assert await short.first_seen(no_id)


async def test_decayed_state_survives_a_round_trip_through_redis(redis: Redis[Any], prefix: str) -> None:
    scorer = Scorer()
    params = EngineParams(half_life_ns=3600 * 10**9, availability_delay_ns=60 * 10**9)
    mapper = EntityMapper(default_universe())
    items = [to_news_event(r.article, mapper, source="sentiment/t", ts_init=0) for r in labelled_headlines()[:40]]
    straight = SentimentEngine(scorer, params, source="sentiment/t")
    interrupted = SentimentEngine(scorer, params, source="sentiment/t")
    expected, got = [], []
    for item in items:
        expected.extend(straight.on_news(item))
    store = RedisSnapshotStore(redis, prefix, ttl_s=60)
    for item in items[:25]:
        got.extend(interrupted.on_news(item))
    await store.save(interrupted.snapshot())
    snapshot = await store.load()
    assert snapshot is not None
    resumed = SentimentEngine.restore(scorer, params, snapshot, source="sentiment/t")
    for item in items[25:]:
        got.extend(resumed.on_news(item))
    assert got == expected
    later = items[-1].ts_event + 5 * 3600 * 10**9
    for symbol in straight.states:
        assert resumed.view(symbol, later) == straight.view(symbol, later)
        assert abs(resumed.view(symbol, later).news_volume) < 2.0
