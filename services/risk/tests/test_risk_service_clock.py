"""Risk's shell on market time (the default) over replayed data, on the real broker and Redis.

The data is from 2023 while the journal announces itself with today's machine clock: orders are
still judged and stamped by the data's own clock, and a gated target's oversight timeout fires on
the first event past its deadline, not by the machine clock.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY as METRICS

from ata.events import DenialReason, JournalAvailabilityChanged, Message, OrderDenied, SubmitOrder, TopicRegistry
from ata.risk.config import RiskSettings
from ata.risk.service import SUBSCRIPTIONS, RiskService, renamed_registry
from ata.risk.testing import EQUITY_SIZING, NS_PER_S, T0, bar, fill_for, target
from ata.runtime.bus import KafkaBus
from ata.runtime.config import RuntimeSettings
from ata.runtime.kafka import provision_topics
from ata.runtime.testing import read_messages

WAIT_S = 30.0
MINUTE = 60 * NS_PER_S
OUTPUTS = ("orders.commands.v1", "risk.decisions.v1", "risk.state.v1", "risk.limits.v1", "portfolio.snapshots.v1",
           "system.heartbeats.v1")


async def until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def decisions(bootstrap: str, names: dict[str, str], count: int) -> list[Message]:
    deadline = time.monotonic() + WAIT_S
    while True:
        found = [*await read_messages(bootstrap, names["orders.commands.v1"]),
                 *await read_messages(bootstrap, names["risk.decisions.v1"])]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"decisions so far: {found}"
        await asyncio.sleep(0.1)


async def market_time_service(kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str],
                              **settings: Any) -> tuple[RiskService, RuntimeSettings, TopicRegistry, dict[str, str]]:
    """A risk service on the default market clock over fresh topics: one symbol, sizing on equity
    alone, roomy limits, a 20 ms tick, ``settings`` on top; and its runtime, registry and topic names."""
    names = {t: unique_name(t.split(".")[1]) for t in (*SUBSCRIPTIONS, *OUTPUTS)}
    registry = renamed_registry(names)
    await asyncio.to_thread(provision_topics, kafka_bootstrap, [registry.get(n) for n in names.values()])
    runtime = RuntimeSettings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, instance_id="risk-clock", http_port=0)
    risk = RiskSettings(**{"symbols": ("AAA",), **EQUITY_SIZING, "drawdown_enabled": True, "max_order_notional": 1e6,
                           "max_position_notional": 1e6, "state_key": f"ata:risk:test:{uuid.uuid4().hex}",
                           "snapshot_interval_ms": 3_600_000, "tick_interval_ms": 20, **settings})
    assert risk.clock == "market"
    service = RiskService(runtime, risk, topic_names=names, group_id=f"risk-{uuid.uuid4().hex[:8]}",
                          heartbeat_topic=names["system.heartbeats.v1"])
    return service, runtime, registry, names


async def test_risk_runs_on_market_time_over_replayed_data(kafka_bootstrap: str, redis_url: str,
                                                          unique_name: Callable[[str], str]) -> None:
    # Targets of 500k and more wait for a verdict (up to 5 s of market time); 250k ones do not.
    service, runtime, registry, names = await market_time_service(
        kafka_bootstrap, redis_url, unique_name, oversight_mode="gating", oversight_min_notional=400_000.0,
        oversight_timeout_ms=5_000)
    now = time.time_ns()
    announcement = JournalAvailabilityChanged.origin(natural_key=("test", now), ts_event=now, ts_init=now,
                                                     source="journal/test", available=True, reason="started")
    bars = [bar("AAA", T0 + i * MINUTE, 100.0) for i in range(10)]
    await service.start()
    try:
        async with KafkaBus(runtime, service="feeder", registry=registry) as bus:
            await bus.publish([announcement])
            await until(lambda: bool(service._held), "the announcement held until market data")
            await bus.publish(bars)
            await until(lambda: "AAA" in service.engine.markets
                        and service.engine.markets["AAA"].last_bar_ts_ns == bars[-1].ts_event, "bars consumed")
            assert service.engine.last_ts_ns == bars[-1].ts_event  # today's announcement did not move the clock
            small = target("AAA", bars[-1].ts_event, 0.25, 100.0)
            await bus.publish([small])
            [order] = await decisions(kafka_bootstrap, names, 1)
            assert isinstance(order, SubmitOrder), order  # not stale: judged by the data's clock
            assert order.ts_event == bars[-1].ts_event and order.quantity == 2500

            gated = target("AAA", bars[-1].ts_event, 0.5, 100.0, key=1)
            await bus.publish([gated])
            await until(lambda: "AAA" in service.engine.pending_targets, "the gated target waiting for its verdict")
            await asyncio.sleep(0.5)  # many wall-clock tick periods: the machine clock decides nothing
            assert "AAA" in service.engine.pending_targets
            assert len(await decisions(kafka_bootstrap, names, 1)) == 1
            late = bar("AAA", bars[-1].ts_event + 6 * NS_PER_S, 100.0)  # past the 5 s deadline in market time
            await bus.publish([late])
            found = await decisions(kafka_bootstrap, names, 2)
    finally:
        await service.stop()
    [denied] = [m for m in found if isinstance(m, OrderDenied)]
    assert denied.reason is DenialReason.OVERSIGHT_TIMEOUT and denied.ts_event == late.ts_event
    assert len(found) == 2


async def test_risk_bounds_the_wait_for_a_fill_that_never_comes(kafka_bootstrap: str, redis_url: str,
                                                                unique_name: Callable[[str], str],
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """A target waits for the fill of an earlier order; with no fill and no later input, the shell's
    wall-clock bound decides it, counts it and logs what was missing."""
    service, runtime, registry, names = await market_time_service(kafka_bootstrap, redis_url, unique_name, target_wait_ms=200)
    expired = METRICS.get_sample_value("ata_risk_target_wait_expired_total") or 0.0
    first, second = target("AAA", T0, 0.25, 100.0), target("AAA", T0 + MINUTE, 0.5, 100.0)
    await service.start()
    try:
        async with KafkaBus(runtime, service="feeder", registry=registry) as bus:
            await bus.publish([bar("AAA", T0, 100.0), first])
            [sent] = await decisions(kafka_bootstrap, names, 1)
            await bus.publish([bar("AAA", T0 + MINUTE, 100.0), second])  # the first order never fills
            found = await decisions(kafka_bootstrap, names, 2)
    finally:
        await service.stop()
    assert isinstance(sent, SubmitOrder) and sent.causation_id == first.event_id
    [later] = [m for m in found if m.causation_id == second.event_id]
    assert isinstance(later, SubmitOrder) and later.quantity == 2500  # to 5,000 with 2,500 still in flight
    assert METRICS.get_sample_value("ata_risk_target_wait_expired_total") == expired + 1
    assert service.engine.waiting_targets == []
    assert any(f"still missing: {sent.client_order_id}" in r.getMessage() for r in caplog.records if r.name == "ata.risk")


async def test_risk_service_sizes_a_target_down_to_the_position_limit(kafka_bootstrap: str, redis_url: str,
                                                                      unique_name: Callable[[str], str]) -> None:
    service, runtime, registry, names = await market_time_service(kafka_bootstrap, redis_url, unique_name,
                                                                  max_position_notional=300_000.0)
    clipped = METRICS.get_sample_value("ata_risk_orders_clipped_total", {"limit": "MAX_POSITION"}) or 0.0
    await service.start()
    try:
        async with KafkaBus(runtime, service="feeder", registry=registry) as bus:
            await bus.publish([bar("AAA", T0, 100.0), target("AAA", T0, 0.5, 100.0)])
            [order] = await decisions(kafka_bootstrap, names, 1)
    finally:
        await service.stop()
    assert isinstance(order, SubmitOrder) and order.quantity == 3000 and "clipped by MAX_POSITION" in order.reason
    assert METRICS.get_sample_value("ata_risk_orders_clipped_total", {"limit": "MAX_POSITION"}) == clipped + 1


async def test_risk_service_denies_a_target_at_its_limit_once_and_counts_the_repeats(
        kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]) -> None:
    service, runtime, registry, names = await market_time_service(kafka_bootstrap, redis_url, unique_name,
                                                                  max_position_notional=300_000.0)
    labels = {"limit": "MAX_POSITION"}
    repeats = METRICS.get_sample_value("ata_risk_repeat_denials_suppressed_total", labels) or 0.0
    await service.start()
    try:
        async with KafkaBus(runtime, service="feeder", registry=registry) as bus:
            await bus.publish([bar("AAA", T0, 100.0), target("AAA", T0, 0.5, 100.0)])
            [order] = await decisions(kafka_bootstrap, names, 1)  # clipped to the 300,000 limit
            await bus.publish([fill_for(order, T0, 100.0)])
            await until(lambda: service.engine.portfolio.quantity("AAA") == 3000, "the fill booked")
            for minute in (1, 2, 3):  # the same target, bar after bar, with the position at the limit
                await bus.publish([bar("AAA", T0 + minute * MINUTE, 100.0), target("AAA", T0 + minute * MINUTE, 0.5, 100.0)])
            await until(lambda: service.engine.repeats_suppressed["MAX_POSITION"] == 2, "the repeats suppressed")
            found = await decisions(kafka_bootstrap, names, 2)
    finally:
        await service.stop()
    assert len(found) == 2
    [denied] = [m for m in found if isinstance(m, OrderDenied)]
    assert denied.reason is DenialReason.MAX_POSITION
    assert METRICS.get_sample_value("ata_risk_repeat_denials_suppressed_total", labels) == repeats + 2
