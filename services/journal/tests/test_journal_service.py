"""The journal service against the real broker: exactly-once storage under redelivery and duplicate
publishes, kill -9 mid-run loses nothing, and fail-closed behaviour when the store cannot persist."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import REGISTRY as METRICS

from ata.events import BarClosed, DenialReason, JournalAvailabilityChanged, OrderDenied, Topic, TopicRegistry
from ata.journal.config import JournalSettings
from ata.journal.service import JournalService
from ata.journal.store import JournalStore, SqliteStore, make_store
from ata.journal.testing import MINUTE_NS, T0, paper_risk_settings, sqlite_url, unique_prefix, until
from ata.risk.core import RiskEngine
from ata.risk.testing import bar, target
from ata.runtime.bus import KafkaBus
from ata.runtime.codec import decode, encode
from ata.runtime.config import RuntimeSettings
from ata.runtime.kafka import bulk_producer, provision_topics

PARTITIONS = 3


def bars(n: int, start: int = 0) -> list[BarClosed]:
    return [bar(("AAA", "BBB", "CCC", "DDD")[i % 4], T0 + (start + i) * MINUTE_NS, 100.0 + i % 13) for i in range(n)]


def make_topics(bootstrap: str, unique_name: Callable[[str], str]) -> tuple[str, str]:
    """A keyed bar topic with several partitions and a one-partition availability topic, created on the broker."""
    data, availability = unique_name("bars"), unique_name("journal")
    provision_topics(bootstrap, TopicRegistry([
        Topic(data, (BarClosed,), "symbol", PARTITIONS, ("marketdata",), ("journal",)),
        Topic(availability, (JournalAvailabilityChanged,), None, 1, ("journal",), ("risk",)),
    ]))
    return data, availability


def journal(bootstrap: str, url: str, topics: tuple[str, ...], group: str, availability: str,  # noqa: PLR0917
            prefix: str) -> JournalService:
    settings = RuntimeSettings(kafka_bootstrap=bootstrap, journal_url=url, instance_id="test")
    return JournalService(settings, JournalSettings(topics=topics, group_id=group, availability_topic=availability,
                                                    table_prefix=prefix, retry_initial_ms=50, retry_max_ms=300))


async def publish(bootstrap: str, topic: str, messages: list[BarClosed]) -> None:
    """Publish in order, keyed by symbol, awaiting the acknowledgements together (one by one took ~8 ms each)."""
    async with KafkaBus(RuntimeSettings(kafka_bootstrap=bootstrap, instance_id="test")) as bus:
        await bus.publish_routed([(topic, message, message.symbol) for message in messages])


def assert_gapless(reader: JournalStore, topic: str, published: int) -> dict[int, int]:
    """Every partition covered from offset 0 without a hole, and the coverage adds up to every published record.

    (Coverage, not broker watermarks: the embedded broker answers end-offset queries unreliably.)
    """
    assert reader.gaps(log_start={(topic, p): 0 for p in range(PARTITIONS)}) == []
    ends = {int(k.rsplit(":", 1)[1]): v for k, v in reader.positions().items() if k.rsplit(":", 1)[0] == topic}
    assert sum(ends.values()) == published
    return ends


def write_failures() -> float:
    """Failed batch writes so far in this process (the tests here run one after another)."""
    return METRICS.get_sample_value("ata_journal_write_failures_total") or 0.0


async def committed(bootstrap: str, group: str, topic: str, partitions: int = PARTITIONS) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        await consumer.stop()


async def availability_events(bootstrap: str, topic: str, expected: int) -> list[JournalAvailabilityChanged]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found: list[JournalAvailabilityChanged] = []
    try:
        async with asyncio.timeout(60):
            while len(found) < expected:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    found.extend(m for m in (decode(r.value) for r in records) if isinstance(m, JournalAvailabilityChanged))
    finally:
        await consumer.stop()
    return found


@pytest.fixture
async def journal_store(journal_url: str) -> AsyncIterator[tuple[str, str, JournalStore]]:
    """(url, table prefix, an open reader store) on each backend; tables dropped afterwards."""
    prefix = unique_prefix()
    reader = make_store(journal_url, prefix=prefix)
    reader.open()
    try:
        yield journal_url, prefix, reader
    finally:
        reader.drop()
        reader.close()


async def test_journal_stores_each_event_once_under_restarts_redelivery_and_duplicates(
        kafka_bootstrap: str, unique_name: Callable[[str], str], journal_store: tuple[str, str, JournalStore]) -> None:
    url, prefix, reader = journal_store
    data, availability = make_topics(kafka_bootstrap, unique_name)
    group = unique_name("group")
    first = bars(300)
    await publish(kafka_bootstrap, data, first + first[:40])  # 40 duplicate publishes
    service = journal(kafka_bootstrap, url, (data,), group, availability, prefix)
    await service.start()
    try:
        await until(lambda: reader.count() == 300, "300 distinct events stored")
        # The 40 repeats come after the 300 in the log: the run must have read them too before it stops, or the
        # next run would (the repeat count below says nothing before the commits is read again).
        await until(lambda: service.written + service.duplicates >= 340, "first run consumed")
        await until(lambda: service.ready, "journal ready")
    finally:
        await service.stop()
    assert service.written == 300 and service.duplicates == 40
    # Restart in the same group and publish more: it resumes from its commits.
    second = bars(200, start=300)
    await publish(kafka_bootstrap, data, second + first[100:110])
    service = journal(kafka_bootstrap, url, (data,), group, availability, prefix)
    await service.start()
    try:
        await until(lambda: reader.count() == 500, "500 distinct events stored")
        await until(lambda: service.written + service.duplicates >= 210, "second run consumed")
    finally:
        await service.stop()
    assert service.written == 200 and service.duplicates == 10  # nothing before its commits was read again
    # A full redelivery (a new group reads every record again) stores nothing new.
    again = journal(kafka_bootstrap, url, (data,), unique_name("group"), availability, prefix)
    await again.start()
    try:
        await until(lambda: again.duplicates == 550, "every record redelivered")
    finally:
        await again.stop()
    assert again.written == 0
    stored = [e.record.event_id for e in reader.events()]
    assert len(stored) == len(set(stored)) == 500
    assert set(stored) == {str(m.event_id) for m in first + second}
    ends = assert_gapless(reader, data, 300 + 40 + 200 + 10)
    assert await committed(kafka_bootstrap, group, data) == {p: ends.get(p) for p in range(PARTITIONS)}


async def test_journal_kill_9_mid_run_loses_nothing(kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path,
                                                   redis_url: str) -> None:
    data, availability = make_topics(kafka_bootstrap, unique_name)
    url, group = sqlite_url(tmp_path), unique_name("group")
    env = {**os.environ, "ATA_KAFKA_BOOTSTRAP": kafka_bootstrap, "ATA_REDIS_URL": redis_url, "ATA_JOURNAL_URL": url,
           "ATA_JOURNAL_TOPICS": orjson.dumps([data]).decode(), "ATA_JOURNAL_GROUP_ID": group,
           "ATA_JOURNAL_AVAILABILITY_TOPIC": availability, "ATA_JOURNAL_MAX_BATCH_RECORDS": "200", "ATA_HTTP_PORT": "0",
           "ATA_LOG_LEVEL": "WARNING",
           # A killed member holds its partitions until its session expires, and each join waits about half the
           # session: 3 s instead of the default 6 s saves ~4 s per kill (an eviction under load only costs time).
           "ATA_KAFKA_SESSION_TIMEOUT_MS": "3000"}
    reader = SqliteStore(url)
    total = 6000
    messages = bars(total)
    producer = bulk_producer(kafka_bootstrap)

    def produce(chunk: list[BarClosed]) -> None:
        for m in chunk:
            producer.produce(data, encode(m), key=m.symbol.encode())
        assert producer.flush(30) == 0

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "ata.journal"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)

    proc = spawn()
    try:
        for round_no in range(3):
            await asyncio.to_thread(produce, messages[round_no * 2000:(round_no + 1) * 2000])
            # Let it get part of the way, then kill it without any chance to drain.
            floor = round_no * 2000 + 100
            await until(lambda floor=floor: reader.path.exists() and reader.count() > floor, "progress before kill",
                        timeout_s=90)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            proc = spawn()
        await until(lambda: reader.count() == total, f"all {total} events after restarts", timeout_s=120)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    assert_gapless(reader, data, total)
    assert {e.record.event_id for e in reader.events()} == {str(m.event_id) for m in messages}
    reader.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_journal_fails_closed_when_it_cannot_persist(kafka_bootstrap: str, unique_name: Callable[[str], str],
                                                           tmp_path: Path, backend: str) -> None:
    data, availability = make_topics(kafka_bootstrap, unique_name)
    group = unique_name("group")
    blocker = tmp_path / "journal-dir"
    blocker.write_text("a file where the journal's directory should be")
    url = sqlite_url(blocker) if backend == "sqlite" else "postgresql://postgres@127.0.0.1:1/test"
    await publish(kafka_bootstrap, data, bars(50))
    failures_before = write_failures()
    service = journal(kafka_bootstrap, url, (data,), group, availability, "")
    await service.start()
    try:
        await until(lambda: service.available is False, "journal unavailable")
        (down,) = await availability_events(kafka_bootstrap, availability, 1)
        assert down.available is False and down.reason
        # Records have arrived and their writes failed, then failed again on the retry.
        await until(lambda: write_failures() >= failures_before + 2, "failed writes of the fetched records")
        assert not service.ready and "not ready" in (service.ready_reason() or "")
        assert service.written == 0
        assert await committed(kafka_bootstrap, group, data) == dict.fromkeys(range(PARTITIONS))
        # Risk honours it: with the journal down a target that would trade is denied.
        engine = RiskEngine(paper_risk_settings())
        engine.handle(bar("AAA", T0, 100.0))
        engine.handle(down)
        # Risk sizes a target once an input after its time arrives (the next bar here).
        decided = [*engine.handle(target("AAA", T0 + 1, 0.2, 100.0)), *engine.handle(bar("AAA", T0 + MINUTE_NS, 100.0))]
        denied = [m for m in decided if isinstance(m, OrderDenied)]
        assert [d.reason for d in denied] == [DenialReason.JOURNAL_UNAVAILABLE]
        if backend == "sqlite":
            # The disk comes back: writes succeed, availability is announced, offsets are committed.
            blocker.unlink()
            blocker.mkdir()
            await until(lambda: service.available is True and service.written == 50, "journal writes again")
            events = await availability_events(kafka_bootstrap, availability, 2)
            assert [e.available for e in events] == [False, True]
            await until(lambda: service.ready, "ready again")
    finally:
        await service.stop()
    if backend == "sqlite":
        assert sum(v or 0 for v in (await committed(kafka_bootstrap, group, data)).values()) == 50
