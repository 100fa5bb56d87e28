"""The message bus: typed publish, consumer loops with at-least-once delivery, dead letters.

Contract:
- :meth:`KafkaBus.publish` routes each message to ``REGISTRY.topic_for(message)``, keys it with
  :meth:`Topic.key_of`, and returns once the broker acknowledged every record (``acks=all``).
  The current OpenTelemetry context is written into the headers (W3C ``traceparent``).
- :class:`ConsumerLoop` handles the records of each partition in order: decode -> type check ->
  validate -> skip already-applied ids -> handler -> remember the id -> commit. Offsets are committed per
  partition after every record of the fetched batch was handled, never before: a crash
  redelivers what was handled but not committed, and :class:`~ata.runtime.idempotency.AppliedIds`
  drops those repeats. Commits happen before the next fetch, so a rebalance (which can only
  happen inside a fetch) never loses a handled offset.
- Per record the loop costs a few microseconds on top of decoding: a fetched batch is parsed
  up front (enough for the batch's applied-id look-up and the type check) but each model is
  validated only when its record is handled, :class:`Delivery` headers are decoded on first
  use, and handler durations are added to the ``handler_seconds`` histogram once per batch.
- A record that cannot be decoded (stage ``decode``), fails its model or is not a type its
  registry topic carries (``validate``), or whose handler raises (``handle``) is published as a
  :class:`~ata.events.DeadLetterRecorded` to ``<topic>.dlq``, counted, committed, and the loop
  goes on. A handler raising :class:`RetryableError` is retried with backoff first. Only
  ``BaseException``\\ s that are not ``Exception`` (cancellation, interpreter exit) and a failure to
  publish a dead letter stop the loop, without committing.
- Batch handling (``batch_handler``): instead of one handler call per record, the loop admits the
  records of a fetched batch as above (decode, type check, validate, skip applied ids) and hands
  all admitted ones to one call, in fetch order; it answers per record (None: handled, an
  exception: dead-lettered at stage ``handle``). Ids are remembered and offsets committed only
  after the call returned, so a batch handler that publishes must return only once its outputs
  are acknowledged. :class:`RetryableError` is not retried there: the batch handler decides.
- :class:`InMemoryBus` has the same publish API and delivers synchronously, in publish order,
  to subscribed handlers: backtests and unit tests run the same service code without a broker.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import collections
import contextlib
import functools
import logging
import random
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, NamedTuple, Protocol, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.partitioner import murmur2
from prometheus_client import Counter, Histogram

from ata.events import REGISTRY, DeadLetterRecorded, Message, Topic, TopicRegistry
from ata.events.topics import DLQ_SUFFIX
from ata.runtime import kafka, metrics, telemetry
from ata.runtime.codec import CodecError, HeaderView, encode, event_id_of, parse, to_kafka_headers, validate
from ata.runtime.config import RuntimeSettings
from ata.runtime.idempotency import AppliedIds
from ata.runtime.resilience import Backoff, retry, retry_on

__all__ = [
    "DEFAULT_HANDLER_RETRY",
    "Acks",
    "BatchHandler",
    "ConsumerLoop",
    "Delivery",
    "Handler",
    "InMemoryBus",
    "KafkaBus",
    "Published",
    "Publisher",
    "RetryableError",
    "defer_acks",
    "dlq_topic",
]

_log = logging.getLogger(__name__)

#: Retries of a handler that raised :class:`RetryableError`: 4 attempts, waits up to 0.05, 0.1, 0.2 s.
DEFAULT_HANDLER_RETRY = Backoff(initial_s=0.05, multiplier=2.0, cap_s=2.0, max_attempts=4, jitter=True)
#: Longest wait of one fetch; bounded so a quiet loop still notices a stop request promptly.
POLL_TIMEOUT_MS = 1000
MAX_ERROR_CHARS = 10_000


def dlq_topic(name: str) -> str:
    """The dead-letter sibling of topic ``name``."""
    return name + DLQ_SUFFIX


class RetryableError(Exception):
    """Raised by a handler for a transient failure (a timeout, a broker hiccup): the loop retries
    the handler with backoff before dead-lettering the message."""


_RETRYABLE = retry_on(RetryableError)


class Delivery(NamedTuple):
    """Where a consumed message came from, with its original bytes (immutable).

    A named tuple rather than a frozen dataclass: one is built for every handled record, and a
    frozen dataclass takes several times as long to construct.
    """

    topic: str
    partition: int
    offset: int
    key: str | None
    headers: Mapping[str, str]
    raw: bytes
    timestamp_ms: int = -1


class Published(NamedTuple):
    """Where a published message was stored (acknowledged); immutable, a named tuple because one
    is built per published record."""

    topic: str
    partition: int
    offset: int
    key: str | None


#: ``async def handler(message, delivery) -> None``; raise to dead-letter, RetryableError to retry first.
Handler = Callable[[Message, Delivery], Awaitable[None]]

#: ``async def handle_batch(batch) -> results``: one result per ``(message, delivery)`` of ``batch``, in its
#: order; None when the record was handled, the exception that fails it otherwise (it is dead-lettered).
BatchHandler = Callable[[Sequence[tuple[Message, Delivery]]], Awaitable[Sequence[Exception | None]]]

#: The acknowledgements of records handed to the producer (:meth:`KafkaBus.enqueue_routed`).
Acks = asyncio.Future[list["Published"]]

class _Handling:
    """Which record a handling task is in. Set once per task and batch, not per record: a
    context variable set and reset for every record costs as much as the rest of the loop's
    bookkeeping for it."""

    __slots__ = ("item", "task")

    def __init__(self) -> None:
        self.task = asyncio.current_task()
        self.item: _Item | None = None


_HANDLING: ContextVar[_Handling | None] = ContextVar("ata_handling", default=None)


def defer_acks(acks: Acks) -> bool:
    """Inside a :class:`ConsumerLoop` handler: make the loop await ``acks`` before the record counts as
    handled (its id remembered, its offset committed), instead of the handler awaiting them now.

    Returns False outside a handler, and in a task the handler started (it may outlive the
    record); the caller must then await ``acks`` itself. This is how a handler's outputs are
    pipelined: the next record is handled while they travel to the broker.
    """
    handling = _HANDLING.get()
    if handling is None or handling.item is None or handling.task is not asyncio.current_task():
        return False
    item = handling.item
    if item.acks is None:
        item.acks = []
    item.acks.append(acks)
    return True


class Publisher(Protocol):
    """What service code publishes through: :class:`KafkaBus` live, :class:`InMemoryBus` in backtests."""

    async def publish(self, messages: Iterable[Message], headers: Mapping[str, str] | None = None) -> list[Published]: ...

    async def publish_to(
        self, topic: str, message: Message, key: str | None = None, headers: Mapping[str, str] | None = None
    ) -> Published: ...


@dataclass(frozen=True, slots=True)
class _TopicMetrics:
    """A service's metric children for one topic, resolved once: ``labels()`` costs microseconds per call."""

    events_in: Counter
    events_out: Counter
    duplicates: Counter
    handler_seconds: Histogram


def _observe_all(histogram: Histogram, amounts: Sequence[float]) -> None:
    """``histogram.observe(amount)`` for every amount, taking each touched bucket's lock once.

    ``observe`` takes two locks and walks the bucket list per call, a good share of the loop's
    own cost per record. prometheus_client has no bulk form, so this adds to its ``_sum`` and
    ``_buckets`` (per-bucket counts, made cumulative on exposition) the way ``observe`` does;
    a test compares the exposition with per-call ``observe``.
    """
    bounds = histogram._upper_bounds
    counts = [0] * len(bounds)
    for amount in amounts:
        counts[bisect.bisect_left(bounds, amount)] += 1  # the first bucket with amount <= bound, as observe
    histogram._sum.inc(sum(amounts))
    for bucket, count in zip(histogram._buckets, counts, strict=True):
        if count:
            bucket.inc(count)


@functools.cache
def _topic_metrics(service: str, topic: str) -> _TopicMetrics:
    return _TopicMetrics(
        events_in=metrics.EVENTS_IN.labels(service=service, topic=topic),
        events_out=metrics.EVENTS_OUT.labels(service=service, topic=topic),
        duplicates=metrics.DUPLICATES_SKIPPED.labels(service=service, topic=topic),
        handler_seconds=metrics.HANDLER_SECONDS.labels(service=service, topic=topic),
    )


def _declared(registry: TopicRegistry, name: str) -> Topic | None:
    """The registry's declaration of topic ``name``; None for a topic outside the registry (tests, sandboxes)."""
    try:
        return registry.get(name)
    except KeyError:
        return None


def _route(registry: TopicRegistry, message: Message) -> tuple[str, str]:
    topic = registry.topic_for(message)
    return topic.name, topic.key_of(message)


class KafkaBus:
    """Publishing over Kafka for one service instance; also the factory of its consumer loops.

    ``service`` names the metrics' ``service`` label and, with the instance id, the ``source``
    of messages the bus itself creates (dead letters).
    """

    def __init__(self, settings: RuntimeSettings, *, service: str = "ata", registry: TopicRegistry = REGISTRY) -> None:
        self.settings = settings
        self.service = service
        self.registry = registry
        self._producer: AIOKafkaProducer | None = None
        self._routes: dict[type[Message], Topic] = {}  # the registry routes by type only

    @property
    def source(self) -> str:
        return f"{self.service}/{self.settings.instance_id}"

    async def start(self) -> None:
        if self._producer is not None:
            return
        producer = kafka.producer(self.settings, client_id=f"{self.service}-{self.settings.instance_id}")
        await producer.start()
        self._producer = producer

    async def stop(self) -> None:
        """Flush and close the producer (pending sends are delivered first)."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    def _require_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("KafkaBus is not started")
        return self._producer

    @staticmethod
    def _headers(headers: Mapping[str, str] | None) -> list[tuple[str, bytes]] | None:
        return to_kafka_headers(telemetry.inject_headers(dict(headers) if headers else None))

    async def _enqueue(self, records: Sequence[tuple[str, bytes, str | None]], headers: Mapping[str, str] | None) -> Acks:
        """Hand ``records`` to the producer in order (they share batches) and return their acknowledgements."""
        producer = self._require_producer()
        kafka_headers = self._headers(headers)
        futures = [
            await producer.send(topic, value, key=None if key is None else key.encode(), headers=kafka_headers)
            for topic, value, key in records
        ]
        return asyncio.ensure_future(self._acknowledged(records, futures))

    async def _acknowledged(self, records: Sequence[tuple[str, bytes, str | None]], futures: list[Any]) -> list[Published]:
        acks = await asyncio.gather(*futures)
        published = [Published(topic, ack.partition, ack.offset, key) for (topic, _, key), ack in zip(records, acks, strict=True)]
        counts = collections.Counter(topic for topic, _, _ in records)  # one metric update per topic, not per record
        for topic, count in counts.items():
            _topic_metrics(self.service, topic).events_out.inc(count)
        return published

    async def _send(self, records: Sequence[tuple[str, bytes, str | None]], headers: Mapping[str, str] | None) -> list[Published]:
        return await (await self._enqueue(records, headers))

    def _registry_records(self, messages: Iterable[Message]) -> list[tuple[str, bytes, str | None]]:
        records: list[tuple[str, bytes, str | None]] = []
        for message in messages:
            topic = self._routes.get(type(message))
            if topic is None:
                topic = self._routes[type(message)] = self.registry.topic_for(message)
            records.append((topic.name, encode(message), topic.key_of(message)))
        return records

    async def publish(self, messages: Iterable[Message], headers: Mapping[str, str] | None = None) -> list[Published]:
        """Publish each message to its registry topic, keyed by the topic's key; return once all are acknowledged."""
        records = self._registry_records(messages)
        return await self._send(records, headers) if records else []

    async def publish_routed(
        self, routed: Iterable[tuple[str, Message, str | None]], headers: Mapping[str, str] | None = None
    ) -> list[Published]:
        """Publish ``(topic, message, key)`` triples in order and await all acknowledgements together.

        Records are handed to the producer in the given order, so per partition they are stored
        in that order (one producer keeps one request in flight per broker).
        """
        return await (await self.enqueue_routed(routed, headers))

    async def enqueue_routed(
        self, routed: Iterable[tuple[str, Message, str | None]], headers: Mapping[str, str] | None = None
    ) -> Acks:
        """Like :meth:`publish_routed` but without waiting: returns the future of the acknowledgements.

        Whoever gets the future must await it (or hand it to :func:`defer_acks`): a failed
        acknowledgement surfaces only there. Records are in the producer, in order, on return.
        """
        records = [(topic, encode(message), key) for topic, message, key in routed]
        if not records:
            done: Acks = asyncio.get_running_loop().create_future()
            done.set_result([])
            return done
        return await self._enqueue(records, headers)

    async def publish_to(
        self, topic: str, message: Message, key: str | None = None, headers: Mapping[str, str] | None = None
    ) -> Published:
        """Publish one message to an explicit topic (``key`` None: no key, any partition); await the acknowledgement."""
        (published,) = await self._send([(topic, encode(message), key)], headers)
        return published

    async def publish_raw(
        self, topic: str, value: bytes, key: str | None = None, headers: Mapping[str, str] | None = None
    ) -> Published:
        """Publish bytes as they are (re-publishing journaled records, feeding foreign producers' data)."""
        (published,) = await self._send([(topic, value, key)], headers)
        return published

    def consumer_loop(self, group_id: str, topics: Sequence[str], handler: Handler, **options: Any) -> ConsumerLoop:
        """Shorthand for ``ConsumerLoop(self, group_id, topics, handler, **options)``."""
        return ConsumerLoop(self, group_id, topics, handler, **options)


class _Remembering:
    """Writes applied ids to the group's set as records complete: ids that complete while a write is
    in flight go together in the next one, so the store sees few round trips yet little delay."""

    def __init__(self, applied: AppliedIds | None) -> None:
        self._applied = applied
        self._buffer: list[uuid.UUID] = []
        self._writer: asyncio.Task[None] | None = None

    def add(self, event_id: uuid.UUID) -> None:
        self._buffer.append(event_id)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        while self._buffer and self._applied is not None:
            ids, self._buffer = self._buffer, []
            await self._applied.add_many(ids)

    async def flush(self) -> None:
        """Return once every id added so far is written (store failures are counted by the set, not raised)."""
        writer = self._writer
        if writer is not None:
            await asyncio.shield(writer)
        await self._write()


#: The headers of a record that has none (shared: most records of a service without tracing).
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


def _delivery(record: ConsumerRecord) -> Delivery:
    key, headers = record.key, record.headers
    return Delivery._make((  # _make builds the tuple in C; Delivery(...) goes through a Python __new__
        record.topic,
        record.partition,
        record.offset,
        None if key is None else key.decode("utf-8", "replace"),
        HeaderView(headers) if headers else _NO_HEADERS,
        record.value or b"",
        record.timestamp if record.timestamp is not None else -1,
    ))


@dataclass(slots=True)
class _Item:
    """One fetched record on its way through the loop.

    Its :class:`Delivery` and message are built when it is handled and dropped after: what stays
    alive for the whole batch is only this and the parsed JSON object.
    """

    tp: TopicPartition
    record: ConsumerRecord
    cls: type[Message] | None = None
    data: dict[str, Any] | None = None  # parsed, validated into ``cls`` when handled
    event_id: uuid.UUID | None = None  # as read for the batch's applied-id look-up
    failure: tuple[str, str] | None = None  # (stage, reason) when it cannot reach the handler
    processed: bool = False  # taken up; a batch is committed only after every taken-up record completed
    applied: bool = False  # handled successfully: its id is remembered once its outputs are acknowledged
    acks: list[Acks] | None = None


@dataclass(slots=True)
class _Batch:
    """What the handling of one fetched batch shares across its records."""

    applied: set[int]  # ids (as ints: hashed in C) the group already applied, and those handled in this batch
    handler_seconds: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def observe(self, service: str) -> None:
        for topic, seconds in self.handler_seconds.items():
            _observe_all(_topic_metrics(service, topic).handler_seconds, seconds)
        self.handler_seconds.clear()


def _committable(items: list[_Item]) -> dict[TopicPartition, int]:
    """Per partition, the offset after the longest run of processed records from the batch's start.

    Records processed after an unprocessed one (a stop in the middle of a batch handled by key)
    are not covered: they are redelivered, and their remembered ids make the repeat a no-op.
    """
    offsets: dict[TopicPartition, int] = {}
    stopped: set[TopicPartition] = set()  # partitions that reached an unprocessed record
    for item in items:  # per partition in offset order
        if item.tp in stopped:
            continue
        if item.processed:
            offsets[item.tp] = item.record.offset + 1
        else:
            stopped.add(item.tp)
    return offsets


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type information
    def __init__(self, loop: ConsumerLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self._loop._forget(revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._loop.assignments += 1
        self._loop._assigned.set()


class ConsumerLoop:
    """One consumer-group member handling ``topics`` with ``handler`` (see the module contract).

    ``applied``: the group's applied-id set; without one, redeliveries reach the handler again.
    ``retry_backoff``: schedule for :class:`RetryableError`.
    ``concurrency``: how many distinct keys of a fetched batch are handled at once. 1 (the
    default) handles the batch strictly in order. Above 1, the records of each (partition, key)
    are still handled one after another in offset order, but different keys overlap: for
    handlers that wait on I/O (a broker call) and whose effects are independent per key.
    ``batch_handler``: when given, each fetched batch's admitted records go to it in one call
    (see the module contract) and ``handler`` is not called; ``concurrency`` does not apply.
    ``assignments`` counts the partition assignments this member received (a rebalance adds one).
    """

    def __init__(
        self,
        bus: KafkaBus,
        group_id: str,
        topics: Sequence[str],
        handler: Handler,
        *,
        applied: AppliedIds | None = None,
        retry_backoff: Backoff = DEFAULT_HANDLER_RETRY,
        concurrency: int = 1,
        batch_handler: BatchHandler | None = None,
    ) -> None:
        if not topics:
            raise ValueError("a consumer loop needs at least one topic")
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.bus = bus
        self.group_id = group_id
        self.topics = tuple(topics)
        self.handler = handler
        self.applied = applied
        self.retry_backoff = retry_backoff
        self.concurrency = concurrency
        self.batch_handler = batch_handler
        self.assignments = 0
        self._remembering = _Remembering(applied)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._polling = False
        self._assigned = asyncio.Event()
        self._positions: dict[TopicPartition, int] = {}
        self._lags: dict[TopicPartition, int] = {}
        self._specs: dict[str, Topic | None] = {}
        self._rng = random.Random()  # one per loop: seeding a Random per message costs more than handling it

    @property
    def service(self) -> str:
        return self.bus.service

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and start consuming in a background task (partitions are assigned shortly after)."""
        if self._task is not None:
            raise RuntimeError("consumer loop already started")
        consumer = kafka.consumer(self.bus.settings, self.group_id, client_id=f"{self.service}-{self.bus.settings.instance_id}")
        consumer.subscribe(list(self.topics), listener=_Rebalance(self))
        await consumer.start()
        self._consumer = consumer
        self._stopping = False
        self._task = asyncio.create_task(self._run(consumer), name=f"consume:{self.group_id}")

    async def wait_assigned(self, timeout_s: float) -> None:
        """Wait until the group gave this member its partitions; ``TimeoutError`` after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            await self._assigned.wait()

    @property
    def assigned(self) -> bool:
        return self._assigned.is_set()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def wait(self) -> None:
        """Wait until the loop ends; re-raises what stopped it (nothing after a clean :meth:`stop`)."""
        if self._task is not None:
            await self._task

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the message in hand, commit what was handled, leave the group.

        Re-raises the exception that had already stopped the loop, if any, after closing.
        """
        task, consumer = self._task, self._consumer
        self._stopping = True
        failure: BaseException | None = None
        if task is not None:
            if self._polling:
                task.cancel()  # nothing is handled but uncommitted while waiting for a fetch
            try:
                async with asyncio.timeout(timeout_s):
                    await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise
            except TimeoutError:
                _log.warning("consumer loop %s did not finish its message within %.1fs; abandoning it", self.group_id, timeout_s)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            except BaseException as exc:  # the loop had crashed; close first, report after
                failure = exc
        self._task = self._consumer = None
        self._assigned.clear()
        if consumer is not None:
            await consumer.stop()
        self._forget(list(self._positions))
        if failure is not None:
            raise failure

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    # -- lag ---------------------------------------------------------------------------------

    @property
    def lag(self) -> int:
        """Records behind the high watermarks over the assigned partitions fetched so far."""
        return sum(self._lags.values())

    def _forget(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._positions.pop(tp, None)
            self._lags.pop(tp, None)
            with contextlib.suppress(KeyError):
                metrics.CONSUMER_LAG.remove(self.service, tp.topic, str(tp.partition))

    def _update_lag(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        highwater = consumer.highwater(tp)
        position = self._positions.get(tp)
        if highwater is None or position is None:
            return
        lag = max(0, int(highwater) - position)
        self._lags[tp] = lag
        metrics.CONSUMER_LAG.labels(service=self.service, topic=tp.topic, partition=str(tp.partition)).set(lag)

    # -- the loop ----------------------------------------------------------------------------

    async def _fetch(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, list[ConsumerRecord]]:
        self._polling = True
        try:
            batches: dict[TopicPartition, list[ConsumerRecord]] = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
            return batches
        finally:
            self._polling = False

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while not self._stopping:
            batches = await self._fetch(consumer)
            if not batches:
                continue
            items = self._prepare(batches)
            try:
                if self.batch_handler is not None:
                    await self._handle_batch(self.batch_handler, items)
                elif self.concurrency == 1:
                    await self._handle_in_order(items)
                else:
                    await self._handle_by_key(items)
                await self._settle(items)
            finally:
                # Also when the loop dies: what was handled and acknowledged is remembered, as the contract says.
                await self._remembering.flush()
            offsets = _committable(items)
            if offsets:
                await consumer.commit(offsets)  # one request for every partition of the batch
                for tp, offset in offsets.items():
                    self._positions[tp] = offset
                    self._update_lag(consumer, tp)

    def _spec(self, topic: str) -> Topic | None:
        if topic not in self._specs:
            self._specs[topic] = _declared(self.bus.registry, topic)
        return self._specs[topic]

    def _prepare(self, batches: Mapping[TopicPartition, list[ConsumerRecord]]) -> list[_Item]:
        """Parse and type-check every record of a fetched batch, in fetch order (per partition: offset order).

        Models are validated later, one at a time, by :meth:`_process`.
        """
        items = []
        for tp, records in batches.items():
            _topic_metrics(self.service, tp.topic).events_in.inc(len(records))
            spec = self._spec(tp.topic)
            for record in records:
                item = _Item(tp, record)
                try:
                    item.cls, item.data = parse(record.value or b"")
                except CodecError as exc:
                    item.failure = (exc.stage, exc.reason)
                else:
                    if spec is not None and not issubclass(item.cls, spec.value_types):
                        item.failure = ("validate", f"{item.cls.__name__} is not carried by {tp.topic}")
                items.append(item)
        return items

    async def _handle_in_order(self, items: list[_Item]) -> None:
        batch = _Batch({event_id.int for event_id in await self._already_applied(items)})
        handling = _Handling()
        token = _HANDLING.set(handling)
        try:
            for item in items:
                if self._stopping:
                    return
                await self._process(item, batch, handling)
        finally:
            _HANDLING.reset(token)
            batch.observe(self.service)

    async def _handle_by_key(self, items: list[_Item]) -> None:
        """Up to ``concurrency`` keys at once; the records of one key (per partition) strictly in offset order."""
        batch = _Batch({event_id.int for event_id in await self._already_applied(items)})
        lanes: dict[tuple[TopicPartition, bytes | None], list[_Item]] = {}
        for item in items:
            lanes.setdefault((item.tp, item.record.key), []).append(item)
        queue = deque(lanes.values())

        async def worker() -> None:
            handling = _Handling()  # the worker's own: its context is a copy of the loop task's
            _HANDLING.set(handling)
            while queue and not self._stopping:
                for item in queue.popleft():
                    if self._stopping:
                        return
                    await self._process(item, batch, handling)

        workers = [asyncio.create_task(worker()) for _ in range(min(self.concurrency, len(queue)))]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        finally:
            batch.observe(self.service)

    async def _handle_batch(self, handler: BatchHandler, items: list[_Item]) -> None:
        """The admitted records of the batch through one ``handler`` call (see the module contract)."""
        batch = _Batch({event_id.int for event_id in await self._already_applied(items)})
        if self._stopping:
            return  # nothing taken up: nothing committed, all redelivered
        admitted: list[tuple[_Item, Message, Delivery]] = []
        for item in items:
            item.processed = True
            message = await self._admit(item, batch)
            if message is not None:
                admitted.append((item, message, _delivery(item.record)))
        if not admitted:
            return
        started = time.perf_counter()
        try:
            results: Sequence[Exception | None] = await handler([(message, delivery) for _, message, delivery in admitted])
        except Exception as exc:  # the whole call failed: so did every record in it
            results = [exc] * len(admitted)
        if len(results) != len(admitted):
            raise ValueError(f"the batch handler answered {len(results)} results for {len(admitted)} records")
        share = (time.perf_counter() - started) / len(admitted)  # histogram sum = time in the handler
        for (item, message, delivery), result in zip(admitted, results, strict=True):
            batch.handler_seconds[delivery.topic].append(share)
            if result is None:
                item.applied = True
                if self.applied is not None:
                    self._remembering.add(message.event_id)
            else:
                await self._dead_letter(delivery, "handle", f"{type(result).__name__}: {result}")
        batch.observe(self.service)

    async def _already_applied(self, items: list[_Item]) -> set[uuid.UUID]:
        """The ids of the batch the group already applied: one look-up for the whole batch."""
        if self.applied is None:
            return set()
        for item in items:
            if item.data is not None:
                item.event_id = event_id_of(item.data)
        return await self.applied.contains_many([item.event_id for item in items if item.event_id is not None])

    async def _applied_before(self, event_id: uuid.UUID) -> bool:
        """Whether the group applied ``event_id``, which the batch look-up did not ask about.

        Only for a record whose model reads another id than the look-up did (or one it could not read).
        """
        return self.applied is not None and bool(await self.applied.contains_many([event_id]))

    def _validated(self, item: _Item) -> Message | None:
        """The record's message; None after recording why it has none in ``item.failure``."""
        cls, data = item.cls, item.data
        item.data = None  # not needed after this: let the batch hold as little as possible
        if item.failure is not None or cls is None or data is None:
            return None
        try:
            return validate(cls, data)
        except CodecError as exc:
            item.failure = (exc.stage, exc.reason)
            return None

    async def _admit(self, item: _Item, batch: _Batch) -> Message | None:
        """The record's message if it goes to the handler; None after dead-lettering it (it has no
        valid message) or counting it as a duplicate (its id was applied before or earlier in the batch)."""
        message = self._validated(item)
        if message is None:
            stage, reason = item.failure or ("decode", "no message")
            await self._dead_letter(_delivery(item.record), stage, reason)
            return None
        event_id = message.event_id
        looked_up = self.applied is None or event_id == item.event_id
        if event_id.int in batch.applied or (not looked_up and await self._applied_before(event_id)):
            _topic_metrics(self.service, item.tp.topic).duplicates.inc()
            return None
        batch.applied.add(event_id.int)  # a repeat later in this batch is a duplicate too
        return message

    async def _process(self, item: _Item, batch: _Batch, handling: _Handling) -> None:
        """Handle one record; its outputs' acknowledgements are collected on ``item`` for :meth:`_settle`."""
        item.processed = True
        message = await self._admit(item, batch)
        if message is None:
            return
        event_id = message.event_id
        delivery = _delivery(item.record)
        handling.item = item
        started = time.perf_counter()
        try:
            try:
                await self.handler(message, delivery)
            except RetryableError as exc:
                await self._retry(message, delivery, exc)
            item.applied = True
            if self.applied is not None:
                self._remember_when_acknowledged(event_id, item.acks)
        except Exception as exc:
            # Outputs published before the failure stay on item.acks: they still have to be acknowledged.
            batch.applied.discard(event_id.int)
            await self._dead_letter(delivery, "handle", f"{type(exc).__name__}: {exc}")
        finally:
            handling.item = None
            batch.handler_seconds[delivery.topic].append(time.perf_counter() - started)

    async def _retry(self, message: Message, delivery: Delivery, first: RetryableError) -> None:
        """Retry a handler whose first attempt raised ``first``, on :attr:`retry_backoff` (attempts counted from it)."""
        failed: list[RetryableError] = [first]

        async def attempt() -> None:
            if failed:
                raise failed.pop()  # the attempt that already failed, so retry() counts and waits from it
            await self.handler(message, delivery)

        await retry(
            attempt,
            backoff=self.retry_backoff,
            retryable=_RETRYABLE,
            rng=self._rng,
            on_retry=lambda attempt, exc, delay: _log.warning(
                "retrying %s@%d:%d after attempt %d (%s) in %.2fs",
                delivery.topic, delivery.partition, delivery.offset, attempt, exc, delay,
            ),
        )

    def _remember_when_acknowledged(self, event_id: uuid.UUID, acks: list[Acks] | None) -> None:
        """Remember the record's id as soon as all its outputs are acknowledged (at once if it deferred none)."""
        if not acks:
            self._remembering.add(event_id)
            return

        def on_ack(_: Acks) -> None:
            if all(ack.done() for ack in acks) and all(not ack.cancelled() and ack.exception() is None for ack in acks):
                self._remembering.add(event_id)

        for ack in acks:
            ack.add_done_callback(on_ack)

    async def _settle(self, items: list[_Item]) -> None:
        """Await every acknowledgement of the batch (the applied ids are remembered as they arrive).

        A record whose outputs were refused by the broker is dead-lettered (as a failing handler
        would be); its id is not remembered, so a redelivery is handled again.
        """
        pending = [(item, ack) for item in items if item.acks for ack in item.acks]
        if pending:
            results = await asyncio.gather(*(ack for _, ack in pending), return_exceptions=True)
            for (item, _), result in zip(pending, results, strict=True):
                if isinstance(result, BaseException) and not isinstance(result, Exception):
                    raise result
                if isinstance(result, Exception) and item.applied:
                    item.applied = False
                    reason = f"publishing outputs failed: {type(result).__name__}: {result}"
                    await self._dead_letter(_delivery(item.record), "handle", reason)

    async def _dead_letter(self, delivery: Delivery, stage: str, error: str) -> None:
        """Publish the failed record to ``<topic>.dlq``; a failure here propagates and stops the loop uncommitted."""
        now = time.time_ns()
        dead = DeadLetterRecorded.origin(
            natural_key=(self.group_id, delivery.topic, delivery.partition, delivery.offset),
            ts_event=delivery.timestamp_ms * 1_000_000 if delivery.timestamp_ms >= 0 else now,
            ts_init=now,
            source=self.bus.source,
            original_topic=delivery.topic,
            original_partition=delivery.partition,
            original_offset=delivery.offset,
            original_key=delivery.key,
            original_value_b64=base64.b64encode(delivery.raw).decode("ascii"),
            original_headers=dict(delivery.headers),
            stage=stage,
            error=error[:MAX_ERROR_CHARS],
            consumer_group=self.group_id,
        )
        await self.bus.publish_to(dlq_topic(delivery.topic), dead, key=delivery.key)
        metrics.DEAD_LETTERS.labels(service=self.service, topic=delivery.topic, stage=stage).inc()
        _log.warning(
            "dead-lettered %s@%d:%d at stage %s: %s",
            delivery.topic, delivery.partition, delivery.offset, stage, error[:500],
            extra={"topic": delivery.topic, "stage": stage, "consumer_group": self.group_id},
        )


@dataclass
class _Subscription:
    topics: frozenset[str]
    handler: Handler


@dataclass
class InMemoryBus:
    """Broker-less bus with :class:`KafkaBus`'s publish API, for backtests and unit tests.

    Delivery is synchronous and deterministic: ``publish`` enqueues, and the outermost
    ``publish`` delivers the queue in FIFO order to every subscriber of each topic before it
    returns. A handler that publishes therefore does not re-enter: its outputs are delivered
    after it returns, after anything published before them. Partitions are computed with
    Kafka's murmur2 over the registry's partition counts, offsets count per partition.
    A handler's exception propagates out of the outermost ``publish`` (a backtest fails loudly)
    and discards what was still queued. ``history`` keeps every published message per topic.
    """

    registry: TopicRegistry = REGISTRY
    history: dict[str, list[Message]] = field(default_factory=dict)
    _subscriptions: list[_Subscription] = field(default_factory=list)
    _queue: deque[tuple[Message, Delivery]] = field(default_factory=deque)
    _offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    _partitions: dict[str, int] = field(default_factory=dict)
    _delivering: bool = False

    def subscribe(self, topics: str | Iterable[str], handler: Handler) -> None:
        """Deliver every later message on ``topics`` to ``handler``."""
        names = frozenset([topics] if isinstance(topics, str) else topics)
        self._subscriptions.append(_Subscription(names, handler))

    def _partition(self, topic: str, key: str | None) -> int:
        partitions = self._partitions.get(topic)
        if partitions is None:
            declared = _declared(self.registry, topic)
            partitions = self._partitions[topic] = declared.partitions if declared is not None else 1
        if key is None or partitions == 1:
            return 0
        return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions

    def _enqueue(self, topic: str, message: Message, key: str | None, headers: Mapping[str, str] | None) -> Published:
        partition = self._partition(topic, key)
        offset = self._offsets.get((topic, partition), 0)
        self._offsets[(topic, partition)] = offset + 1
        self.history.setdefault(topic, []).append(message)
        delivery = Delivery(topic, partition, offset, key, dict(headers or {}), encode(message))
        self._queue.append((message, delivery))
        return Published(topic=topic, partition=partition, offset=offset, key=key)

    async def _drain(self) -> None:
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._queue:
                message, delivery = self._queue.popleft()
                for subscription in self._subscriptions:
                    if delivery.topic in subscription.topics:
                        await subscription.handler(message, delivery)
        except BaseException:
            self._queue.clear()
            raise
        finally:
            self._delivering = False

    async def publish(self, messages: Iterable[Message], headers: Mapping[str, str] | None = None) -> list[Published]:
        published = []
        for message in messages:
            topic, key = _route(self.registry, message)
            published.append(self._enqueue(topic, message, key, headers))
        await self._drain()
        return published

    async def publish_to(
        self, topic: str, message: Message, key: str | None = None, headers: Mapping[str, str] | None = None
    ) -> Published:
        published = self._enqueue(topic, message, key, headers)
        await self._drain()
        return published

    def messages(self, topic: str) -> list[Message]:
        """Everything published to ``topic`` so far, in publish order."""
        return list(self.history.get(topic, []))
