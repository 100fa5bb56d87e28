"""Pipelined outputs and per-key concurrency against the real broker and Redis: per-key order, no
loss, and a crash in the middle of a concurrently handled batch that redelivers only uncommitted
work, without a duplicate effect downstream (ledger-style)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from ata.events import BarClosed, HeartbeatEmitted, Message, Topic, TopicRegistry
from ata.runtime.bus import ConsumerLoop, Delivery, KafkaBus, defer_acks
from ata.runtime.config import RuntimeSettings
from ata.runtime.idempotency import AppliedIds
from ata.runtime.kafka import provision_topics
from ata.runtime.service import Service
from ata.runtime.testing import bar_number, numbered_bar, read_messages

SYMBOLS = ("AAPL", "MSFT", "SPY", "QQQ", "NVDA", "AMZN", "TSLA", "IBM")
BAR_FIELDS = ("symbol", "timeframe", "ts_open", "open", "high", "low", "close", "volume")
WAIT_S = 60.0


def bar(symbol: str, n: int) -> BarClosed:
    return numbered_bar("concurrency", symbol, n)


def derive(message: BarClosed) -> BarClosed:
    return BarClosed.caused_by(message, source="relay/0", **message.model_dump(include=set(BAR_FIELDS)))


def registry_of(bootstrap: str, name: str, partitions: int) -> TopicRegistry:
    registry = TopicRegistry([Topic(name, (BarClosed,), "symbol", partitions, (), ())])
    provision_topics(bootstrap, registry)
    return registry


def settings(bootstrap: str, **overrides: int) -> RuntimeSettings:
    return RuntimeSettings(kafka_bootstrap=bootstrap, instance_id="test", **overrides)


async def until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {WAIT_S}s waiting for {what}"
        await asyncio.sleep(0.01)


async def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offset per partition (0 where nothing was committed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: (await consumer.committed(TopicPartition(topic, p))) or 0 for p in range(partitions)}
    finally:
        await consumer.stop()


class InFlight:
    """Counts handlers running at once, overall and per key."""

    def __init__(self) -> None:
        self.now: Counter[str] = Counter()
        self.most = 0
        self.most_per_key = 0

    def enter(self, key: str) -> None:
        self.now[key] += 1
        self.most = max(self.most, sum(self.now.values()))
        self.most_per_key = max(self.most_per_key, self.now[key])

    def leave(self, key: str) -> None:
        self.now[key] -= 1


def test_concurrency_must_be_positive() -> None:
    bus = KafkaBus(settings("127.0.0.1:1"))

    async def handler(message: Message, delivery: Delivery) -> None:
        return None

    with pytest.raises(ValueError, match="concurrency"):
        ConsumerLoop(bus, "g", ["t"], handler, concurrency=0)


async def test_keys_overlap_but_each_key_stays_in_order_and_nothing_is_lost(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("lanes")
    registry = registry_of(kafka_bootstrap, topic, partitions=3)
    inputs = [bar(symbol, n) for n in range(25) for symbol in SYMBOLS]
    rng = random.Random(7)
    seen: dict[str, list[int]] = defaultdict(list)
    in_flight = InFlight()

    async def handler(message: Message, delivery: Delivery) -> None:
        assert isinstance(message, BarClosed)
        in_flight.enter(message.symbol)
        try:
            await asyncio.sleep(rng.uniform(0, 0.003))  # completion order differs from arrival order
            seen[message.symbol].append(bar_number(message))
        finally:
            in_flight.leave(message.symbol)

    async with KafkaBus(settings(kafka_bootstrap, kafka_max_poll_records=40), service="lanes", registry=registry) as bus:
        await bus.publish(inputs)  # all there before the first fetch: batches hold many keys
        async with ConsumerLoop(bus, unique_name("group"), [topic], handler, concurrency=8) as loop:
            await until(lambda: sum(map(len, seen.values())) >= len(inputs), "every bar handled")
            await until(lambda: loop.lag == 0, "everything committed")

    assert in_flight.most > 1, "distinct keys were handled concurrently"
    assert in_flight.most_per_key == 1, "never two messages of one key at once"
    assert {symbol: order for symbol, order in seen.items()} == {symbol: list(range(25)) for symbol in SYMBOLS}


async def test_acks_are_deferred_only_from_the_handlers_own_task(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    """A task the handler starts may outlive its record: it must await its acknowledgements itself."""
    topic = unique_name("defer")
    registry = registry_of(kafka_bootstrap, topic, partitions=1)
    answers: list[tuple[str, bool]] = []
    done = asyncio.get_running_loop().create_future()
    done.set_result([])

    async def from_spawned_task() -> None:
        answers.append(("spawned task", defer_acks(done)))

    async def handler(message: Message, delivery: Delivery) -> None:
        answers.append(("handler", defer_acks(done)))
        await asyncio.create_task(from_spawned_task())

    assert not defer_acks(done), "outside any handler"
    async with KafkaBus(settings(kafka_bootstrap), service="defer", registry=registry) as bus:
        await bus.publish([bar("AAPL", 0), bar("AAPL", 1)])
        async with ConsumerLoop(bus, unique_name("group"), [topic], handler) as loop:
            await until(lambda: len(answers) == 4, "both records handled")
            await until(lambda: loop.lag == 0, "both committed")
    assert answers == [("handler", True), ("spawned task", False)] * 2


async def test_crash_mid_batch_redelivers_only_uncommitted_work_without_duplicate_effect(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]
) -> None:
    source, derived = unique_name("cc_in"), unique_name("cc_out")
    source_registry = registry_of(kafka_bootstrap, source, partitions=2)
    derived_registry = registry_of(kafka_bootstrap, derived, partitions=3)
    group, ledger_group = unique_name("up"), unique_name("ledger")
    inputs = [bar(symbol, n) for n in range(15) for symbol in SYMBOLS]
    crash_on = inputs[70].event_id
    crashed = False
    rng = random.Random(11)
    lives: list[list[tuple[int, int, uuid.UUID]]] = [[], []]
    life = 0

    class SimulatedCrash(BaseException):
        """The process dying: neither dead-lettered nor committed."""

    async with KafkaBus(settings(kafka_bootstrap), service="cc-out", registry=derived_registry) as out_bus:

        async def relay(message: Message, delivery: Delivery) -> None:
            """Publish one derived bar, pipelined (the loop awaits its acknowledgement), then maybe die."""
            nonlocal crashed
            assert isinstance(message, BarClosed)
            await asyncio.sleep(rng.uniform(0, 0.002))
            lives[life].append((delivery.partition, delivery.offset, message.event_id))
            output = derive(message)
            assert defer_acks(await out_bus.enqueue_routed([(derived, output, output.symbol)]))
            if message.event_id == crash_on and not crashed:
                crashed = True
                raise SimulatedCrash

        in_settings = settings(kafka_bootstrap, kafka_max_poll_records=30)
        async with KafkaBus(in_settings, service="cc-in", registry=source_registry) as in_bus:
            await in_bus.publish(inputs)
            first = ConsumerLoop(in_bus, group, [source], relay, applied=AppliedIds.from_url(group, redis_url), concurrency=6)
            await first.start()
            with pytest.raises(SimulatedCrash):
                async with asyncio.timeout(WAIT_S):
                    await first.wait()
            with pytest.raises(SimulatedCrash):
                await first.stop()
            assert first.applied is not None
            await first.applied.close()
            committed = await committed_offsets(kafka_bootstrap, group, source, 2)

            life = 1  # a new instance: empty memory, same Redis
            second = ConsumerLoop(in_bus, group, [source], relay, applied=AppliedIds.from_url(group, redis_url), concurrency=6)
            ledger: list[BarClosed] = []

            async def apply(message: Message, delivery: Delivery) -> None:
                assert isinstance(message, BarClosed)
                ledger.append(message)

            ledger_applied = AppliedIds.from_url(ledger_group, redis_url)
            downstream = ConsumerLoop(out_bus, ledger_group, [derived], apply, applied=ledger_applied)
            async with second, downstream:
                await until(lambda: len({m.event_id for m in ledger}) == len(inputs), "every derived bar applied downstream")
                await until(lambda: second.lag == 0, "the second life committed everything")
            for applied in (second.applied, downstream.applied):
                assert applied is not None
                await applied.close()
        on_topic = await read_messages(kafka_bootstrap, derived)

    first_life, second_life = lives
    assert sum(committed.values()) < len(inputs), "the crash came before everything was committed"
    assert all(offset >= committed[partition] for partition, offset, _ in second_life), "committed work is not redelivered"
    assert {i for *_, i in first_life} | {i for *_, i in second_life} == {b.event_id for b in inputs}, "nothing lost"
    handled_twice = {i for *_, i in first_life} & {i for *_, i in second_life}
    assert crash_on in handled_twice, "the message in hand at the crash was handled again"
    uncommitted_first = {i for p, o, i in first_life if o >= committed[p]}
    assert handled_twice <= uncommitted_first, "only uncommitted work was handled again"
    assert len(on_topic) == len(inputs) + len(handled_twice), "each re-handled message really published a duplicate"

    # Ledger: every effect exactly once, and per key in order.
    assert len(ledger) == len({m.event_id for m in ledger}) == len(inputs)
    assert {m.event_id for m in ledger} == {derive(b).event_id for b in inputs}
    for symbol in SYMBOLS:
        assert [bar_number(m) for m in ledger if m.symbol == symbol] == list(range(15)), symbol
    # Within each life, each key was handled in offset order.
    symbol_of = {b.event_id: b.symbol for b in inputs}
    for handled in lives:
        offsets_per_key: dict[str, list[int]] = defaultdict(list)
        for _, offset, event_id in handled:
            offsets_per_key[symbol_of[event_id]].append(offset)
        for symbol, offsets in offsets_per_key.items():
            assert offsets == sorted(offsets), symbol


async def test_a_concurrent_service_publishes_each_keys_outputs_in_order_exactly_once(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]
) -> None:
    source, target, heartbeats = unique_name("svc_in"), unique_name("svc_out"), unique_name("svc_beats")
    registry = TopicRegistry([Topic(source, (BarClosed,), "symbol", 2, (), ()), Topic(target, (BarClosed,), "symbol", 3, (), ()),
                              Topic(heartbeats, (HeartbeatEmitted,), "service", 1, (), ())])
    provision_topics(kafka_bootstrap, registry)
    inputs = [bar(symbol, n) for n in range(20) for symbol in SYMBOLS]
    in_flight = InFlight()
    handled: list[uuid.UUID] = []
    rng = random.Random(3)

    class Relay(Service):
        name = unique_name("relay")
        subscriptions = (source,)
        concurrency = 8
        pipeline_outputs = True

        def route(self, message: Message) -> str:
            return target

        async def handle(self, message: Message, delivery: Delivery) -> Sequence[Message]:
            assert isinstance(message, BarClosed)
            in_flight.enter(message.symbol)
            try:
                await asyncio.sleep(rng.uniform(0, 0.002))
                handled.append(message.event_id)
                return [derive(message)]
            finally:
                in_flight.leave(message.symbol)

    Relay.registry = registry
    runtime = RuntimeSettings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, instance_id="test",
                              kafka_max_poll_records=50)
    async with KafkaBus(runtime, service="feeder", registry=registry) as feeder:
        await feeder.publish_routed([(source, b, b.symbol) for b in inputs])
    service = Relay(runtime, heartbeat_topic=heartbeats)
    await service.start()
    try:
        await until(lambda: len(handled) == len(inputs), "every bar handled")
        deadline = time.monotonic() + WAIT_S
        while len(outputs := await read_messages(kafka_bootstrap, target)) < len(inputs):
            assert time.monotonic() < deadline, f"only {len(outputs)} outputs acknowledged"
            await asyncio.sleep(0.1)
    finally:
        await service.stop()

    assert in_flight.most > 1 and in_flight.most_per_key == 1
    assert len(outputs) == len({m.event_id for m in outputs}) == len(inputs), "exactly one output per input"
    for symbol in SYMBOLS:
        assert [bar_number(m) for m in outputs if isinstance(m, BarClosed) and m.symbol == symbol] == list(range(20)), symbol
