"""The Kafka bus against the real embedded broker and Redis: round trip, partitioning, commits,
redelivery without duplicate effects, dead letters, retries, lag, provisioning, and the in-memory bus."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections import Counter
from collections.abc import Callable

import orjson
import pytest
from confluent_kafka.admin import AdminClient
from prometheus_client import REGISTRY as METRICS
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ata.events import REGISTRY, BarClosed, DeadLetterRecorded, HaltTrading, HeartbeatEmitted, Message, Topic, TopicRegistry
from ata.runtime import telemetry
from ata.runtime.bus import ConsumerLoop, Delivery, InMemoryBus, KafkaBus, RetryableError, _observe_all, dlq_topic
from ata.runtime.codec import decode, encode
from ata.runtime.config import RuntimeSettings
from ata.runtime.idempotency import AppliedIds
from ata.runtime.kafka import ProvisionError, bulk_producer, provision_topics
from ata.runtime.resilience import Backoff
from ata.runtime.testing import read_topic

T0 = 1_700_000_000_000_000_000
MINUTE_NS = 60_000_000_000
BAR_FIELDS = ("symbol", "timeframe", "ts_open", "open", "high", "low", "close", "volume")
FAST_RETRY = Backoff(initial_s=0.01, multiplier=2.0, cap_s=0.05, max_attempts=4, jitter=False)


def bar(symbol: str = "AAPL", n: int = 0, close: float = 100.0) -> BarClosed:
    """The ``n``-th one-minute bar of ``symbol`` (a distinct id per (symbol, n))."""
    ts = T0 + (n + 1) * MINUTE_NS
    return BarClosed.origin(
        natural_key=("test", symbol, n), ts_event=ts, ts_init=ts, source="test/0", symbol=symbol, timeframe="1m",
        ts_open=ts - MINUTE_NS, open=close, high=close + 1, low=close - 1, close=close, volume=10.0,
    )


def runtime_settings(bootstrap: str, **overrides: int) -> RuntimeSettings:
    return RuntimeSettings(kafka_bootstrap=bootstrap, instance_id="test", **overrides)


def bar_registry(bootstrap: str, name: str, partitions: int = 3) -> TopicRegistry:
    """A registry with one BarClosed topic ``name`` (keyed by symbol) and its DLQ, both created on the broker."""
    registry = TopicRegistry([Topic(name, (BarClosed,), "symbol", partitions, (), ())])
    provision_topics(bootstrap, registry)
    return registry


async def until(predicate: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.01)


def metric(name: str, **labels: str) -> float:
    return METRICS.get_sample_value(name, labels) or 0.0


class Collector:
    """A handler that records what it was given."""

    def __init__(self) -> None:
        self.seen: list[tuple[Message, Delivery]] = []

    async def __call__(self, message: Message, delivery: Delivery) -> None:
        self.seen.append((message, delivery))

    @property
    def ids(self) -> list[uuid.UUID]:
        return [m.event_id for m, _ in self.seen]


# -- round trip and partitioning -----------------------------------------------------------------


async def test_typed_round_trip_with_headers(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    topic = unique_name("bars")
    registry = bar_registry(kafka_bootstrap, topic)
    bars = [bar(symbol, n) for n in range(5) for symbol in ("AAPL", "MSFT", "SPY")]
    handler = Collector()
    telemetry.tracer_provider()
    async with KafkaBus(runtime_settings(kafka_bootstrap), service="roundtrip", registry=registry) as bus:
        loop = bus.consumer_loop(unique_name("group"), [topic], handler)
        async with loop:
            with telemetry.producer_span("roundtrip", topic) as span:
                published = await bus.publish(bars, headers={"x-origin": "test"})
            await until(lambda: len(handler.seen) == len(bars), "all bars consumed")
            trace_id = format(span.get_span_context().trace_id, "032x")

    assert sorted(handler.ids) == sorted(b.event_id for b in bars)
    by_id = {b.event_id: b for b in bars}
    for message, delivery in handler.seen:
        assert type(message) is BarClosed
        assert message == by_id[message.event_id], "decoded message equals the published one, field for field"
        assert delivery.key == message.symbol
        assert delivery.headers["x-origin"] == "test"
        assert delivery.headers["traceparent"].split("-")[1] == trace_id, "trace context travels in the headers"
        assert decode(delivery.raw) == message
    # Each message was acknowledged at the partition and offset it was later delivered from.
    acked = {(p.topic, p.partition, p.offset): p.key for p in published}
    assert {(d.topic, d.partition, d.offset): d.key for _, d in handler.seen} == acked
    # Per key, order is kept.
    for symbol in ("AAPL", "MSFT", "SPY"):
        closes = [m.ts_event for m, _ in handler.seen if isinstance(m, BarClosed) and m.symbol == symbol]
        assert closes == sorted(closes)


async def test_same_key_lands_on_same_partition_from_aiokafka_confluent_and_in_memory(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("keys")
    registry = bar_registry(kafka_bootstrap, topic, partitions=6)
    keys = [f"SYM{i}" for i in range(40)]
    async with KafkaBus(runtime_settings(kafka_bootstrap), service="keys", registry=registry) as bus:
        from_aiokafka = {p.key: p.partition for p in await bus.publish([bar(k) for k in keys])}

    producer = bulk_producer(kafka_bootstrap)
    from_confluent: dict[str, int] = {}

    def delivered(err: object, msg: object) -> None:
        assert err is None, err
        from_confluent[msg.key().decode()] = msg.partition()  # type: ignore[attr-defined]

    for k in keys:
        producer.produce(topic, encode(bar(k, 1)), key=k.encode(), on_delivery=delivered)
    assert producer.flush(30) == 0, "confluent producer did not deliver within 30 s"

    in_memory = InMemoryBus(registry=registry)
    from_memory = {p.key: p.partition for p in await in_memory.publish([bar(k) for k in keys])}

    assert len(set(from_aiokafka.values())) > 1, "keys spread over several partitions"
    assert from_confluent == from_aiokafka
    assert from_memory == from_aiokafka


async def test_bulk_producer_default_delivery_callback_reports_every_record(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("bulkreports")
    bar_registry(kafka_bootstrap, topic)
    reports: list[tuple[object, str, bytes]] = []

    def delivered(err: object, msg: object) -> None:
        reports.append((err, msg.topic(), msg.key()))  # type: ignore[attr-defined]

    producer = bulk_producer(kafka_bootstrap, on_delivery=delivered)
    for n in range(5):
        producer.produce(topic, encode(bar("AAPL", n)), key=f"K{n}".encode())  # no per-call callback
    assert producer.flush(30) == 0, "confluent producer did not deliver within 30 s"
    assert sorted(reports, key=lambda r: r[2]) == [(None, topic, f"K{n}".encode()) for n in range(5)]  # partitions in any order
    assert sorted(m.key for m in await read_topic(kafka_bootstrap, topic)) == [f"K{n}".encode() for n in range(5)]


# -- commits, restarts, redelivery -----------------------------------------------------------------


async def test_consumer_restart_resumes_from_committed_offset_without_loss(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic, group = unique_name("resume"), unique_name("group")
    registry = bar_registry(kafka_bootstrap, topic)
    first_batch = [bar(s, n) for n in range(20) for s in ("AAPL", "MSFT")]
    second_batch = [bar(s, n) for n in range(20, 30) for s in ("AAPL", "MSFT")]
    enough = asyncio.Event()
    first = Collector()

    async def slow_after_ten(message: Message, delivery: Delivery) -> None:
        await first(message, delivery)
        if len(first.seen) >= 10:
            enough.set()
            await asyncio.sleep(0.02)  # leave the stop request room to land mid-stream

    async with KafkaBus(runtime_settings(kafka_bootstrap), service="resume", registry=registry) as bus:
        await bus.publish(first_batch)
        loop = ConsumerLoop(bus, group, [topic], slow_after_ten)
        await loop.start()
        async with asyncio.timeout(30):
            await enough.wait()
        await loop.stop()
        assert 10 <= len(first.seen) < len(first_batch), "stopped mid-stream"

        await bus.publish(second_batch)  # published while nobody consumes
        second = Collector()
        async with ConsumerLoop(bus, group, [topic], second):
            expected = {b.event_id for b in first_batch + second_batch}
            await until(lambda: set(first.ids) | set(second.ids) == expected, "the rest consumed after restart")

    assert not set(first.ids) & set(second.ids), "a clean stop commits everything handled: nothing is redelivered"
    assert len(first.ids) + len(second.ids) == len(expected)


class SimulatedCrash(BaseException):
    """Stands for the process dying: not an Exception, so the loop neither dead-letters nor commits."""


async def test_crash_between_handling_and_commit_redelivers_without_duplicate_effect(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]
) -> None:
    source, derived = unique_name("crash_in"), unique_name("crash_out")
    upstream_registry = bar_registry(kafka_bootstrap, source, partitions=1)
    downstream_registry = bar_registry(kafka_bootstrap, derived, partitions=3)
    upstream_group, downstream_group = unique_name("up"), unique_name("down")
    inputs = [bar("AAPL", n) for n in range(20)]
    crash_on = inputs[9].event_id
    crashed = False
    handled_upstream: list[uuid.UUID] = []

    async with KafkaBus(runtime_settings(kafka_bootstrap), service="crash", registry=downstream_registry) as out_bus:

        async def transform(message: Message, delivery: Delivery) -> None:
            """Publish a derived bar (deterministic id), then - once - die before the offset is committed."""
            nonlocal crashed
            assert isinstance(message, BarClosed)
            handled_upstream.append(message.event_id)
            output = BarClosed.caused_by(message, source="transform/0", **message.model_dump(include=set(BAR_FIELDS)))
            await out_bus.publish([output])
            if message.event_id == crash_on and not crashed:
                crashed = True
                raise SimulatedCrash

        upstream_bus = KafkaBus(runtime_settings(kafka_bootstrap), service="crash-up", registry=upstream_registry)
        async with upstream_bus:
            await upstream_bus.publish(inputs)
            first_life = ConsumerLoop(upstream_bus, upstream_group, [source], transform,
                                      applied=AppliedIds.from_url(upstream_group, redis_url))
            await first_life.start()
            with pytest.raises(SimulatedCrash):
                async with asyncio.timeout(30):
                    await first_life.wait()
            with pytest.raises(SimulatedCrash):
                await first_life.stop()  # closes the dead consumer without committing, reports the crash
            assert first_life.applied is not None
            await first_life.applied.close()

            # A new instance: empty memory, same Redis.
            second_life = ConsumerLoop(upstream_bus, upstream_group, [source], transform,
                                       applied=AppliedIds.from_url(upstream_group, redis_url))
            ledger: list[uuid.UUID] = []

            async def apply(message: Message, delivery: Delivery) -> None:
                ledger.append(message.event_id)

            skipped_before = metric("ata_duplicates_skipped_total", service="crash", topic=derived)
            downstream = ConsumerLoop(out_bus, downstream_group, [derived], apply,
                                      applied=AppliedIds.from_url(downstream_group, redis_url))
            async with second_life, downstream:
                await until(lambda: len(set(ledger)) == len(inputs), "every derived bar applied downstream")
                records = await read_topic(kafka_bootstrap, derived)
                await until(lambda: downstream.lag == 0 and metric(
                    "ata_duplicates_skipped_total", service="crash", topic=derived) > skipped_before, "duplicate skipped")
            for applied in (second_life.applied, downstream.applied):
                assert applied is not None
                await applied.close()

    expected = {BarClosed.caused_by(b, source="transform/0", **b.model_dump(include=set(BAR_FIELDS))).event_id for b in inputs}
    assert handled_upstream.count(crash_on) == 2, "the message in hand at the crash was redelivered and handled again"
    assert Counter(handled_upstream).most_common(1)[0][1] == 2
    assert set(handled_upstream) == {b.event_id for b in inputs}
    assert len(handled_upstream) == len(inputs) + 1, "messages applied before the crash were skipped, not re-handled"
    assert len(records) == len(inputs) + 1, "the redelivery really published one duplicate"
    assert len(ledger) == len(set(ledger)), "the duplicate had no second effect downstream"
    assert set(ledger) == expected


# -- dead letters and retries -------------------------------------------------------------------------


async def test_dead_letters_bad_records_and_keeps_consuming(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    topic, group = unique_name("dlq"), unique_name("group")
    registry = bar_registry(kafka_bootstrap, topic, partitions=1)
    good, boom, flaky, hopeless, last = bar("GOOD"), bar("BOOM"), bar("FLAKY"), bar("HOPELESS"), bar("LAST")
    heartbeat = HeartbeatEmitted.origin(
        natural_key=("hb",), ts_event=T0, ts_init=T0, source="x/0", service="x", instance="0", status="ready",
        uptime_s=1.0, events_in=0, events_out=0, consumer_lag=0,
    )
    invalid = orjson.loads(encode(bar("BAD")))
    invalid["high"] = 1.0  # below low: violates the model's OHLC rule
    records: list[tuple[str, bytes]] = [
        ("garbage", b"\x00\xffnot json"),
        ("unknown", orjson.dumps({"event_type": "MarketExploded", "event_id": str(uuid.uuid4())})),
        ("invalid", orjson.dumps(invalid)),
        ("wrongtype", encode(heartbeat)),
        ("good", encode(good)),
        ("boom", encode(boom)),
        ("flaky", encode(flaky)),
        ("hopeless", encode(hopeless)),
        ("last", encode(last)),
    ]
    attempts: Counter[str] = Counter()
    handled: list[str] = []

    async def handler(message: Message, delivery: Delivery) -> None:
        assert isinstance(message, BarClosed)
        attempts[message.symbol] += 1
        if message.symbol == "BOOM":
            raise ValueError("strategy blew up")
        if message.symbol == "FLAKY" and attempts["FLAKY"] < 3:
            raise RetryableError("transient")
        if message.symbol == "HOPELESS":
            raise RetryableError("never recovers")
        handled.append(message.symbol)

    stages = ("decode", "validate", "handle")
    before = {s: metric("ata_dead_letters_total", service="dlq", topic=topic, stage=s) for s in stages}
    async with KafkaBus(runtime_settings(kafka_bootstrap), service="dlq", registry=registry) as bus:
        published = [await bus.publish_raw(topic, value, key="k", headers={"case": case}) for case, value in records]
        async with ConsumerLoop(bus, group, [topic], handler, retry_backoff=FAST_RETRY) as loop:
            await until(lambda: "LAST" in handled, "the good message after the bad ones")
            assert loop.running
        dead = [decode(r.value) for r in await read_topic(kafka_bootstrap, dlq_topic(topic))]

        # Everything, dead letters included, was committed: a restarted member only sees what is new.
        after = Collector()
        async with ConsumerLoop(bus, group, [topic], after):
            await bus.publish([bar("SENTINEL")])
            # One partition: a redelivered old record would arrive before the sentinel.
            await until(lambda: len(after.seen) >= 1, "the sentinel")
        assert [m.symbol for m, _ in after.seen if isinstance(m, BarClosed)] == ["SENTINEL"]

    assert handled == ["GOOD", "FLAKY", "LAST"]
    assert attempts["FLAKY"] == 3, "a retryable failure is retried, then succeeds"
    assert attempts["HOPELESS"] == FAST_RETRY.max_attempts, "bounded retries, then dead-lettered"
    assert attempts["BOOM"] == 1, "a non-retryable failure is not retried"

    assert all(isinstance(d, DeadLetterRecorded) for d in dead)
    letters = {d.original_headers["case"]: d for d in dead if isinstance(d, DeadLetterRecorded)}
    assert sorted(letters) == sorted(["garbage", "unknown", "invalid", "wrongtype", "boom", "hopeless"])
    expected_stage = {"garbage": "decode", "unknown": "decode", "invalid": "validate", "wrongtype": "validate",
                      "boom": "handle", "hopeless": "handle"}
    offsets = {case: p.offset for (case, _), p in zip(records, published, strict=True)}
    for case, letter in letters.items():
        assert letter.stage == expected_stage[case], case
        assert base64.b64decode(letter.original_value_b64) == dict(records)[case]
        assert (letter.original_topic, letter.original_partition, letter.original_offset) == (topic, 0, offsets[case])
        assert letter.original_key == "k"
        assert letter.consumer_group == group
        assert letter.source == "dlq/test"
    assert "MarketExploded" in letters["unknown"].error
    assert "high" in letters["invalid"].error or "OHLC" in letters["invalid"].error
    assert "HeartbeatEmitted" in letters["wrongtype"].error
    assert "strategy blew up" in letters["boom"].error
    assert "never recovers" in letters["hopeless"].error
    counted = {s: metric("ata_dead_letters_total", service="dlq", topic=topic, stage=s) - before[s] for s in stages}
    assert counted == {"decode": 2, "validate": 2, "handle": 2}


# -- lag ----------------------------------------------------------------------------------------------


async def test_consumer_lag_is_high_watermark_minus_position(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    topic = unique_name("lag")
    registry = bar_registry(kafka_bootstrap, topic, partitions=1)
    release = asyncio.Event()
    handled: list[int] = []

    async def handler(message: Message, delivery: Delivery) -> None:
        if delivery.offset == 5:
            await release.wait()
        handled.append(delivery.offset)

    async with KafkaBus(runtime_settings(kafka_bootstrap, kafka_max_poll_records=5), service="lag", registry=registry) as bus:
        await bus.publish([bar("AAPL", n) for n in range(30)])
        async with ConsumerLoop(bus, unique_name("group"), [topic], handler) as loop:
            await until(lambda: handled == list(range(5)), "the first batch")
            await until(lambda: loop.lag == 25, "lag after the first committed batch")
            assert metric("ata_consumer_lag", service="lag", topic=topic, partition="0") == 25
            release.set()
            await until(lambda: len(handled) == 30, "everything")
            await until(lambda: loop.lag == 0, "no lag once caught up")


# -- metrics ------------------------------------------------------------------------------------------


def test_handler_durations_observed_per_batch_expose_as_if_observed_one_by_one() -> None:
    """The loop adds a batch's handler durations to the histogram at once, through prometheus_client
    internals: the exposition must be exactly what one ``observe`` per duration gives."""
    buckets = (0.001, 0.01, 0.1, 1.0)
    durations = [0.0, 0.0005, 0.001, 0.001, 0.002, 0.01, 0.05, 0.1, 0.5, 1.0, 3.0, 120.0]
    one_by_one, batched = CollectorRegistry(), CollectorRegistry()
    single = Histogram("h", "h", ["topic"], buckets=buckets, registry=one_by_one).labels(topic="t")
    bulk = Histogram("h", "h", ["topic"], buckets=buckets, registry=batched).labels(topic="t")
    for seconds in durations:
        single.observe(seconds)
    _observe_all(bulk, durations[:5])
    _observe_all(bulk, durations[5:])
    _observe_all(bulk, [])
    def exposition(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
        return {(sample.name, sample.labels.get("le", "")): sample.value
                for family in text_string_to_metric_families(generate_latest(registry).decode())
                for sample in family.samples if not sample.name.endswith("_created")}  # _created: a clock time

    expected = exposition(one_by_one)
    assert exposition(batched) == pytest.approx(expected, rel=1e-12), "the sum only up to the order of additions"
    assert len(expected) == len(buckets) + 3, "every bucket, +Inf, count and sum compared"
    assert batched.get_sample_value("h_bucket", {"topic": "t", "le": "0.001"}) == 4, "a bound includes its own value"
    assert batched.get_sample_value("h_count", {"topic": "t"}) == len(durations)


# -- provisioning -------------------------------------------------------------------------------------


def test_provision_topics_creates_registry_topics_and_dlqs_idempotently(kafka_bootstrap: str) -> None:
    provision_topics(kafka_bootstrap)
    again = provision_topics(kafka_bootstrap)
    assert again.created == [] and sorted(again.existing) == sorted(REGISTRY.names())
    on_broker = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=30).topics
    for topic in REGISTRY:
        assert topic.name in on_broker, topic.name
        assert len(on_broker[topic.name].partitions) == topic.partitions, topic.name
    assert "orders.commands.v1.dlq" in on_broker


def test_provision_reports_a_partition_count_the_broker_cannot_fix(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("narrow")
    provision_topics(kafka_bootstrap, [Topic(name, (BarClosed,), "symbol", 2, (), ())])
    wider = [Topic(name, (BarClosed,), "symbol", 4, (), ())]
    with pytest.raises(ProvisionError, match=f"{name}: declared 4 partitions, broker has 2"):
        provision_topics(kafka_bootstrap, wider)
    report = provision_topics(kafka_bootstrap, wider, strict=False)
    assert report.mismatched == {name: (4, 2)} and not report.ok


# -- in-memory bus -----------------------------------------------------------------------------------


async def test_in_memory_bus_delivers_in_publish_order_without_reentry() -> None:
    bus = InMemoryBus()
    order: list[str] = []

    async def on_bar(message: Message, delivery: Delivery) -> None:
        assert isinstance(message, BarClosed)
        order.append(f"bar:{message.symbol}")
        if message.symbol == "AAPL":
            halt = HaltTrading.origin(natural_key=("halt",), ts_event=T0, ts_init=T0, source="test/0", reason="x")
            await bus.publish([halt])
            order.append("after-publish")  # the halt is not delivered inside this handler

    async def on_control(message: Message, delivery: Delivery) -> None:
        order.append(f"control:{type(message).__name__}")

    bus.subscribe("market.bars.v1", on_bar)
    bus.subscribe(["control.commands.v1"], on_control)
    published = await bus.publish([bar("AAPL"), bar("MSFT")])
    assert order == ["bar:AAPL", "after-publish", "bar:MSFT", "control:HaltTrading"]
    assert [p.topic for p in published] == ["market.bars.v1", "market.bars.v1"]
    assert [m.symbol for m in bus.messages("market.bars.v1") if isinstance(m, BarClosed)] == ["AAPL", "MSFT"]
    assert len(bus.messages("control.commands.v1")) == 1
    again = await bus.publish_to("market.bars.v1", bar("AAPL", 1), key="AAPL")
    assert again.partition == published[0].partition and again.offset == published[0].offset + 1


async def test_in_memory_bus_propagates_handler_errors() -> None:
    bus = InMemoryBus()

    async def broken(message: Message, delivery: Delivery) -> None:
        raise RuntimeError("core failed")

    bus.subscribe("market.bars.v1", broken)
    with pytest.raises(RuntimeError, match="core failed"):
        await bus.publish([bar()])
