"""The regime service on the real broker and Redis: bars in, states out, fits off the handler, state restored."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import dataclasses
import math
import time
import uuid
from collections.abc import Callable

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import REGISTRY as METRICS

from ata.events import REGISTRY, Message
from ata.events.market import BarClosed
from ata.events.regime import RegimeChanged, RegimeLabel, RegimeStateUpdated
from ata.events.values import MARKET_KEY
from ata.regime.config import RegimeSettings
from ata.regime.core import RegimeDetector, run_refit
from ata.regime.core.events import on_bar
from ata.regime.core.replay import BarInput, replay
from ata.regime.service import RegimeService
from ata.runtime.bus import KafkaBus
from ata.runtime.codec import decode
from ata.runtime.config import RuntimeSettings
from ata.runtime.kafka import provision_topics

WAIT_S = 60.0
DAY_NS = 86_400 * 10**9
T0 = 1_600_000_000 * 10**9


def make_bars(symbols: tuple[str, ...], n: int) -> list[BarClosed]:
    rng = np.random.default_rng(11)
    closes = dict.fromkeys(symbols, 100.0)
    out = []
    for t in range(n):
        vol = 3.0 if 70 <= t < 110 else 0.7
        common = rng.standard_normal()
        for sym in symbols:
            prev = closes[sym]
            closes[sym] = prev * math.exp(vol * (0.6 * common + 0.8 * rng.standard_normal()) / 100.0)
            close = closes[sym]
            ts = T0 + t * DAY_NS
            out.append(
                BarClosed.origin(
                    natural_key=("test", sym, ts),
                    ts_event=ts,
                    ts_init=ts,
                    source="test",
                    symbol=sym,
                    timeframe="1d",
                    ts_open=ts - DAY_NS // 4,
                    open=prev,
                    high=max(prev, close) * 1.001,
                    low=min(prev, close) * 0.999,
                    close=close,
                    volume=float(rng.integers(1_000, 5_000)),
                )
            )
    return out


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


async def until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_regime_service_on_the_broker_publishes_states_and_resumes_from_its_cache(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]
) -> None:
    bars_topic, states_topic = unique_name("bars"), unique_name("states")
    specs = [
        dataclasses.replace(REGISTRY.get("market.bars.v1"), name=bars_topic),
        dataclasses.replace(REGISTRY.get("regime.states.v1"), name=states_topic),
    ]
    await asyncio.to_thread(provision_topics, kafka_bootstrap, specs)
    runtime = RuntimeSettings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, instance_id="regime-test", http_port=0)
    settings = RegimeSettings(
        bars_topic=bars_topic,
        states_topic=states_topic,
        state_key=f"ata:regime:test:{uuid.uuid4().hex}",
        momentum_lookbacks=(5, 20),
        trend_window_bars=20,
        rv_window_bars=10,
        rv_history_bars=100,
        correlation_window_bars=20,
        correlation_history_bars=100,
        volume_window_bars=20,
        amihud_window_bars=20,
        fit_window_bars=150,
        min_fit_bars=60,
        refit_every_bars=40,
        hysteresis_bars=3,
    )
    symbols = ("AAA", "BBB")
    bars = make_bars(symbols, 160)
    group = f"regime-{uuid.uuid4().hex[:8]}"
    changes_counted_before = {label: _changes_counted(label) for label in RegimeLabel}
    service = RegimeService(runtime, settings, group_id=group, heartbeat_topic=unique_name("heartbeats"))
    await service.start()
    try:
        # the fit workers are started (and import the fitting libraries) before any bar arrives
        pool = service._pool
        assert isinstance(pool, cf.ProcessPoolExecutor)
        await until(lambda: len(pool._processes or {}) == settings.refit_workers, "refit workers spawned at start")
        async with KafkaBus(runtime, service="feeder") as bus:
            head, tail = bars[: 2 * 100], bars[2 * 100 :]
            await bus.publish_routed([(bars_topic, bar, bar.symbol) for bar in head])  # in order, acknowledged together
            await until(
                lambda: service.detector.snapshot()["tracks"].get("AAA", {}).get("n_returns") == 99, "first bars consumed"
            )
            # the first fits (requested at min_fit_bars) finish in the pool; the handler never waits for them
            def first_fits_done() -> bool:
                fitted = service.detector.snapshot()["tracks"]["AAA"]["ms2"] is not None
                return (fitted or bool(service._in_flight)) and all(f.done() for f in service._in_flight.values())

            await until(first_fits_done, "first fits")
            await bus.publish_routed([(bars_topic, bar, bar.symbol) for bar in tail])
        await until(lambda: service.detector.snapshot()["tracks"].get("AAA", {}).get("n_returns") == 159, "bars consumed")
        outputs = await read_all(kafka_bootstrap, states_topic)
    finally:
        await service.stop()
    states = [m for m in outputs if isinstance(m, RegimeStateUpdated)]
    changes = [m for m in outputs if isinstance(m, RegimeChanged)]
    assert {s.symbol for s in states} == {*symbols, MARKET_KEY}
    assert {c.symbol for c in changes} == {*symbols, MARKET_KEY}  # at least the first confirmation per key
    # the changes metric counts every published RegimeChanged, by its new label, and nothing else
    for label in RegimeLabel:
        counted = _changes_counted(label) - changes_counted_before[label]
        assert counted == sum(1 for c in changes if c.current == label), label
    assert len({m.event_id for m in outputs}) == len(outputs)
    by_id = {b.event_id: b for b in bars}
    for s in states:
        cause = by_id[s.causation_id]  # type: ignore[index]
        assert s.ts_event <= cause.ts_event and s.correlation_id == cause.correlation_id
    # no state before a model is fitted (requested at min_fit_bars), then one state per bar, none skipped
    aaa_times = sorted(s.ts_event for s in states if s.symbol == "AAA")
    assert aaa_times[0] > T0 + settings.min_fit_bars * DAY_NS
    assert aaa_times == [b.ts_event for b in bars if b.symbol == "AAA" and b.ts_event >= aaa_times[0]]

    again = RegimeService(runtime, settings, group_id=group, heartbeat_topic=unique_name("heartbeats"))
    await again.start()
    try:
        assert again.restored
        track = again.detector.snapshot()["tracks"]["AAA"]
        assert track["n_returns"] == 159 and track["ms2"] is not None
    finally:
        await again.stop()


def _changes_counted(label: RegimeLabel) -> float:
    return METRICS.get_sample_value("ata_regime_changes_total", {"label": str(label)}) or 0.0


def test_event_mapping_matches_the_detector_and_derives_ids_from_the_bar() -> None:
    settings = RegimeSettings(min_fit_bars=60, fit_window_bars=150, refit_every_bars=40, momentum_lookbacks=(5, 20))
    bars = make_bars(("AAA",), 120)
    detector = RegimeDetector(settings.detector_params())
    events: list[Message] = []
    for bar in bars:
        events.extend(on_bar(detector, bar, "regime/x"))
        for request in detector.needs_refit():
            detector.apply_refit(run_refit(request))
    inputs = [BarInput(b.symbol, b.ts_event, b.close, b.volume, b.timeframe) for b in bars]
    reference = list(replay(RegimeDetector(settings.detector_params()), inputs))
    states = [e for e in events if isinstance(e, RegimeStateUpdated)]
    assert [(s.symbol, s.ts_event, s.label, s.confirmed_label) for s in states] == [
        (r.key, r.ts_event, r.label, r.confirmed_label) for r in reference
    ]
    again = RegimeDetector(settings.detector_params())
    replayed: list[Message] = []
    for bar in bars:
        replayed.extend(on_bar(again, bar, "regime/y"))
        for request in again.needs_refit():
            again.apply_refit(run_refit(request))
    assert [e.event_id for e in replayed] == [e.event_id for e in events]  # ids do not depend on the instance
