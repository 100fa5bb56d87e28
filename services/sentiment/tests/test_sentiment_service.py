"""The sentiment service on the real embedded broker and Redis: replayed news in, items and scores out."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import REGISTRY as METRICS

from ata.events import REGISTRY, Message, NewsPublished, SentimentScored
from ata.runtime.codec import decode
from ata.runtime.config import RuntimeSettings
from ata.runtime.kafka import provision_topics
from ata.sentiment.config import SentimentSettings
from ata.sentiment.fixtures import labelled_headlines
from ata.sentiment.service import SentimentService
from ata.sentiment.sources.replay import ReplaySource

WAIT_S = 60.0
TOPICS = ("news.items.v1", "sentiment.scores.v1", "system.heartbeats.v1")


async def read_all(bootstrap: str, topic: str) -> list[Message]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        out: list[Message] = []
        async with asyncio.timeout(WAIT_S):
            while True:
                for batch in (await consumer.getmany(timeout_ms=100)).values():
                    out.extend(decode(r.value) for r in batch)
                positions = [await consumer.position(tp) for tp in partitions]
                if all(p >= (consumer.highwater(tp) or 0) for p, tp in zip(positions, partitions, strict=True)):
                    return out
    finally:
        await consumer.stop()


def metric(name: str, **labels: str) -> float:
    return METRICS.get_sample_value(name, labels) or 0.0


async def run_once(runtime: RuntimeSettings, settings: SentimentSettings, names: dict[str, str], articles: ReplaySource) -> None:
    service = SentimentService(
        runtime, settings, topic_names=names, source=articles, heartbeat_topic=names["system.heartbeats.v1"]
    )
    await service.start()
    try:
        async with asyncio.timeout(WAIT_S):
            await service.finished.wait()
    finally:
        await service.stop()


async def test_replayed_news_becomes_items_and_scores_on_the_broker(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]
) -> None:
    names = {t: unique_name(t.split(".")[1]) for t in TOPICS}
    topics = [dataclasses.replace(REGISTRY.get(t), name=n) for t, n in names.items()]
    await asyncio.to_thread(provision_topics, kafka_bootstrap, topics)
    runtime = RuntimeSettings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, instance_id="sentiment-test", http_port=0)
    settings = SentimentSettings(redis_prefix=f"test:{uuid.uuid4().hex}", availability_delay_ms=60_000)
    rows = [r.article for r in labelled_headlines()[:40]]
    duplicated = [*rows[:20], rows[5], *rows[20:]]  # one article delivered twice
    hits_before = metric("ata_sentiment_dedup_hits_total", source=rows[5].news_source)

    await run_once(runtime, settings, names, ReplaySource(duplicated, name="fixtures"))

    items = [m for m in await read_all(kafka_bootstrap, names["news.items.v1"]) if isinstance(m, NewsPublished)]
    scores = [m for m in await read_all(kafka_bootstrap, names["sentiment.scores.v1"]) if isinstance(m, SentimentScored)]
    assert sorted(i.article_id for i in items) == sorted(a.article_id for a in rows)
    assert metric("ata_sentiment_dedup_hits_total", source=rows[5].news_source) == hits_before + 1
    # One score per (item, symbol), caused by its item, never before publication + delay, in time order per symbol.
    by_id = {i.event_id: i for i in items}
    assert sorted((s.article_id, s.symbol) for s in scores) == sorted((i.article_id, sym) for i in items for sym in i.symbols)
    assert len({s.event_id for s in scores}) == len(scores)
    per_symbol: dict[str, list[int]] = {}
    for s in scores:
        assert s.causation_id is not None
        assert s.ts_event >= by_id[s.causation_id].ts_event + 60 * 10**9
        per_symbol.setdefault(s.symbol, []).append(s.ts_event)
    assert all(ts == sorted(ts) for ts in per_symbol.values())
    assert {s.symbol for s in scores} <= set(settings.resolved_universe())

    # A second run over the same news (same Redis) publishes nothing new: every article is a dedup hit.
    await run_once(runtime, settings, names, ReplaySource(rows, name="fixtures"))
    again = [m for m in await read_all(kafka_bootstrap, names["news.items.v1"]) if isinstance(m, NewsPublished)]
    assert len(again) == len(items)
    assert metric("ata_sentiment_dedup_hits_total", source=rows[5].news_source) >= hits_before + 2
