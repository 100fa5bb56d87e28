"""The regime service handles fetched batches of bars at once (real broker and Redis): a bar the detector
refuses is dead-lettered and the other bars of its batch are still absorbed and committed."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import time
import uuid
from collections.abc import Callable, Sequence

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from ata.events import REGISTRY, Message, TopicRegistry
from ata.events.market import BarClosed
from ata.regime.config import RegimeSettings
from ata.regime.service import RegimeService
from ata.runtime.bus import Delivery, KafkaBus, dlq_topic
from ata.runtime.codec import decode
from ata.runtime.config import RuntimeSettings
from ata.runtime.kafka import provision_topics
from ata.runtime.testing import read_topic

WAIT_S = 60.0
DAY_NS = 86_400 * 10**9
T0 = 1_600_000_000 * 10**9


def daily_bar(symbol: str, n: int, close: float, volume: float = 1_000.0) -> BarClosed:
    ts = T0 + n * DAY_NS
    return BarClosed.origin(
        natural_key=("regime-batch", symbol, ts), ts_event=ts, ts_init=ts, source="test", symbol=symbol, timeframe="1d",
        ts_open=ts - DAY_NS // 4, open=close, high=close, low=close, close=close, volume=volume)


class RecordingRegime(RegimeService):
    """The service as it runs, recording the bars of each batch it is handed."""

    batches: list[list[Message]]

    async def handle_batch(self, batch: Sequence[tuple[Message, Delivery]]) -> Sequence[Sequence[Message] | Exception]:
        self.batches.append([message for message, _ in batch])
        return await super().handle_batch(batch)


async def committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return (await consumer.committed(TopicPartition(topic, 0))) or 0
    finally:
        await consumer.stop()


async def test_a_bar_the_detector_refuses_is_dead_lettered_and_the_rest_of_its_batch_is_handled(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]
) -> None:
    bars_topic, states_topic = unique_name("bars"), unique_name("states")
    # One partition: every bar, published before the service starts, comes in the same fetches.
    registry = TopicRegistry([dataclasses.replace(REGISTRY.get("market.bars.v1"), name=bars_topic, partitions=1),
                              dataclasses.replace(REGISTRY.get("regime.states.v1"), name=states_topic)])
    await asyncio.to_thread(provision_topics, kafka_bootstrap, registry)
    runtime = RuntimeSettings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, instance_id="regime-batch", http_port=0)
    settings = RegimeSettings(bars_topic=bars_topic, states_topic=states_topic, refit_executor="thread",
                              state_key=f"ata:regime:test:{uuid.uuid4().hex}")
    good = [daily_bar(symbol, n, 100.0 + n + (symbol == "BBB")) for n in range(20) for symbol in ("AAA", "BBB")]
    # close x volume overflows to an infinite dollar volume: the detector raises on it
    poison = daily_bar("ZZZ", 10, 1e200, volume=1e200)
    bars = [*good[:21], poison, *good[21:]]
    async with KafkaBus(runtime, service="feeder") as bus:
        await bus.publish_routed((bars_topic, bar, bar.symbol) for bar in bars)
    group = unique_name("regime")
    service = RecordingRegime(runtime, settings, group_id=group, heartbeat_topic=unique_name("heartbeats"))
    service.batches = []
    await service.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while await committed(kafka_bootstrap, group, bars_topic) < len(bars):
            assert time.monotonic() < deadline, "timed out waiting for every bar to be committed"
            await asyncio.sleep(0.1)
        tracks = service.detector.snapshot()["tracks"]
    finally:
        await service.stop()
    with_poison = next(batch for batch in service.batches if poison.event_id in {m.event_id for m in batch})
    assert len(with_poison) > 1  # handed over with other bars, not alone
    dead = await read_topic(kafka_bootstrap, dlq_topic(bars_topic))
    assert [decode(base64.b64decode(orjson.loads(r.value)["original_value_b64"])).event_id for r in dead] == [poison.event_id]
    assert orjson.loads(dead[0].value)["stage"] == "handle"
    # every good bar was absorbed: 20 bars per symbol give 19 returns each
    assert tracks["AAA"]["n_returns"] == 19 and tracks["BBB"]["n_returns"] == 19
