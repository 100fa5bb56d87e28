"""PipelineGate against the embedded broker: it holds while a group has unhandled records, and
releases once the group has committed everything on its topics."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ata.events import REGISTRY, BarClosed, Topic, TopicRegistry
from ata.runtime.kafka import provision_topics
from ata.runtime.quiescence import PipelineGate

HOLD_S = 1.0


async def held(gate: PipelineGate) -> bool:
    """True when the gate is still waiting after :data:`HOLD_S`."""
    try:
        await asyncio.wait_for(gate.wait_idle(), HOLD_S)
    except TimeoutError:
        return True
    return False


async def test_gate_waits_for_every_record_of_a_groups_topics_to_be_committed(
        kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    first, second, group = unique_name("gatea"), unique_name("gateb"), unique_name("gategroup")
    provision_topics(kafka_bootstrap, TopicRegistry([Topic(first, (BarClosed,), "symbol", 2, (), ()),
                                                     Topic(second, (BarClosed,), "symbol", 1, (), ())]))
    gate = PipelineGate(kafka_bootstrap, {group: [first, second]})
    assert not await held(gate)  # empty topics: nothing to handle

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    consumer = AIOKafkaConsumer(first, second, bootstrap_servers=kafka_bootstrap, group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        for n in range(4):
            await producer.send_and_wait(first, b"x", key=str(n).encode())
        await producer.send_and_wait(second, b"y", key=b"k")
        assert await held(gate)  # nothing committed yet

        taken = 0
        while taken < 5:
            taken += sum(len(records) for records in (await consumer.getmany(timeout_ms=1000)).values())
        assert await held(gate)  # handled but not committed
        await consumer.commit()
        assert not await held(gate)

        await producer.send_and_wait(second, b"z", key=b"k")
        assert await held(gate)
        while not await consumer.getmany(timeout_ms=1000):
            pass
        await consumer.commit()
        assert not await held(gate)
    finally:
        await consumer.stop()
        await producer.stop()


async def test_gate_holds_until_the_last_record_of_a_multi_record_batch_is_committed(
        kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    """End offsets are high watermarks: the embedded broker's ListOffsets "latest" is the base offset
    of the last record batch, by which a group that had committed the batch's first record (or none
    of a one-batch topic) looked idle."""
    topic, group = unique_name("gatebatch"), unique_name("gatebatchgroup")
    provision_topics(kafka_bootstrap, TopicRegistry([Topic(topic, (BarClosed,), "symbol", 1, (), ())]))
    gate = PipelineGate(kafka_bootstrap, {group: [topic]})
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=200)
    await producer.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])  # commits only: the group's offsets are set by hand
    try:
        for batch in range(2):  # two batches of five records each
            sent = [await producer.send(topic, b"r%d" % n, partition=0) for n in range(5)]
            offsets = [m.offset for m in await asyncio.gather(*sent)]
            assert offsets == list(range(5 * batch, 5 * batch + 5))
            assert await held(gate)  # none of this batch committed
            for committed in (5 * batch + 1, 5 * batch + 4):
                await consumer.commit({partition: committed})
                assert await held(gate), committed  # the batch's last record is not committed yet
            await consumer.commit({partition: 5 * batch + 5})
            assert not await held(gate)
    finally:
        await consumer.stop()
        await producer.stop()
        gate.close()


def test_gate_groups_come_from_the_registry_and_must_consume_something(kafka_bootstrap: str) -> None:
    with pytest.raises(ValueError, match="consume no topic"):
        PipelineGate.for_services(kafka_bootstrap, ["marketdata"])  # a producer only
    with pytest.raises(ValueError, match="at least one"):
        PipelineGate(kafka_bootstrap, {})
    gate = PipelineGate.for_services(kafka_bootstrap, ["regime", "execution"], REGISTRY)
    assert gate.topics == {"regime": ("market.bars.v1",),
                           "execution": tuple(t.name for t in REGISTRY if "execution" in t.consumers)}
