"""The market data service on the real embedded broker: replay a file, consume exactly its bars."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from ata.events import REGISTRY, AnomalyKind, BarClosed, DataAnomalyDetected, HeartbeatEmitted, Message
from ata.marketdata.config import MarketDataSettings
from ata.marketdata.core import IntegrityChecker, SessionCalendar
from ata.marketdata.service import MarketDataService, Pacer
from ata.marketdata.sources import FileReplay
from ata.runtime.codec import decode
from ata.runtime.config import RuntimeSettings
from ata.runtime.heartbeat import HEARTBEAT_TOPIC
from ata.runtime.kafka import provision_topics

WAIT_S = 60.0
MARKET_TOPICS = ("market.bars.v1", "market.quotes.v1", "market.anomalies.v1", "market.ground_truth.v1")


def write_file(path: Path, minutes: int) -> Path:
    """Two symbols of 1-minute bars from the 2024-01-02 open, one invalid-OHLC row and one unreadable row."""
    lines = ["timestamp,symbol,open,high,low,close,volume"]
    for i in range(minutes):
        hh, mm = divmod(30 + i, 60)
        stamp = f"2024-01-02T{14 + hh:02d}:{mm:02d}:00Z"
        for symbol, base in (("AAA", 100.0), ("BBB", 20.0)):
            close = base + (i % 7) * 0.01
            if symbol == "BBB" and i == 10:
                lines.append(f"{stamp},{symbol},{close},{close - 1},{close - 0.5},{close},10")  # high below close
            elif symbol == "AAA" and i == 20:
                lines.append(f"{stamp},{symbol},{close},n/a,{close},{close},10")
            else:
                lines.append(f"{stamp},{symbol},{close},{close + 0.02},{close - 0.02},{close},{100 + i}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def consume(bootstrap: str, topic: str, expected: int) -> list[Message]:
    """Every message of ``topic`` from the beginning, once ``expected`` arrived and the partitions are drained."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        received: list[Message] = []
        async with asyncio.timeout(WAIT_S):
            while True:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    received.extend(decode(record.value) for record in records)
                caught_up = all([await consumer.position(tp) >= (consumer.highwater(tp) or 0) for tp in partitions])
                if len(received) >= expected and caught_up:
                    return received
    finally:
        await consumer.stop()


async def run_replay(bootstrap: str, redis_url: str, path: Path, names: dict[str, str], *, bulk: bool) -> MarketDataService:
    runtime = RuntimeSettings(kafka_bootstrap=bootstrap, redis_url=redis_url, instance_id="md-test", http_port=0)
    md = MarketDataSettings(source="replay", replay_paths=(path,), timeframe="1m", calendar="XNYS", calendar_start="2023-06-01",
                            bulk_publish=bulk)
    service = MarketDataService(runtime, md, topic_names=names, heartbeat_topic=names[HEARTBEAT_TOPIC])
    await service.start()
    try:
        async with asyncio.timeout(WAIT_S):
            await service.source_finished.wait()
    finally:
        await service.stop()
    return service


async def test_replay_into_the_broker_publishes_exactly_the_files_bars(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    path = write_file(tmp_path / "two.csv", 120)
    calendar = SessionCalendar.from_exchange("XNYS", "2023-06-01")
    checker = IntegrityChecker(MarketDataSettings().integrity(), calendar=calendar, source="x")
    expected = [m for item in FileReplay([path], timeframe="1m", calendar=calendar) for m in checker.process(item, 0)]
    expected_bars = [m for m in expected if isinstance(m, BarClosed)]
    assert len(expected_bars) == 2 * 120 - 2

    ids_per_run = []
    for bulk in (True, False):
        names = {t: unique_name(t.split(".")[1]) for t in (*MARKET_TOPICS, HEARTBEAT_TOPIC)}
        topics = [dataclasses.replace(REGISTRY.get(t), name=n) for t, n in names.items()]
        await asyncio.to_thread(provision_topics, kafka_bootstrap, topics)
        service = await run_replay(kafka_bootstrap, redis_url, path, names, bulk=bulk)
        assert service.bars_published == len(expected_bars)

        bars = await consume(kafka_bootstrap, names["market.bars.v1"], len(expected_bars))
        assert all(isinstance(b, BarClosed) for b in bars)
        assert len(bars) == len(expected_bars) and len({b.event_id for b in bars}) == len(bars)
        for symbol in ("AAA", "BBB"):
            got = [(b.event_id, b.ts_open, b.close) for b in bars if isinstance(b, BarClosed) and b.symbol == symbol]
            want = [(b.event_id, b.ts_open, b.close) for b in expected_bars if b.symbol == symbol]
            assert got == want  # same bars, same ids, in file order per symbol (one partition per key)

        anomalies = await consume(kafka_bootstrap, names["market.anomalies.v1"], 3)
        kinds = sorted(a.kind.value for a in anomalies if isinstance(a, DataAnomalyDetected))
        assert kinds == sorted([AnomalyKind.INVALID_OHLC.value, AnomalyKind.MALFORMED_RECORD.value, AnomalyKind.GAP.value])

        beats = [h for h in await consume(kafka_bootstrap, names[HEARTBEAT_TOPIC], 1) if isinstance(h, HeartbeatEmitted)]
        assert beats and beats[-1].details["source"] == "replay" and beats[-1].details["source_finished"] is True
        ids_per_run.append([b.event_id for b in bars])

    assert sorted(ids_per_run[0]) == sorted(ids_per_run[1])


def test_pacer_maps_event_time_to_wall_time_at_the_speed_factor() -> None:
    wall = [100.0]
    pacer = Pacer(60.0, clock=lambda: wall[0])
    minute = 60_000_000_000
    assert pacer.wait_s(10 * minute) == 0.0  # anchors
    assert pacer.wait_s(11 * minute) == 1.0  # one event minute is one wall second at 60x
    wall[0] = 100.5
    assert pacer.wait_s(11 * minute) == 0.5
    assert pacer.now_event_ns() == 10 * minute + 30_000_000_000
    wall[0] = 200.0
    assert pacer.wait_s(11 * minute) == 0.0
