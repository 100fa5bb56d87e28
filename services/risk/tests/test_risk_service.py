"""The risk service on the real broker and Redis: targets in, orders and state changes out, state cached."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import REGISTRY as METRICS

from ata.events import (
    HaltTrading,
    Message,
    OrderDenied,
    PortfolioSnapshotTaken,
    SubmitOrder,
    TradingState,
    TradingStateChanged,
    client_order_id_for,
)
from ata.risk.config import RiskSettings
from ata.risk.core import intent_for
from ata.risk.service import SUBSCRIPTIONS, RiskService, renamed_registry
from ata.risk.testing import NS_PER_S, T0, bar, command, fill_for, target
from ata.runtime.bus import KafkaBus
from ata.runtime.codec import decode
from ata.runtime.config import RuntimeSettings
from ata.runtime.kafka import provision_topics

WAIT_S = 30.0
OUTPUTS = ("orders.commands.v1", "risk.decisions.v1", "risk.state.v1", "risk.limits.v1", "portfolio.snapshots.v1",
           "system.heartbeats.v1")


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


async def until_messages(bootstrap: str, topic: str, predicate: Callable[[list[Message]], bool], what: str) -> list[Message]:
    deadline = time.monotonic() + WAIT_S
    while True:
        messages = await read_all(bootstrap, topic)
        if predicate(messages):
            return messages
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_risk_service_end_to_end_on_the_broker(kafka_bootstrap: str, redis_url: str,
                                                     unique_name: Callable[[str], str]) -> None:
    names = {t: unique_name(t.split(".")[1]) for t in (*SUBSCRIPTIONS, *OUTPUTS)}
    registry = renamed_registry(names)
    await asyncio.to_thread(provision_topics, kafka_bootstrap, [registry.get(n) for n in names.values()])
    runtime = RuntimeSettings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, instance_id="risk-test", http_port=0)
    state_key = f"ata:risk:test:{uuid.uuid4().hex}"
    risk = RiskSettings(symbols=("AAA",), position_vol_target_annual=0.0, kelly_fraction=0.0, regime_scaling_enabled=False,
                        stress_enabled=False, max_order_notional=1e6, max_position_notional=1e6, state_key=state_key,
                        snapshot_interval_ms=300_000)
    group = f"risk-{uuid.uuid4().hex[:8]}"
    service = RiskService(runtime, risk, topic_names=names, group_id=group, heartbeat_topic=names["system.heartbeats.v1"])
    minute = 60 * NS_PER_S
    bars = [bar("AAA", T0 + i * minute, 100.0) for i in range(10)]
    first = target("AAA", T0 + 9 * minute, 0.25, 100.0)
    await service.start()
    try:
        async with KafkaBus(runtime, service="feeder", registry=registry) as bus:
            await bus.publish(bars)
            # Topics are not ordered with each other: let risk see the market before the target.
            await until(lambda: "AAA" in service.engine.markets
                        and service.engine.markets["AAA"].last_bar_ts_ns == bars[-1].ts_event, "bars consumed")
            await bus.publish([first])
            [order] = [m for m in await until_messages(kafka_bootstrap, names["orders.commands.v1"], bool, "an order")
                       if isinstance(m, SubmitOrder)]
            assert order.intent_id == intent_for(first.event_id)
            assert order.client_order_id == client_order_id_for(order.intent_id) and order.quantity == 2500
            await bus.publish([fill_for(order, T0 + 10 * minute, 100.0)])
            await until(lambda: service.engine.portfolio.quantity("AAA") == 2500, "the fill booked")
            await bus.publish([command(HaltTrading, T0 + 10 * minute, reason="integration test")])
            await until(lambda: service.engine.states.state is TradingState.HALTED, "the halt applied")
            await bus.publish([target("AAA", T0 + 11 * minute, 0.5, 100.0)])
            [change] = await until_messages(kafka_bootstrap, names["risk.state.v1"], bool, "a state change")
            assert isinstance(change, TradingStateChanged) and change.current is TradingState.HALTED
            [denied] = await until_messages(kafka_bootstrap, names["risk.decisions.v1"], bool, "a denial")
            assert isinstance(denied, OrderDenied) and denied.reason.value == "TRADING_HALTED"
            snaps = await until_messages(kafka_bootstrap, names["portfolio.snapshots.v1"], bool, "a portfolio snapshot")
            assert all(isinstance(s, PortfolioSnapshotTaken) for s in snaps)
        assert service.engine.portfolio.quantity("AAA") == 2500
        assert METRICS.get_sample_value("ata_risk_orders_total", {"decision": "approved"}) is not None
        assert METRICS.get_sample_value("ata_risk_trading_state") == 2.0
    finally:
        await service.stop()
    # The state survives a restart through the cache: a new instance resumes halted with the position.
    again = RiskService(runtime, risk, topic_names=names, group_id=group, heartbeat_topic=names["system.heartbeats.v1"])
    await again.start()
    try:
        assert again.engine.portfolio.quantity("AAA") == 2500
        assert again.engine.states.state is TradingState.HALTED
    finally:
        await again.stop()
