"""Paper trading over replayed data: execution's in-process simulated broker runs on market time, so an
order placed after a replayed bar fills at the next replayed bar (on the wall clock it never would)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from ata.events import BarClosed, FillReported, Message, Side, SubmitOrder, client_order_id_for
from ata.execution.config import ExecutionSettings
from ata.execution.core.clock import MarketClock
from ata.execution.service import BARS, COMMANDS, ExecutionService, namespaced, namespaced_registry
from ata.execution.testing import read_topic
from ata.runtime.bus import KafkaBus
from ata.runtime.config import RuntimeSettings
from ata.runtime.kafka import provision_topics

MINUTE = 60_000_000_000
T0 = 1_577_975_400_000_000_000  # 2020-01-02 14:30 UTC: years before any wall-clock "now"


def test_market_clock_is_the_latest_event_time_and_never_goes_back() -> None:
    clock = MarketClock(lambda: 42)
    assert clock() == 42 and not clock.started
    clock.observe(T0 + MINUTE)
    clock.observe(T0)  # an older event (another symbol, a late quote) does not move time back
    assert clock() == T0 + MINUTE and clock.started
    clock.seed(T0 + 10 * MINUTE)  # a command stamped later upstream does not move market time
    assert clock() == T0 + MINUTE
    seeded = MarketClock(lambda: 42)
    seeded.seed(T0)  # but before any market data a command's time is the best there is
    assert seeded() == T0 and seeded.started


def bar(index: int, price: float) -> BarClosed:
    ts_open = T0 + index * MINUTE
    return BarClosed.origin(natural_key=("AAPL", index), ts_event=ts_open + MINUTE, ts_init=ts_open + MINUTE, source="md",
                            symbol="AAPL", timeframe="1m", ts_open=ts_open, open=price, high=price + 1, low=price - 1,
                            close=price + 0.5, volume=10_000.0)


async def test_an_order_after_a_replayed_bar_fills_at_the_next_replayed_bar(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    namespace = f"c{uuid.uuid4().hex[:10]}"
    registry = namespaced_registry(namespace)
    await asyncio.to_thread(provision_topics, kafka_bootstrap, registry)
    runtime = RuntimeSettings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, http_port=0, state_dir=tmp_path,
                              instance_id="exec-clock")
    service = ExecutionService(runtime, ExecutionSettings(topic_namespace=namespace, redis_prefix=f"test:{namespace}",
                                                          journal_recovery="off"))
    first, second = bar(0, 100.0), bar(1, 103.0)
    intent = uuid.uuid4()
    cmd = SubmitOrder.caused_by(first, source="risk/test", intent_id=intent, client_order_id=client_order_id_for(intent),
                                symbol="AAPL", side=Side.BUY, quantity=5.0)
    await service.start()
    try:
        async with KafkaBus(RuntimeSettings(kafka_bootstrap=kafka_bootstrap, instance_id="md-test"), service="md",
                            registry=registry) as bus:
            bars = namespaced(BARS, namespace)
            # whichever execution handles first, market time is then the first bar's (the command inherits it)
            await bus.publish_to(bars, first, key="AAPL")
            await bus.publish_to(namespaced(COMMANDS, namespace), cmd, key=cmd.client_order_id)
            await read_topic(kafka_bootstrap, namespaced("orders.events.v1", namespace),
                             lambda ms: any(m.event_type == "OrderAccepted" for m in ms))
            await bus.publish_to(bars, second, key="AAPL")

            def filled(messages: list[Message]) -> bool:
                return any(isinstance(m, FillReported) for m in messages)

            fills = [m for m in await read_topic(kafka_bootstrap, namespaced("orders.fills.v1", namespace), filled)
                     if isinstance(m, FillReported)]
    finally:
        await service.stop()
    [fill] = fills
    assert fill.client_order_id == cmd.client_order_id and fill.quantity == 5.0
    assert fill.ts_event == second.ts_event  # judged at the replayed bar, in its time
    assert fill.price == second.open  # a market order placed after the first bar trades at the next bar's open
    assert service.clock() == second.ts_event


async def test_a_restart_mid_replay_stamps_its_reconciliation_with_market_time(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    """The in-process simulated broker forgets its orders with the process: the restarted service closes the open
    order as unknown at the broker, at the market time of its record, never at the wall clock (which risk, on
    market time, would take for the present and then find every replayed bar stale)."""
    namespace = f"c{uuid.uuid4().hex[:10]}"
    registry = namespaced_registry(namespace)
    await asyncio.to_thread(provision_topics, kafka_bootstrap, registry)
    settings = ExecutionSettings(topic_namespace=namespace, redis_prefix=f"test:{namespace}", journal_recovery="off")

    def service(instance: str) -> ExecutionService:
        return ExecutionService(RuntimeSettings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, http_port=0,
                                                state_dir=tmp_path, instance_id=instance), settings)

    first = bar(0, 100.0)
    intent = uuid.uuid4()
    cmd = SubmitOrder.caused_by(first, source="risk/test", intent_id=intent, client_order_id=client_order_id_for(intent),
                                symbol="AAPL", side=Side.BUY, quantity=5.0)
    events_topic = namespaced("orders.events.v1", namespace)
    before = service("exec-before")
    await before.start()
    try:
        async with KafkaBus(RuntimeSettings(kafka_bootstrap=kafka_bootstrap, instance_id="md-test"), service="md",
                            registry=registry) as bus:
            await bus.publish_to(namespaced(BARS, namespace), first, key="AAPL")
            await bus.publish_to(namespaced(COMMANDS, namespace), cmd, key=cmd.client_order_id)
            await read_topic(kafka_bootstrap, events_topic, lambda ms: any(m.event_type == "OrderAccepted" for m in ms))
    finally:
        await before.stop()

    after = service("exec-after")
    await after.start()
    try:
        def closed(messages: list[Message]) -> bool:
            return any(m.source == "execution/exec-after" for m in messages)

        restated = [m for m in await read_topic(kafka_bootstrap, events_topic, closed) if m.source == "execution/exec-after"]
    finally:
        await after.stop()
    assert restated and {m.client_order_id for m in restated} == {cmd.client_order_id}  # type: ignore[attr-defined]
    assert {m.ts_event for m in restated} == {first.ts_event}
    assert after.clock() == first.ts_event
