"""Batch handling against the real broker and Redis: a fetched batch goes to one handler call, its
offsets are committed and its ids remembered only after that call returned, failures are dead-lettered
one by one, repeats are skipped; a service's handle_batch gets one span per batch linked to the
messages' traces, and its outputs are published in message order (refused outputs dead-letter their
message, never the others)."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from ata.events import BarClosed, HeartbeatEmitted, Message, Topic, TopicRegistry
from ata.runtime import telemetry
from ata.runtime.bus import ConsumerLoop, Delivery, KafkaBus, dlq_topic
from ata.runtime.codec import decode
from ata.runtime.config import RuntimeSettings
from ata.runtime.idempotency import AppliedIds
from ata.runtime.kafka import provision_topics
from ata.runtime.service import Service
from ata.runtime.testing import bar_number, numbered_bar, read_topic

BAR_FIELDS = ("symbol", "timeframe", "ts_open", "open", "high", "low", "close", "volume")
SYMBOLS = ("AAPL", "MSFT", "SPY", "QQQ")
PARTITIONS = 2
WAIT_S = 60.0


def bar(symbol: str, n: int) -> BarClosed:
    return numbered_bar("batch", symbol, n)


def registry_of(bootstrap: str, *names: str) -> TopicRegistry:
    registry = TopicRegistry([Topic(name, (BarClosed,), "symbol", PARTITIONS, (), ()) for name in names])
    provision_topics(bootstrap, registry)
    return registry


def settings(bootstrap: str, redis_url: str = "redis://127.0.0.1:1/0") -> RuntimeSettings:
    return RuntimeSettings(kafka_bootstrap=bootstrap, redis_url=redis_url, instance_id="test", http_port=0)


async def until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {WAIT_S}s waiting for {what}"
        await asyncio.sleep(0.01)


async def committed_total(bootstrap: str, group: str, topic: str) -> int:
    """The sum over partitions of the group's committed offsets (0 where nothing was committed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return sum([(await consumer.committed(TopicPartition(topic, p))) or 0 for p in range(PARTITIONS)])
    finally:
        await consumer.stop()


async def until_committed(bootstrap: str, group: str, topic: str, count: int) -> None:
    """Wait until ``group`` committed ``count`` records of ``topic`` (after their dead letters and outputs)."""
    deadline = time.monotonic() + WAIT_S
    while (committed := await committed_total(bootstrap, group, topic)) < count:
        assert time.monotonic() < deadline, f"timed out after {WAIT_S}s: {committed} of {count} committed"
        await asyncio.sleep(0.1)


def dead_ids(records: Sequence[ConsumerRecord]) -> set[uuid.UUID]:
    """The event ids of the originals of dead-letter records."""
    return {decode(base64.b64decode(orjson.loads(r.value)["original_value_b64"])).event_id for r in records}


async def publish(bus: KafkaBus, topic: str, bars: Sequence[BarClosed]) -> None:
    await bus.publish_routed((topic, item, item.symbol) for item in bars)


async def not_called(message: Message, delivery: Delivery) -> None:
    raise AssertionError("the per-record handler is not called when a batch handler is given")


class Batches:
    """A batch handler that records each call; ``fail`` picks the messages it answers with an exception."""

    def __init__(self, fail: Callable[[Message], bool] = lambda _: False) -> None:
        self.calls: list[list[Message]] = []
        self.fail = fail
        self.gate: asyncio.Event | None = None  # when set up: the first call waits for it
        self.entered = asyncio.Event()

    async def __call__(self, batch: Sequence[tuple[Message, Delivery]]) -> list[Exception | None]:
        self.calls.append([message for message, _ in batch])
        self.entered.set()
        if self.gate is not None and len(self.calls) == 1:
            await self.gate.wait()
        return [ValueError(f"refused {bar_number(m)}") if self.fail(m) else None for m, _ in batch]

    @property
    def seen(self) -> list[Message]:
        return [message for call in self.calls for message in call]


async def test_a_batch_is_committed_and_remembered_only_after_its_handler_returned(
        kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]) -> None:
    topic, group = unique_name("bars"), unique_name("group")
    registry = registry_of(kafka_bootstrap, topic)
    bars = [bar(symbol, n) for n in range(10) for symbol in SYMBOLS]
    handler = Batches()
    handler.gate = asyncio.Event()
    applied = AppliedIds.from_url(group, redis_url)
    async with KafkaBus(settings(kafka_bootstrap), service="batch-commit", registry=registry) as bus:
        await publish(bus, topic, bars)
        loop = ConsumerLoop(bus, group, [topic], not_called, applied=applied, batch_handler=handler)
        async with loop:
            async with asyncio.timeout(WAIT_S):
                await handler.entered.wait()
            # The first batch is in the handler: nothing of it may be committed or remembered yet.
            assert await committed_total(kafka_bootstrap, group, topic) == 0
            probe = AppliedIds.from_url(group, redis_url)
            assert await probe.contains_many([m.event_id for m in handler.calls[0]]) == set()
            handler.gate.set()
            await until(lambda: len(handler.seen) == len(bars), "every bar handled")
        assert await committed_total(kafka_bootstrap, group, topic) == len(bars)
        assert await probe.contains_many([b.event_id for b in bars]) == {b.event_id for b in bars}
        await probe.close()
    await applied.close()
    assert Counter(m.event_id for m in handler.seen) == Counter(b.event_id for b in bars), "each bar exactly once"
    for symbol in SYMBOLS:  # per key in offset order, also across batches
        assert [bar_number(m) for m in handler.seen if isinstance(m, BarClosed) and m.symbol == symbol] == list(range(10))


async def test_failures_are_dead_lettered_one_by_one_and_repeats_skipped(
        kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]) -> None:
    topic, group = unique_name("bars"), unique_name("group")
    registry = registry_of(kafka_bootstrap, topic)
    bars = [bar(symbol, n) for n in range(6) for symbol in SYMBOLS]
    failing = {b.event_id for b in bars if bar_number(b) == 3}
    handler = Batches(fail=lambda m: m.event_id in failing)
    applied = AppliedIds.from_url(group, redis_url)
    async with KafkaBus(settings(kafka_bootstrap), service="batch-fail", registry=registry) as bus:
        await publish(bus, topic, [*bars, bars[0], bars[5]])  # two repeats of already published bars
        async with ConsumerLoop(bus, group, [topic], not_called, applied=applied, batch_handler=handler):
            await until_committed(kafka_bootstrap, group, topic, len(bars) + 2)
        # A second group sharing the applied ids: only the failed bars were not remembered, so only they come back.
        again, second = Batches(), unique_name("group")
        async with ConsumerLoop(bus, second, [topic], not_called, applied=applied, batch_handler=again):
            await until_committed(kafka_bootstrap, second, topic, len(bars) + 2)
    await applied.close()
    assert Counter(m.event_id for m in handler.seen) == Counter(b.event_id for b in bars), "repeats never reach the handler"
    assert Counter(m.event_id for m in again.seen) == Counter(failing)
    records = await read_topic(kafka_bootstrap, dlq_topic(topic))
    payloads = [orjson.loads(r.value) for r in records]
    assert all(p["stage"] == "handle" and p["error"] == "ValueError: refused 3" for p in payloads)
    assert dead_ids(records) == failing and len(records) == len(failing), "the first group dead-lettered each failure once"


def batch_relay(name: str, source: str, target: str, registry: TopicRegistry,
                refuse: Callable[[BarClosed], bool]) -> type[Service]:
    """A service relaying bars from ``source`` to ``target`` a batch at a time; bars ``refuse`` picks fail."""

    class BatchRelay(Service):
        subscriptions = (source,)

        def __init__(self, runtime: RuntimeSettings, **kwargs: object) -> None:
            super().__init__(runtime, **kwargs)  # type: ignore[arg-type]
            self.batches: list[list[BarClosed]] = []

        def route(self, message: Message) -> str:
            return target

        async def handle_batch(self, batch: Sequence[tuple[Message, Delivery]]) -> list[Sequence[Message] | Exception]:
            bars = [message for message, _ in batch if isinstance(message, BarClosed)]
            self.batches.append(bars)
            results: list[Sequence[Message] | Exception] = []
            for item in bars:
                fields = {key: getattr(item, key) for key in BAR_FIELDS}
                results.append(ValueError("refused") if refuse(item) else
                               [BarClosed.caused_by(item, source=self.source, ts_init=self.now_ns(), **fields)])
            return results

    BatchRelay.name = name
    BatchRelay.registry = registry
    return BatchRelay


async def test_a_service_handles_batches_under_one_span_and_publishes_their_outputs_in_order(
        kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]) -> None:
    source, target, heartbeats = unique_name("source"), unique_name("target"), unique_name("heartbeats")
    registry = TopicRegistry([*registry_of(kafka_bootstrap, source, target).data_topics(),
                              Topic(heartbeats, (HeartbeatEmitted,), "service", 1, (), ())])
    provision_topics(kafka_bootstrap, registry)
    exporter = telemetry.memory_exporter()
    name = f"svc-batch-{uuid.uuid4().hex[:8]}"
    bars = [bar(symbol, n) for n in range(8) for symbol in SYMBOLS]
    refused = {b.event_id for b in bars if b.symbol == "SPY" and bar_number(b) in (2, 5)}
    group = unique_name("group")
    service = batch_relay(name, source, target, registry, lambda b: b.event_id in refused)(
        settings(kafka_bootstrap, redis_url), group_id=group, heartbeat_topic=heartbeats)
    assert service.handles_batches
    await service.start()
    try:
        await until(lambda: service.ready, "the service assigned its partitions")
        async with KafkaBus(settings(kafka_bootstrap), service="feeder", registry=registry) as bus:
            traces = set()
            for item in bars:  # each bar in a trace of its own
                with telemetry.producer_span("feeder", source) as span:
                    traces.add(span.get_span_context().trace_id)
                    await bus.publish_to(source, item, key=item.symbol)
        await until_committed(kafka_bootstrap, group, source, len(bars))
        relayed = await read_topic(kafka_bootstrap, target)
        dead = await read_topic(kafka_bootstrap, dlq_topic(source))
    finally:
        await service.stop()

    relayed_messages = [decode(r.value) for r in relayed]
    assert sorted(m.causation_id for m in relayed_messages) == sorted(b.event_id for b in bars if b.event_id not in refused)
    for symbol in SYMBOLS:  # outputs in message order per key
        indices = [bar_number(m) for m in relayed_messages if isinstance(m, BarClosed) and m.symbol == symbol]
        assert indices == [n for n in range(8) if not (symbol == "SPY" and n in (2, 5))]
    assert dead_ids(dead) == refused and len(dead) == len(refused)
    spans = [s for s in exporter.get_finished_spans() if s.attributes and s.attributes.get("ata.service") == name]
    assert len(spans) == len(service.batches), "one span per batch"
    assert sum(int(s.attributes["messaging.batch.message_count"]) for s in spans) == len(bars)  # type: ignore[index]
    assert {link.context.trace_id for s in spans for link in s.links} == traces, "each message's trace is linked"
    span_traces = {format(s.context.trace_id, "032x") for s in spans}  # type: ignore[union-attr]
    header_traces = {dict(r.headers)["traceparent"].decode().split("-")[1] for r in relayed}
    assert header_traces <= span_traces, "outputs join their batch's trace"


async def test_outputs_that_cannot_be_published_dead_letter_their_messages_only(
        kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]) -> None:
    source, heartbeats = unique_name("source"), unique_name("heartbeats")
    registry = TopicRegistry([*registry_of(kafka_bootstrap, source).data_topics(),
                              Topic(heartbeats, (HeartbeatEmitted,), "service", 1, (), ())])
    provision_topics(kafka_bootstrap, registry)
    bars = [bar(symbol, n) for n in range(4) for symbol in SYMBOLS]

    class Unroutable(batch_relay(f"svc-unroutable-{uuid.uuid4().hex[:8]}", source, "unused", registry, lambda _: False)):  # type: ignore[misc]
        """Relays even-numbered bars to a route that refuses them; odd-numbered ones have no outputs."""

        def route(self, message: Message) -> str:
            raise LookupError("no route for this output")

        async def handle_batch(self, batch: Sequence[tuple[Message, Delivery]]) -> list[Sequence[Message] | Exception]:
            results = await super().handle_batch(batch)
            return [result if bar_number(message) % 2 == 0 else [] for (message, _), result in zip(batch, results, strict=True)]

    group = unique_name("group")
    service = Unroutable(settings(kafka_bootstrap, redis_url), group_id=group, heartbeat_topic=heartbeats)
    await service.start()
    try:
        await until(lambda: service.ready, "the service assigned its partitions")
        async with KafkaBus(settings(kafka_bootstrap), service="feeder", registry=registry) as bus:
            await publish(bus, source, bars)
        await until_committed(kafka_bootstrap, group, source, len(bars))
        dead = await read_topic(kafka_bootstrap, dlq_topic(source))
    finally:
        await service.stop()
    assert dead_ids(dead) == {b.event_id for b in bars if bar_number(b) % 2 == 0} and len(dead) == len(bars) // 2
    assert all(orjson.loads(r.value)["error"] == "LookupError: no route for this output" for r in dead)


async def test_the_default_handle_batch_hands_each_message_to_handle_in_order(redis_url: str) -> None:
    """A service that does not override handle_batch consumes per message; called anyway, the default answers
    as the contract says: each message's outputs from ``handle``, or the exception it raised."""

    class PerMessage(Service):
        name = "per-message"

        async def handle(self, message: Message, delivery: Delivery) -> Sequence[Message]:
            if bar_number(message) == 1:
                raise ValueError("refused 1")
            return [message]

    service = PerMessage(settings("127.0.0.1:1", redis_url))
    assert not service.handles_batches
    bars = [bar("AAPL", n) for n in range(3)]
    batch = [(b, Delivery("t", 0, n, b.symbol, {}, b"")) for n, b in enumerate(bars)]
    results = await service.handle_batch(batch)
    assert results[0] == [bars[0]] and results[2] == [bars[2]]
    assert isinstance(results[1], ValueError) and str(results[1]) == "refused 1"
