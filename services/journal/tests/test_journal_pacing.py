"""Batch pacing of the journal service (real broker, real SQLite): records that arrive while the journal
pauses after a write are stored together by the next write, and nothing is left unstored or uncommitted."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from ata.events import BarClosed, JournalAvailabilityChanged, Topic, TopicRegistry
from ata.journal.config import JournalSettings
from ata.journal.core.records import JournalRecord
from ata.journal.service import JournalService
from ata.journal.store import SqliteStore
from ata.journal.testing import MINUTE_NS, T0, sqlite_url, unique_prefix, until
from ata.risk.testing import bar
from ata.runtime.bus import KafkaBus
from ata.runtime.config import RuntimeSettings
from ata.runtime.kafka import provision_topics

#: Long enough that the three one-by-one publishes below land inside one pause, even on a loaded machine.
INTERVAL_MS = 10_000


class RecordingStore(SqliteStore):
    """The SQLite store, recording how many records each write carried."""

    writes: list[int]

    def append(self, records: Sequence[JournalRecord]) -> int:
        self.writes.append(len(records))
        return super().append(records)


async def test_records_arriving_during_the_pause_are_written_together(
        kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path) -> None:
    data, availability = unique_name("bars"), unique_name("journal")
    provision_topics(kafka_bootstrap, TopicRegistry([
        Topic(data, (BarClosed,), "symbol", 1, ("marketdata",), ("journal",)),
        Topic(availability, (JournalAvailabilityChanged,), None, 1, ("journal",), ("risk",)),
    ]))
    store = RecordingStore(sqlite_url(tmp_path), prefix=unique_prefix())
    store.writes = []
    group = unique_name("journal")
    settings = RuntimeSettings(kafka_bootstrap=kafka_bootstrap, instance_id="test")
    service = JournalService(settings, JournalSettings(topics=(data,), group_id=group, availability_topic=availability,
                                                       batch_interval_ms=INTERVAL_MS), store=store)
    bars = [bar("AAA", T0 + i * MINUTE_NS, 100.0 + i) for i in range(4)]
    await service.start()
    try:
        async with KafkaBus(settings, service="feeder") as bus:
            await bus.publish_to(data, bars[0], key="AAA")
            await until(lambda: service.written == 1, "the first bar stored")
            for item in bars[1:]:  # one by one, each acknowledged before the next is sent
                await bus.publish_to(data, item, key="AAA")
        await until(lambda: service.written == 4, "every bar stored", timeout_s=INTERVAL_MS / 1000 + 60)
    finally:
        await service.stop()
    assert store.writes == [1, 3]
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        assert await consumer.committed(TopicPartition(data, 0)) == 4
    finally:
        await consumer.stop()
