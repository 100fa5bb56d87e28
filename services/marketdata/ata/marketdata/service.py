"""The market data service shell: runs the configured source, checks every record, publishes.

``background()`` pulls records from the source, passes each through the
:class:`~ata.marketdata.core.IntegrityChecker` and publishes what comes out: clean bars to
``market.bars.v1``, quotes to ``market.quotes.v1``, anomalies and reliability changes to
``market.anomalies.v1``, ground truth to ``market.ground_truth.v1`` (all keyed by symbol;
``topic_names`` renames topics, e.g. for test isolation).

Historical sources (files, datasets, synthetic) are paced by ``speed_factor`` (0: as fast as
possible; with ``closed_gaps=skip``, market-closed stretches shortened to ``closed_gap_max_wait_s``,
see :mod:`ata.marketdata.pacing`) or, with ``lockstep_groups``, by the pipeline itself (a bar time is published once the
listed consumer groups have handled everything before it; see :mod:`ata.runtime.quiescence`)
and, with ``bulk_publish``, published by the confluent bulk producer, flushed (every
record acknowledged) after each chunk (the batch path of as-fast-as-possible replay: once, at the
end, with failures raised as they are reported); live sources (Alpaca) are published record by record
through the runtime bus. When a historical source is exhausted the service stays up and
reports ``source_finished`` in heartbeats and metrics. Stale-feed checks run every
``stale_check_interval_ms`` in event time (the replay clock for paced replay, the wall clock
for live feeds); as-fast-as-possible replay has no notion of "late", so it skips them.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from datetime import date
from typing import Self

from confluent_kafka import KafkaError
from confluent_kafka import Message as KafkaMessage

from ata.events import (
    BarClosed,
    DataAnomalyDetected,
    DataReliabilityChanged,
    Message,
    Topic,
)
from ata.marketdata.config import MarketDataSettings
from ata.marketdata.core import (
    BarBatch,
    CleanBars,
    IntegrityChecker,
    RawBar,
    SessionCalendar,
    SourceItem,
)
from ata.marketdata.core.records import NS_PER_DAY, NS_PER_S
from ata.marketdata.pacing import Pacer, closed_gap_skip
from ata.marketdata.sources import (
    DatasetReplay,
    FileReplay,
    HistoricalSource,
    LiveSource,
    Source,
    SyntheticSource,
    synthetic_symbols,
)
from ata.marketdata.wire import clean_bar_payloads, wire_bytes
from ata.quant.synthetic import SyntheticConfig
from ata.runtime import metrics
from ata.runtime.config import RuntimeSettings, load_settings
from ata.runtime.heartbeat import HEARTBEAT_TOPIC, HeartbeatStats
from ata.runtime.kafka import bulk_producer
from ata.runtime.quiescence import PipelineGate
from ata.runtime.service import Service, run_service

#: Records pulled from a historical source per scheduling slice (the loop yields in between).
CHUNK_RECORDS = 5000
#: Rows per columnar batch on the batch path (as-fast-as-possible replay): bounds the columns and outputs held at
#: once (the producer's queue bounds what is unacknowledged; see ``BULK_PRODUCER_SETTINGS``).
BATCH_ROWS = 100_000
#: Longest a bulk flush may take before the publish is considered failed.
FLUSH_TIMEOUT_S = 30.0
#: librdkafka settings of the bulk producer (``bulk_producer`` spelling): record batches filled for up to 20 ms
#: (the default batch.size of 1 MB, which Apache Kafka's default message.max.bytes also accepts); at most 200,000
#: records (about 80 MB of bars) queued before ``produce`` waits for the broker; delivery reports for failures only.
#: No compression: the embedded broker accepts lz4, but the asyncio consumers (aiokafka) here decode gzip only.
BULK_PRODUCER_SETTINGS: dict[str, int | bool] = {
    "linger_ms": 20, "batch_num_messages": 10_000, "queue_buffering_max_messages": 200_000,
    "delivery_report_only_error": True,
}

BARS = metrics.counter("ata_marketdata_bars_total", "Clean bars published", ("source",))
ANOMALIES = metrics.counter(
    "ata_marketdata_anomalies_total", "Data anomalies detected, by kind and severity", ("kind", "severity")
)
QUARANTINED = metrics.counter("ata_marketdata_quarantined_total", "Records withheld as bad data, by anomaly kind", ("kind",))
BARS_PER_SECOND = metrics.gauge("ata_marketdata_bars_per_second", "Clean bars published per second (last measurement window)")
LAG_SECONDS = metrics.gauge("ata_marketdata_lag_seconds", "Wall clock minus the close time of the latest published bar")
UNRELIABLE = metrics.gauge("ata_marketdata_unreliable_symbols", "Symbols whose data breaker is open")
SOURCE_FINISHED = metrics.gauge("ata_marketdata_source_finished", "1 once a historical source is exhausted")


class PublishError(RuntimeError):
    """The broker did not acknowledge every record of a bulk publish."""


def event_time(item: SourceItem) -> int | None:
    """When a record becomes known: a bar at its close, anything else at its own time (a bad row may have none)."""
    return item.ts_close if isinstance(item, RawBar) else item.ts


class BulkPublisher:
    """Confluent producer for historical replay: enqueue without waiting, count what the broker acknowledged so far,
    and :meth:`flush` to await every acknowledgement.

    Delivery reports are requested for failures only (``delivery.report.only.error``): a Python
    callback per acknowledged record would cost more than encoding it. Acknowledged records are
    therefore counted, not listed: a record leaves ``len(producer)`` once its delivery report has
    been served, so ``produced - len(producer)`` records are done, and any failure among them is
    in ``errors`` (raised by :meth:`acknowledged` and :meth:`flush`).
    """

    def __init__(self, bootstrap: str, client_id: str, route: Callable[[Message], tuple[str, str]], service: str,
                 **settings: int | bool) -> None:
        """``settings`` override :data:`BULK_PRODUCER_SETTINGS` (``bulk_producer`` spelling)."""
        # The failure callback is the producer's default: passed to every produce call it would cost ~0.3 us per record.
        self._producer = bulk_producer(bootstrap, client_id=client_id, on_delivery=self._delivered,
                                       **{**BULK_PRODUCER_SETTINGS, **settings})
        self._route = route
        self._service = service
        self._errors: list[str] = []
        #: Records handed to the producer so far.
        self.produced = 0
        #: Records handed to the producer since the last :meth:`flush`.
        self.pending = 0

    def _delivered(self, error: KafkaError | None, _record: KafkaMessage) -> None:
        if error is not None:
            self._errors.append(str(error))

    def produce(self, messages: Sequence[Message]) -> None:
        per_topic: Counter[str] = Counter()
        for message in messages:
            topic, key = self._route(message)
            per_topic[topic] += 1
            self._enqueue(topic, key.encode(), [wire_bytes(message)])
        for topic, count in per_topic.items():
            metrics.EVENTS_OUT.labels(service=self._service, topic=topic).inc(count)

    def produce_payloads(self, topic: str, key: str, payloads: Sequence[bytes]) -> None:
        """Enqueue already encoded values of one key (the batch path's clean bars)."""
        self._enqueue(topic, key.encode(), payloads)
        metrics.EVENTS_OUT.labels(service=self._service, topic=topic).inc(len(payloads))

    def _enqueue(self, topic: str, key: bytes, values: Sequence[bytes]) -> None:
        """Produce ``values`` in order; while the local queue is full, serve delivery reports and retry the same value."""
        produce = self._producer.produce
        remaining: Iterator[bytes] = iter(values)
        while True:
            try:
                for value in remaining:
                    produce(topic, value, key)
                break
            except BufferError:
                self._producer.poll(0.05)
                remaining = itertools.chain((value,), remaining)
        self.produced += len(values)
        self.pending += len(values)
        self._producer.poll(0)

    def acknowledged(self) -> int:
        """How many of the records produced so far the broker has acknowledged; raises :class:`PublishError` if
        any delivery failed."""
        self._producer.poll(0)
        self._raise_failures(0)
        return self.produced - len(self._producer)

    def _raise_failures(self, unacknowledged: int) -> None:
        errors, self._errors = self._errors, []
        if unacknowledged or errors:
            raise PublishError(f"{unacknowledged} record(s) unacknowledged after {FLUSH_TIMEOUT_S}s; errors: {errors[:5]}")

    async def flush(self) -> None:
        """Wait until the broker acknowledged everything produced so far; raise :class:`PublishError` otherwise."""
        self._raise_failures(await asyncio.to_thread(self._producer.flush, FLUSH_TIMEOUT_S))
        self.pending = 0

    async def close(self) -> None:
        """Flush what is pending, then release the client's threads and connections."""
        try:
            if self.pending:
                await self.flush()
        finally:
            await asyncio.to_thread(self._producer.close)


def build_calendar(settings: MarketDataSettings) -> SessionCalendar | None:
    return SessionCalendar.from_exchange(settings.calendar, settings.calendar_start) if settings.calendar else None


def build_source(settings: MarketDataSettings, calendar: SessionCalendar | None) -> Source:
    """The configured source (the Alpaca adapter is imported only when chosen)."""
    if settings.source == "dataset":
        symbol = settings.symbols[0] if len(settings.symbols) == 1 else None
        return DatasetReplay(settings.dataset, calendar=calendar, symbol=symbol)
    if settings.source == "replay":
        return FileReplay(settings.replay_paths, timeframe=settings.timeframe, dataset=settings.replay_name or None,
                          calendar=calendar, symbols=settings.symbols or None, default_symbol=settings.default_symbol or None)
    if settings.source == "synthetic":
        symbols = list(settings.symbols) or synthetic_symbols(settings.synthetic_symbols)
        start = date.fromisoformat(settings.synthetic_start)
        start_ns = (date(start.year, start.month, start.day) - date(1970, 1, 1)).days * NS_PER_DAY
        return SyntheticSource(SyntheticConfig(n_symbols=len(symbols), seed=settings.seed), symbols=symbols,
                               timeframe=settings.synthetic_timeframe, start_ns=start_ns, calendar=calendar,
                               max_bars=settings.synthetic_max_bars or None)
    from ata.marketdata.sources.alpaca import AlpacaSource

    alpaca: LiveSource = AlpacaSource.from_settings(settings)
    return alpaca


class MarketDataService(Service):
    """Publishes integrity-checked market data from one configured source."""

    name = "marketdata"
    subscriptions = ()

    def __init__(self, settings: RuntimeSettings, md: MarketDataSettings, *, source: Source | None = None,
                 topic_names: Mapping[str, str] | None = None, heartbeat_topic: str = HEARTBEAT_TOPIC,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """``topic_names`` maps registry topic names to the names actually used (default: unchanged);
        ``clock`` (seconds) and ``sleep`` are the wall time that paced replay follows."""
        super().__init__(settings, heartbeat_topic=heartbeat_topic)
        self._clock = clock
        self._sleep = sleep
        self.topic_names = dict(topic_names or {})
        self._routes: dict[type[Message], tuple[str, Topic]] = {}
        self.md = md
        self.calendar = build_calendar(md)
        self.core = IntegrityChecker(md.integrity(), calendar=self.calendar, source=self.source,
                                     reference_sources=frozenset())
        self.data_source = source if source is not None else build_source(md, self.calendar)
        self.reference_source: HistoricalSource | None = None
        if md.reference_paths:
            self.reference_source = FileReplay(
                md.reference_paths, timeframe=md.timeframe, dataset=f"reference-{md.replay_name or 'files'}",
                calendar=self.calendar, symbols=md.symbols or None, default_symbol=md.default_symbol or None,
            )
            self.core.reference_sources = frozenset({self.reference_source.name})
        self.source_finished = asyncio.Event()
        self.bars_published = 0
        self.anomalies: Counter[str] = Counter()
        self._rate_mark = (time.monotonic(), 0)
        self._last_bar_close_ns: int | None = None
        self._bulk: BulkPublisher | None = None

    @classmethod
    def from_env(cls) -> Self:
        return cls(load_settings(RuntimeSettings), load_settings(MarketDataSettings))

    # -- routing ------------------------------------------------------------------------------
    def _topic(self, message: Message) -> tuple[str, Topic]:
        """``(name used, registry topic)`` for the message's type; looked up once per type (this is the hot path)."""
        entry = self._routes.get(type(message))
        if entry is None:
            topic = self.registry.topic_for(message)
            entry = (self.topic_names.get(topic.name, topic.name), topic)
            self._routes[type(message)] = entry
        return entry

    def route(self, message: Message) -> str:
        return self._topic(message)[0]

    def _route_and_key(self, message: Message) -> tuple[str, str]:
        name, topic = self._topic(message)
        return name, topic.key_of(message)

    # -- lifecycle ----------------------------------------------------------------------------
    async def on_start(self) -> None:
        if self.md.bulk_publish and isinstance(self.data_source, HistoricalSource):
            self._bulk = BulkPublisher(self.settings.kafka_bootstrap, f"marketdata-bulk-{self.instance}", self._route_and_key,
                                       self.name)

    async def on_stop(self) -> None:
        if self._bulk is not None:
            bulk, self._bulk = self._bulk, None
            await bulk.close()
        if isinstance(self.data_source, LiveSource):
            await self.data_source.close()

    async def background(self) -> None:
        source = self.data_source
        if isinstance(source, LiveSource):
            await self._run_live(source)
        else:
            await self._run_historical(source)

    async def _run_historical(self, source: HistoricalSource) -> None:
        batches = self._batches(source)
        if batches is not None:
            await self._run_batches(batches)
            return
        items: Iterator[SourceItem] = iter(source)
        if self.reference_source is not None:
            import heapq

            items = heapq.merge(items, iter(self.reference_source), key=lambda item: event_time(item) or 0)
        lockstep = self.md.lockstep_groups
        gate = PipelineGate.for_services(self.settings.kafka_bootstrap, lockstep) if lockstep else None
        pacer = self._pacer() if self.md.speed_factor > 0 and gate is None else None
        latest: int | None = None
        while chunk := list(itertools.islice(items, CHUNK_RECORDS)):
            ts_init = self.now_ns()
            outputs: list[Message] = []
            for item in chunk:
                when = event_time(item)
                if gate is not None and when is not None and latest is not None and when > latest:
                    await self._emit(outputs)  # a bar time is published whole, then handled whole, before the next
                    outputs = []
                    await gate.wait_idle()
                    ts_init = self.now_ns()
                if when is not None:
                    latest = when if latest is None else max(latest, when)
                if pacer is not None and when is not None and pacer.wait_s(when) > 0:
                    await self._emit(outputs)
                    outputs = []
                    await self._wait_paced(pacer, when)
                    ts_init = self.now_ns()
                outputs.extend(self.core.process(item, ts_init))
            await self._emit(outputs)
            await asyncio.sleep(0)
        self.source_finished.set()
        SOURCE_FINISHED.set(1)
        self.log.info("source finished", extra={"bars": self.bars_published, "anomalies": dict(self.anomalies)})

    def _pacer(self) -> Pacer:
        """The pace of the replay: ``speed_factor``, with market-closed stretches shortened to
        ``closed_gap_max_wait_s`` when ``closed_gaps`` is skip (without a calendar the market never closes)."""
        md = self.md
        skip = (closed_gap_skip(self.calendar, md.closed_gap_max_wait_s, md.speed_factor)
                if md.closed_gaps == "skip" and self.calendar is not None else None)
        return Pacer(md.speed_factor, self._clock, skip)

    def _batches(self, source: HistoricalSource) -> Iterator[BarBatch] | None:
        """Columnar batches when the batch path applies: as fast as possible, bulk publishing, no reference source,
        and a source that offers them (replay files in a clean columnar form, built-in datasets)."""
        offer = getattr(source, "batches", None)
        if (offer is None or self._bulk is None or self.md.speed_factor > 0 or self.reference_source is not None
                or self.md.lockstep_groups):
            return None
        batches: Iterator[BarBatch] | None = offer(BATCH_ROWS)
        return batches

    async def _run_batches(self, batches: Iterator[BarBatch]) -> None:
        """The batch path: :meth:`IntegrityChecker.process_batch`, clean runs encoded in bulk, one flush at the end.

        Batches are not flushed one by one, so checking and encoding the next batch overlaps with the
        broker's work on the previous ones (the producer's bounded queue holds the backlog). A batch's
        outputs are counted as published once as many records as it ends at are acknowledged (a count:
        partitions complete out of order), and a delivery failure stops the replay at the next batch.
        """
        assert self._bulk is not None
        bars_topic = self.topic_names.get("market.bars.v1", "market.bars.v1")
        unconfirmed: deque[tuple[int, int, list[Message]]] = deque()  # (records produced at its end, bars, messages)
        for batch in batches:
            ts_init = self.now_ns()
            bars, messages = 0, []
            for item in self.core.process_batch(batch, ts_init):
                if isinstance(item, CleanBars):
                    symbol = batch.symbols[batch.symbol_index[item.rows[0]]]
                    self._bulk.produce_payloads(bars_topic, symbol, clean_bar_payloads(item, source=self.source,
                                                                                      ts_init=ts_init))
                    bars += len(item.rows)
                    self._last_bar_close_ns = max(self._last_bar_close_ns or 0, int(batch.ts_close[item.rows[-1]]))
                else:
                    self._bulk.produce([item])
                    messages.append(item)
            unconfirmed.append((self._bulk.produced, bars, messages))
            self._confirm(unconfirmed, self._bulk.acknowledged())
            await asyncio.sleep(0)
        await self._bulk.flush()
        self._confirm(unconfirmed, self._bulk.produced)
        self.source_finished.set()
        SOURCE_FINISHED.set(1)
        self.log.info("source finished", extra={"bars": self.bars_published, "anomalies": dict(self.anomalies)})

    def _confirm(self, unconfirmed: deque[tuple[int, int, list[Message]]], acknowledged: int) -> None:
        """Count the outputs of the leading batches that ``acknowledged`` records cover as published."""
        while unconfirmed and unconfirmed[0][0] <= acknowledged:
            _, bars, messages = unconfirmed.popleft()
            self._events_out += bars + len(messages)
            self.bars_published += bars
            BARS.labels(source=self.data_source.name).inc(bars)
            self._account(messages)

    async def _wait_paced(self, pacer: Pacer, when: int) -> None:
        """Sleep until the record at event time ``when`` is due, checking for stale feeds on the replay clock meanwhile."""
        interval_s = self.md.stale_check_interval_ms / 1000
        while (wait := pacer.wait_s(when)) > 0:
            await self._sleep(min(wait, interval_s))
            now = pacer.now_event_ns()
            if now is not None:
                await self._emit(self.core.tick(min(now, when), self.now_ns()))

    async def _run_live(self, source: LiveSource) -> None:
        ticker = asyncio.create_task(self._tick_live(), name="marketdata:stale-check")
        try:
            async for item in source:
                await self._emit(self.core.process(item, self.now_ns()))
        finally:
            ticker.cancel()
        self.source_finished.set()
        SOURCE_FINISHED.set(1)

    async def _tick_live(self) -> None:
        while True:
            await asyncio.sleep(self.md.stale_check_interval_ms / 1000)
            now = self.now_ns()
            await self._emit(self.core.tick(now, now))

    # -- publishing ---------------------------------------------------------------------------
    async def _emit(self, outputs: list[Message]) -> None:
        if not outputs:
            return
        if self._bulk is not None:
            self._bulk.produce(outputs)
            await self._bulk.flush()
            self._events_out += len(outputs)  # the base counts what goes through its own publish()
        else:
            await self.publish(outputs)
        self._account(outputs)

    def _account(self, outputs: Sequence[Message]) -> None:
        bars = 0
        for message in outputs:
            if type(message) is BarClosed:
                bars += 1
                self._last_bar_close_ns = message.ts_event
            elif type(message) is DataAnomalyDetected:
                self.anomalies[message.kind.value] += 1
                ANOMALIES.labels(kind=message.kind.value, severity=message.severity.value).inc()
                if message.quarantined:
                    QUARANTINED.labels(kind=message.kind.value).inc()
            elif type(message) is DataReliabilityChanged:
                UNRELIABLE.set(sum(1 for ok in self.core.reliability().values() if not ok))
        if bars:
            self.bars_published += bars
            BARS.labels(source=self.data_source.name).inc(bars)
        if self._last_bar_close_ns is not None:
            LAG_SECONDS.set((time.time_ns() - self._last_bar_close_ns) / NS_PER_S)
        now = time.monotonic()
        mark_time, mark_bars = self._rate_mark
        if now - mark_time >= 1.0:
            BARS_PER_SECOND.set((self.bars_published - mark_bars) / (now - mark_time))
            self._rate_mark = (now, self.bars_published)

    def _heartbeat_stats(self) -> HeartbeatStats:
        stats = super()._heartbeat_stats()
        details = dict(stats.details)
        details.update(self.data_source.health())
        details.update({
            "bars_published": self.bars_published,
            "anomalies": sum(self.anomalies.values()),
            "unreliable_symbols": sum(1 for ok in self.core.reliability().values() if not ok),
            "source_finished": self.source_finished.is_set(),
            "lag_s": 0.0 if self._last_bar_close_ns is None else (time.time_ns() - self._last_bar_close_ns) / NS_PER_S,
        })
        return HeartbeatStats(stats.status, stats.events_in, stats.events_out, stats.consumer_lag, details)


def main() -> None:
    """``python -m ata.marketdata`` / ``ata run marketdata``."""
    run_service(MarketDataService)
