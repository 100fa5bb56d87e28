"""The strategy service on the real broker and Redis: bars, regimes and sentiment in; the same
signals and targets as the pure engine out; state cached across a restart."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from ata.events import REGISTRY, Message, RegimeLabel, SignalGenerated, StrategySwitched, TargetProposed
from ata.runtime.bus import KafkaBus
from ata.runtime.codec import decode
from ata.runtime.config import RuntimeSettings
from ata.runtime.kafka import provision_topics
from ata.strategy.config import StrategySettings
from ata.strategy.core import MetaStrategy, StrategyEngine
from ata.strategy.data import load_bars
from ata.strategy.service import SUBSCRIPTIONS, StrategyService
from ata.strategy.testing import bar_event, regime_state, sentiment_score

WAIT_S = 30.0
OUTPUTS = ("strategy.signals.v1", "strategy.targets.v1", "system.heartbeats.v1")
PARAMS = {"ma_crossover": {"fast": 3, "slow": 8}, "ts_momentum": {"lookback": 10, "vol_window": 5},
          "mean_reversion": {"window": 5}, "donchian_breakout": {"window": 6}, "vol_managed": {"vol_window": 5}}


async def read_topic(bootstrap: str, topic: str, expected: int) -> list[Message]:
    """Every message of ``topic`` once ``expected`` have arrived (bounded wait)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        out: list[Message] = []
        async with asyncio.timeout(WAIT_S):
            while len(out) < expected:
                for batch in (await consumer.getmany(timeout_ms=100)).values():
                    out.extend(decode(r.value) for r in batch)
        return out
    finally:
        await consumer.stop()


async def until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_strategy_service_on_the_broker(kafka_bootstrap: str, redis_url: str,
                                              unique_name: Callable[[str], str]) -> None:
    names = {t: unique_name(t.split(".")[1]) for t in (*SUBSCRIPTIONS, *OUTPUTS)}
    registry = REGISTRY.renamed(names)
    await asyncio.to_thread(provision_topics, kafka_bootstrap, [registry.get(n) for n in names.values()])
    runtime = RuntimeSettings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, instance_id="strategy-test", http_port=0)
    settings = StrategySettings(params=PARAMS, state_key=f"ata:strategy:test:{uuid.uuid4().hex}", min_history_bars=5)
    group = f"strategy-{uuid.uuid4().hex[:8]}"

    def service() -> StrategyService:
        return StrategyService(runtime, settings, topic_names=names, group_id=group,
                               heartbeat_topic=names["system.heartbeats.v1"])

    bars = load_bars("sp500")[2000:2060]
    context = [regime_state("_market", bars[0].ts_ns - 1, RegimeLabel.BEAR_VOLATILE),
               sentiment_score("SPX", bars[0].ts_ns - 1, 0.3)]
    first_half = [bar_event("SPX", b) for b in bars[:30]]
    second_half = [bar_event("SPX", b) for b in bars[30:]]
    reference = StrategyEngine(MetaStrategy(settings.meta_config()), source="strategy/strategy-test")
    expected = [out for m in (*context, *first_half, *second_half) for out in reference.handle(m)]
    # The targets topic carries the target proposals and the strategy switches that shape them.
    expected_targets = [m for m in expected if isinstance(m, TargetProposed | StrategySwitched)]
    expected_signals = [m for m in expected if isinstance(m, SignalGenerated)]
    proposals = [m for m in expected_targets if isinstance(m, TargetProposed)]
    assert len(proposals) == 60 and {t.method for t in proposals} >= {"equal_weight", "inverse_volatility"}

    running = service()
    await running.start()
    try:
        async with KafkaBus(runtime, service="feeder", registry=registry) as bus:
            await bus.publish(context)
            # Topics are not ordered with each other: let the context arrive before the bars.
            await until(lambda: "_market" in running.engine.regimes and "SPX" in running.engine.sentiment, "context consumed")
            await bus.publish(first_half)
            await until(lambda: running.engine.last_decision.get("SPX") is not None
                        and running.engine.last_decision["SPX"].ts_ns == bars[29].ts_ns, "first half consumed")
    finally:
        await running.stop()
    # A restarted instance resumes from the Redis cache and continues exactly.
    resumed = service()
    await resumed.start()
    try:
        assert resumed.engine.meta.books["SPX"].prev_close == bars[29].close
        async with KafkaBus(runtime, service="feeder", registry=registry) as bus:
            await bus.publish(second_half)
        targets = await read_topic(kafka_bootstrap, names["strategy.targets.v1"], len(expected_targets))
        signals = await read_topic(kafka_bootstrap, names["strategy.signals.v1"], len(expected_signals))
    finally:
        await resumed.stop()
    assert len(targets) == len(expected_targets), "no duplicates"
    assert {m.event_id for m in targets} == {m.event_id for m in expected_targets}
    assert sorted(targets, key=lambda m: m.ts_event) == sorted(expected_targets, key=lambda m: m.ts_event)
    assert {m.event_id: m for m in signals} == {m.event_id: m for m in expected_signals}
