"""The journal service: every registered topic into the durable store, offsets committed only after.

The per-message consumer loop of the service base is built for handlers; the journal's work is a
bulk write, so it consumes in batches in :meth:`JournalService.background` with the runtime's
consumer factory (same group settings, earliest start, manual commits): fetch up to
``max_batch_records`` -> one store transaction -> commit the fetched positions. Never the other
way round, so a crash between the two redelivers the batch and the ``event_id`` dedup of the
store drops the repeats.

Batches are paced: a batch that was not full is followed by a pause until ``batch_interval_ms``
after its fetch, while the client goes on fetching in the background, and fetches wait up to that
long (at most ``MAX_FETCH_WAIT_MS``) for data. Without it a steady stream (a few events per bar on
each of many topics) was written a handful of records at a time, and the costs per batch (the
store transaction and its fsync, the thread hand-off, the offset commit, an empty fetch over every
partition) dominated the journal's CPU per event. The price is journal lag of up to about twice
the interval; nothing waits on the journal's commits but the ledger checks.

What a batch costs is mostly its fetch, not its records: the journal reads every topic (105
partitions), and each fetch request and response names every partition that has nothing buffered,
encoded and decoded in pure Python by the client and scanned one by one by the broker. So the cost
per second follows the number of batches, and the default interval (250 ms) is chosen for that:
against 100 ms, with 100 bars/s fed to an otherwise idle journal, its CPU per bar fell ~450 -> ~255 us
and the embedded broker's ~1,700 -> ~1,050 us, for journal lag of up to ~0.5 s instead of ~0.2 s.

Fail closed: when a write fails (disk full, unwritable file, database down) the service keeps
the batch, pauses its partitions (the group membership stays alive, nothing more is fetched or
committed), reports not-ready, publishes ``JournalAvailabilityChanged(available=False)`` (risk
denies new orders on it) and retries with backoff; the first write that succeeds publishes
``available=True`` and consumption resumes. Availability is announced at start as well, so a
risk instance that saw the journal go down learns that it is back even across journal restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import Any, ClassVar, Self

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from ata.events import REGISTRY, JournalAvailabilityChanged, Message
from ata.journal.config import JournalSettings
from ata.journal.core.records import JournalRecord, to_record
from ata.journal.snapshots import take_snapshots
from ata.journal.store import JournalStore, StoreUnavailableError, make_store
from ata.runtime import kafka, metrics
from ata.runtime.config import RuntimeSettings, load_settings
from ata.runtime.resilience import Backoff
from ata.runtime.service import Service, run_service

POLL_TIMEOUT_MS = 500
#: The longest a fetch waits for data when batches are paced (see JournalSettings.batch_interval_ms).
MAX_FETCH_WAIT_MS = 500
PUBLISH_TIMEOUT_S = 5.0
#: How long a drain waits for the batch in hand to be stored and committed (the store may be down).
DRAIN_BATCH_TIMEOUT_S = 5.0

WRITTEN = metrics.counter("ata_journal_events_written_total", "Events stored (new event ids)")
DUPLICATES = metrics.counter("ata_journal_duplicates_total", "Consumed records whose event id was already stored")
WRITE_FAILURES = metrics.counter("ata_journal_write_failures_total", "Batch writes that failed (store unavailable)")
AVAILABLE = metrics.gauge("ata_journal_available", "1 while the journal can persist, else 0")
BATCH_SECONDS = metrics.histogram("ata_journal_batch_write_seconds", "Time to write one batch durably")
SNAPSHOTS = metrics.counter("ata_journal_snapshots_total", "State snapshots stored")


class JournalService(Service):
    name = "journal"
    subscriptions: ClassVar[tuple[str, ...]] = ()  # consumed in batches by background(), not per message

    def __init__(self, settings: RuntimeSettings, journal_settings: JournalSettings, *, store: JournalStore | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("group_id", journal_settings.group_id)
        super().__init__(settings, **kwargs)
        self.journal_settings = journal_settings
        self.topics = journal_settings.topics or tuple(REGISTRY.names())
        self.store = store or make_store(settings.journal_url, prefix=journal_settings.table_prefix,
                                         synchronous=journal_settings.sqlite_synchronous)
        self.available: bool | None = None  # unknown until the store was tried
        self._announced: bool | None = None
        self._reason = ""
        self._kafka: AIOKafkaConsumer | None = None
        self._backoff = Backoff(initial_s=journal_settings.retry_initial_ms / 1000, multiplier=2.0,
                                cap_s=journal_settings.retry_max_ms / 1000, max_attempts=None, jitter=False)
        self.written = 0
        self.duplicates = 0

    @classmethod
    def from_env(cls) -> Self:
        return cls(load_settings(RuntimeSettings), load_settings(JournalSettings))

    def route(self, message: Message) -> str:
        if isinstance(message, JournalAvailabilityChanged):
            return self.journal_settings.availability_topic
        return super().route(message)

    def extra_readiness(self) -> bool:
        consumer = self._kafka
        return bool(self.available) and consumer is not None and bool(consumer.assignment())

    # -- lifecycle ----------------------------------------------------------------------------------

    async def on_start(self) -> None:
        try:
            await asyncio.to_thread(self.store.open)
        except StoreUnavailableError as exc:
            self.log.error("journal store unavailable at start: %s", exc)
            self._mark(False, str(exc))
            return
        self._mark(True, "journal store opened")
        await self._announce()

    async def on_stop(self) -> None:
        await asyncio.to_thread(self.store.close)

    async def background(self) -> None:
        js = self.journal_settings
        settings = self.settings.model_copy(update={
            "kafka_max_poll_records": js.max_batch_records,
            # Fewer empty fetches over every topic (each costs the broker and this process); bounded well below
            # the request timeout whatever the interval.
            "kafka_fetch_max_wait_ms": max(self.settings.kafka_fetch_max_wait_ms, min(js.batch_interval_ms, MAX_FETCH_WAIT_MS))})
        consumer = kafka.consumer(settings, self.group_id, *self.topics, client_id=f"{self.name}-{self.instance}")
        await consumer.start()
        self._kafka = consumer
        tasks = [asyncio.create_task(self._consume(consumer), name="journal:consume")]
        if self.journal_settings.snapshot_interval_s > 0:
            tasks.append(asyncio.create_task(self._snapshots(), name="journal:snapshots"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            self._kafka = None
            await consumer.stop()

    # -- consuming ----------------------------------------------------------------------------------

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        interval_s = self.journal_settings.batch_interval_ms / 1000
        while True:
            if self.available is not True:
                await self._reopen()
            await self._announce()
            fetched: dict[TopicPartition, list[ConsumerRecord]] = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
            if not fetched:
                continue
            started = time.monotonic()
            await self._finish_on_drain(self._store_batch(consumer, fetched))
            if sum(map(len, fetched.values())) < self.journal_settings.max_batch_records:  # a full batch: more is waiting
                await asyncio.sleep(interval_s - (time.monotonic() - started))

    async def _store_batch(self, consumer: AIOKafkaConsumer, fetched: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        records, positions = self.convert(fetched)
        await self._persist(consumer, records, positions)
        await self._commit(consumer, positions)

    @staticmethod
    async def _finish_on_drain(work: Coroutine[Any, Any, None]) -> None:
        """Run ``work``; if the service drains meanwhile, give it up to ``DRAIN_BATCH_TIMEOUT_S`` to
        finish before the cancellation goes on. A clean stop then commits what it has stored, so a
        restart does not read the batch again (a crash still may: the store drops the repeats)."""
        task = asyncio.ensure_future(work)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):  # a failure here only means the batch is redelivered
                await asyncio.wait_for(task, DRAIN_BATCH_TIMEOUT_S)
            raise

    async def _reopen(self) -> None:
        """Try the store again while idle, so availability comes back without waiting for new records."""
        try:
            await asyncio.to_thread(self.store.open)
        except StoreUnavailableError as exc:
            self._mark(False, str(exc))
            return
        self._mark(True, "journal store opened")

    @staticmethod
    def convert(fetched: dict[TopicPartition, list[ConsumerRecord]]) -> tuple[list[JournalRecord], dict[TopicPartition, int]]:
        """A fetch (``getmany``'s answer) as journal records, and the next offset to commit per partition."""
        records = [
            to_record(r.topic, r.partition, r.offset, r.key, r.value, r.headers, r.timestamp if r.timestamp is not None else -1)
            for batch in fetched.values() for r in batch
        ]
        positions = {tp: batch[-1].offset + 1 for tp, batch in fetched.items() if batch}
        return records, positions

    async def _persist(self, consumer: AIOKafkaConsumer, records: list[JournalRecord],
                       positions: dict[TopicPartition, int]) -> None:
        """Write the batch, retrying until it is durable; while failing, fetch nothing new and commit nothing."""
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                inserted = await asyncio.to_thread(self.store.append, records)
            except StoreUnavailableError as exc:
                WRITE_FAILURES.inc()
                if self.available is not False:
                    self.log.error("journal write failed, not committing offsets: %s", exc)
                self._mark(False, str(exc))
                await self._announce()
                consumer.pause(*consumer.assignment())
                # Keep polling (paused: returns nothing) so the group keeps this member; newly assigned
                # partitions are not paused yet and their records join the pending batch.
                more = await consumer.getmany(timeout_ms=int(self._backoff.ceiling(attempt) * 1000))
                if more:
                    extra, extra_positions = self.convert(more)
                    records = records + extra
                    positions.update(extra_positions)
                attempt += 1
                continue
            BATCH_SECONDS.observe(time.perf_counter() - started)
            break
        consumer.resume(*consumer.assignment())
        WRITTEN.inc(inserted)
        DUPLICATES.inc(len(records) - inserted)
        self.written += inserted
        self.duplicates += len(records) - inserted
        if self.available is not True:
            self.log.info("journal writes succeed again")
        self._mark(True, "journal writes succeed")
        await self._announce()

    async def _commit(self, consumer: AIOKafkaConsumer, positions: dict[TopicPartition, int]) -> None:
        owned = consumer.assignment()
        offsets = {tp: offset for tp, offset in positions.items() if tp in owned}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance took the partitions: the new owner re-reads them and the store drops the repeats.
            self.log.warning("offset commit refused after a rebalance: %s", exc)

    # -- availability -------------------------------------------------------------------------------

    def _mark(self, available: bool, reason: str) -> None:
        if self.available is not available:
            self._reason = reason
        self.available = available
        AVAILABLE.set(1.0 if available else 0.0)

    async def _announce(self) -> None:
        """Publish the availability if it changed since the last announcement (retried until it is acknowledged)."""
        state = self.available
        if state is None or state is self._announced:
            return
        now = self.now_ns()
        event = JournalAvailabilityChanged.origin(
            natural_key=(self.source, state, now), ts_event=now, ts_init=now, source=self.source, available=state,
            reason=self._reason[:1000])
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                await self.publish([event])
        except (TimeoutError, KafkaError) as exc:
            self.log.warning("could not publish journal availability %s: %s", state, exc)
            return
        self._announced = state

    # -- snapshots ----------------------------------------------------------------------------------

    async def _snapshots(self) -> None:
        """Fold the journal tail into new snapshots every ``snapshot_interval_s`` (own connection: reads run
        next to the writer)."""
        store = make_store(self.settings.journal_url, prefix=self.journal_settings.table_prefix,
                           synchronous=self.journal_settings.sqlite_synchronous)
        try:
            while True:
                await asyncio.sleep(self.journal_settings.snapshot_interval_s)
                try:
                    taken = await asyncio.to_thread(take_snapshots, store, min_events=self.journal_settings.snapshot_min_events)
                except StoreUnavailableError as exc:
                    self.log.warning("snapshot skipped: %s", exc)
                    continue
                SNAPSHOTS.inc(len(taken))
        finally:
            with contextlib.suppress(StoreUnavailableError):
                await asyncio.to_thread(store.close)


def main() -> None:
    run_service(JournalService)

