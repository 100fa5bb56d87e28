"""The oversight service handles fetched batches (real broker and Redis, scripted LLM on 127.0.0.1): verdicts
already decided in a batch are published before a provider call, never held behind it; each verdict once."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import pytest

from ata.events import REGISTRY, Message, OversightReviewed, TopicRegistry, Verdict
from ata.oversight.config import OversightSettings
from ata.oversight.core import data_block
from ata.oversight.service import SUBSCRIPTIONS, OversightService
from ata.oversight.testing import T0, Action, Reply, ScriptedLLMServer, Stall, collect, target, verdict_json
from ata.runtime.batching import pause_after_batch_s
from ata.runtime.bus import Delivery, KafkaBus
from ata.runtime.config import RuntimeSettings
from ata.runtime.kafka import provision_topics

WAIT_S = 60.0
REVIEWS = "oversight.reviews.v1"


async def until(condition: Callable[[], bool], failure: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, failure
        await asyncio.sleep(0.05)


def reviewed(messages: list[Any]) -> dict[str, OversightReviewed]:
    return {m.symbol: m for m in messages if isinstance(m, OversightReviewed)}


async def test_verdicts_decided_before_a_provider_call_are_published_while_it_is_pending(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]
) -> None:
    names = {t: unique_name(t.split(".")[1]) for t in (*SUBSCRIPTIONS, REVIEWS)}
    # One partition of targets: the three targets, published before the service starts, come in one fetch.
    registry = TopicRegistry([dataclasses.replace(REGISTRY.get(t), name=n, partitions=1) for t, n in names.items()])
    await asyncio.to_thread(provision_topics, kafka_bootstrap, registry)
    tag = uuid.uuid4().hex[:8]
    runtime = RuntimeSettings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, instance_id=f"oversight-{tag}", http_port=0)

    def respond(body: dict[str, Any]) -> Action:
        symbol = orjson.loads(data_block(body["messages"][-1]["content"]))["symbol"]
        # The held call outlasts the test unless released; the review deadline is longer still.
        return Stall(seconds=600.0, text=verdict_json("reject")) if symbol == "SLOW" else Reply(verdict_json("approve"))

    # Weights below 0.5 are approved by policy at once (gating mode); SLOW's 0.9 goes to the provider.
    small, slow, after = target("FAST", T0, 0.1), target("SLOW", T0, 0.9), target("AFTER", T0, 0.2)
    async with ScriptedLLMServer(respond) as server:
        settings = OversightSettings(
            mode="gating", provider="openai", base_url=server.openai_url, model="scripted-1", api_key="test-key",
            review_min_notional=1e12, review_min_abs_weight=0.5, retry_attempts=1, cache_ttl_s=0,
            deadline_ms=900_000, request_timeout_ms=900_000, redis_prefix=f"ata:oversight:test:{tag}")
        async with KafkaBus(runtime, service="feeder", registry=registry) as bus:
            await bus.publish_routed((names["strategy.targets.v1"], t, t.symbol) for t in (small, slow, after))
        service = OversightService(runtime, settings, registry=registry, topic_names=names, group_id=f"oversight-{tag}",
                                   heartbeat_topic=unique_name("heartbeats"))
        await service.start()
        try:
            await until(lambda: len(server.requests) == 1, "the provider call for SLOW")
            # FAST's verdict was acknowledged before SLOW's call left; AFTER waits behind the call.
            early = reviewed(await collect(kafka_bootstrap, names[REVIEWS], lambda _seen: True, timeout_s=WAIT_S))
            assert set(early) == {"FAST"}
            assert early["FAST"].verdict is Verdict.APPROVE and early["FAST"].provider == "policy"
            server.release()
            every = await collect(kafka_bootstrap, names[REVIEWS], lambda seen: len(reviewed(seen)) == 3, timeout_s=WAIT_S)
        finally:
            await service.stop()
    verdicts = reviewed(every)
    assert verdicts["SLOW"].verdict is Verdict.REJECT and verdicts["SLOW"].provider == "openai"
    assert verdicts["AFTER"].verdict is Verdict.APPROVE and verdicts["AFTER"].subject_event_id == after.event_id
    assert len([m for m in every if isinstance(m, OversightReviewed)]) == 3  # none published twice
    assert len(server.requests) == 1


def batch_pause_s(mode: str, interval_ms: int, *, full: bool, elapsed_s: float) -> float:
    """The pause the runtime takes after an oversight batch in ``mode`` (its interval through the runtime's rule)."""
    service = OversightService(RuntimeSettings(http_port=0), OversightSettings(mode=mode, batch_interval_ms=interval_ms))
    return pause_after_batch_s(service.batch_interval_s(), full=full, elapsed_s=elapsed_s)


def test_batches_pause_only_where_nothing_waits_for_the_verdicts() -> None:
    assert batch_pause_s("advisory", 100, full=False, elapsed_s=0.03) == pytest.approx(0.07)
    assert batch_pause_s("off", 100, full=False, elapsed_s=0.0) == pytest.approx(0.1)
    assert batch_pause_s("advisory", 100, full=False, elapsed_s=0.2) == 0.0  # a slow batch: no pause
    assert batch_pause_s("advisory", 100, full=True, elapsed_s=0.0) == 0.0  # more is waiting
    assert batch_pause_s("advisory", 0, full=False, elapsed_s=0.0) == 0.0
    assert batch_pause_s("gating", 100, full=False, elapsed_s=0.0) == 0.0  # risk waits for these verdicts


class CountingService(OversightService):
    """Records the size of every batch it is handed."""

    sizes: list[int]

    async def handle_batch(self, batch: Sequence[tuple[Message, Delivery]]) -> Sequence[Sequence[Message] | Exception]:
        self.sizes.append(len(batch))
        return await super().handle_batch(batch)


async def test_subjects_arriving_during_the_pause_are_reviewed_in_one_batch(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]
) -> None:
    names = {t: unique_name(t.split(".")[1]) for t in (*SUBSCRIPTIONS, REVIEWS)}
    registry = REGISTRY.renamed(names)
    await asyncio.to_thread(provision_topics, kafka_bootstrap, [registry.get(n) for n in names.values()])
    tag = uuid.uuid4().hex[:8]
    runtime = RuntimeSettings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, instance_id=f"oversight-{tag}", http_port=0)
    # A long pause (generous beside the few publications made during it); every target is reviewed (rules).
    settings = OversightSettings(mode="advisory", batch_interval_ms=5_000, review_min_notional=0,
                                 redis_prefix=f"ata:oversight:test:{tag}")
    service = CountingService(runtime, settings, registry=registry, topic_names=names, group_id=f"oversight-{tag}",
                              heartbeat_topic=unique_name("heartbeats"))
    service.sizes = []
    first, *later = [target(symbol, T0 + i, 0.5) for i, symbol in enumerate(("AAA", "BBB", "CCC", "DDD"))]
    await service.start()
    try:
        async with KafkaBus(runtime, service="feeder", registry=registry) as bus:
            await bus.publish_routed([(names["strategy.targets.v1"], first, first.symbol)])
            await until(lambda: service.sizes == [1], "the first batch")
            for subject in later:  # one by one, while the service pauses after the first batch
                await bus.publish_routed([(names["strategy.targets.v1"], subject, subject.symbol)])
        every = await collect(kafka_bootstrap, names[REVIEWS], lambda seen: len(reviewed(seen)) == 4, timeout_s=WAIT_S)
    finally:
        await service.stop()
    assert service.sizes == [1, 3]
    assert {m.subject_event_id for m in every if isinstance(m, OversightReviewed)} == {
        t.event_id for t in (first, *later)}
