"""The service base: how every platform service lives, from start to a clean stop.

A service subclasses :class:`Service`, sets ``name`` and ``subscriptions``, implements
:meth:`Service.handle` (and optionally :meth:`~Service.on_start`, :meth:`~Service.on_stop`,
:meth:`~Service.background`, :meth:`~Service.extra_readiness`), and its ``main()`` calls
:func:`run_service`.

Lifecycle contract:

- **start**: HTTP endpoints up (``/healthz`` answers at once, ``/readyz`` says "starting"),
  producer connected, :meth:`on_start` (restore state), consumer group joined, heartbeats
  and :meth:`background` started.
- **ready**: started, the consumer has its partitions (when subscribed), and
  :meth:`extra_readiness` holds. Exported as ``ata_service_ready``.
- **drain** (SIGTERM/SIGINT, :meth:`request_stop`, or a crashed consumer or background task):
  not ready any more; the background task is cancelled; the consumer finishes the message in
  hand, commits what was handled and leaves the group; a final ``draining`` heartbeat;
  :meth:`on_stop`; the producer is flushed.
- **stop**: connections and endpoints closed, within :attr:`stop_timeout_s` (< 10 s).

Per subscribed message (consumption mechanics in :class:`~ata.runtime.bus.ConsumerLoop`):
decode and type-check, skip event ids the group already applied, open a CONSUMER span
parented by the message's trace headers, call :meth:`handle`, publish its outputs (they carry
the span's trace context), await their acknowledgements, remember the id, commit. A handler
exception (or outputs the broker refused) dead-letters the message to ``<topic>.dlq`` and the
service goes on.

Pipelining (:attr:`Service.pipeline_outputs`, off by default): the next message is handled while
the outputs travel; the acknowledgements of a whole fetched batch are awaited before its ids are
remembered and its offsets committed, so a crash still redelivers whatever was not acknowledged.
A crash can then lose the unsent outputs of several handled messages rather than of one, so
turn it on only where handling a redelivered message publishes its outputs again (outputs are a
function of the message and of state that does not already record its effect). A handler that
drops a redelivery because its own store says "done" (write-ahead state) must keep it off.

Batch handling (optional: a service that overrides :meth:`Service.handle_batch`): the admitted
messages of a whole fetched batch go to one ``handle_batch`` call instead of one ``handle`` call
each. The batch has one CONSUMER span, linked to the trace context each message carries; all
outputs are handed to the producer in one call, in message order, and their acknowledgements
awaited once; then the batch's ids are remembered and its offsets committed (so a crash still
redelivers whatever was not acknowledged). A message whose result is an exception, or whose
outputs the broker refused, is dead-lettered. ``concurrency`` and ``pipeline_outputs`` do not
apply: ``handle_batch`` decides what it overlaps, and must keep messages of one key in order.
For services whose per-message work shares round trips (a store write, a broker request) and
whose per-message runtime overhead (span, produce call, acknowledgement wait) is a large share.

Concurrency: with :attr:`Service.concurrency` above 1, up to that many distinct keys of a
fetched batch are handled at once; messages with the same key (per partition) stay strictly
sequential, in offset order. Only for handlers whose effects per key are independent of other
keys' (e.g. one order per client order id) and that wait on I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Iterable, Sequence
from enum import StrEnum
from typing import ClassVar, NoReturn, Self

from opentelemetry import trace

from ata.events import REGISTRY, HeartbeatEmitted, Message, ServiceStatus, Topic, TopicRegistry
from ata.runtime import metrics, telemetry
from ata.runtime.batching import pause_after_batch_s
from ata.runtime.bus import Acks, ConsumerLoop, Delivery, KafkaBus, defer_acks
from ata.runtime.config import DEFAULT_LOG_LEVEL, ConfigError, RuntimeSettings, load_settings
from ata.runtime.heartbeat import HEARTBEAT_TOPIC, HeartbeatEmitter, HeartbeatStats
from ata.runtime.http import HealthServer
from ata.runtime.idempotency import AppliedIds

__all__ = ["Phase", "Service", "ServiceFailedError", "run_service"]

log = logging.getLogger(__name__)

#: Heartbeat period unless a subclass or the constructor says otherwise.
DEFAULT_HEARTBEAT_INTERVAL_S = 5.0
#: The final heartbeat and each close step get at most this long during a drain.
CLOSE_STEP_TIMEOUT_S = 2.0
#: How long a cancelled task may run on before it is cancelled again (its cancellation was swallowed): longer than
#: any drain a task runs after its cancellation on purpose (the journal gives its batch in hand 5 s).
RECANCEL_AFTER_S = 6.0


class Phase(StrEnum):
    """Where a service instance is in its lifecycle."""

    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    STOPPED = "stopped"


class ServiceFailedError(RuntimeError):
    """The consumer loop or the background task of a running service failed; the service drained and stopped."""


class Service:
    """Base class of every service (see the module contract).

    Class attributes a subclass sets: ``name`` (also the consumer group and the metrics'
    ``service`` label), ``subscriptions`` (topic names). Optional: ``registry`` (topics used
    for routing and type checks), ``heartbeat_interval_s`` (``ATA_SERVICE_HEARTBEAT_INTERVAL_MS``
    overrides it), ``stop_timeout_s``, ``concurrency`` (keys handled at once) and ``pipeline_outputs``
    (see the module contract for both).
    """

    name: ClassVar[str]
    subscriptions: ClassVar[tuple[str, ...]] = ()
    registry: ClassVar[TopicRegistry] = REGISTRY
    heartbeat_interval_s: ClassVar[float] = DEFAULT_HEARTBEAT_INTERVAL_S
    stop_timeout_s: ClassVar[float] = 8.0
    concurrency: ClassVar[int] = 1
    pipeline_outputs: ClassVar[bool] = False

    def __init__(
        self,
        settings: RuntimeSettings,
        *,
        group_id: str | None = None,
        heartbeat_topic: str = HEARTBEAT_TOPIC,
        applied: AppliedIds | None = None,
    ) -> None:
        """``group_id`` defaults to :attr:`name` (replicas share the group); ``applied`` defaults to
        a Redis-backed applied-id set at ``settings.redis_url`` (it falls back to memory if Redis fails)."""
        if not getattr(type(self), "name", ""):
            raise TypeError(f"{type(self).__name__} must set the class attribute 'name'")
        self.settings = settings
        self.instance = settings.instance_id
        self.source = f"{self.name}/{self.instance}"
        self.group_id = group_id or self.name
        self.heartbeat_topic = heartbeat_topic
        self.log = logging.getLogger(f"ata.{self.name}")
        self.bus = KafkaBus(settings, service=self.name, registry=self.registry)
        self._applied = applied
        self._phase = Phase.CREATED
        self._stop_requested = asyncio.Event()
        self._http = HealthServer(settings.http_host, settings.http_port, readiness=self.ready_reason, liveness=self.live_reason)
        self._consumer: ConsumerLoop | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._failure: BaseException | None = None
        interval_ms = settings.service_heartbeat_interval_ms
        self._heartbeat = HeartbeatEmitter(
            self.name,
            self.instance,
            interval_ms / 1000 if interval_ms is not None else self.heartbeat_interval_s,
            stats=self._heartbeat_stats,
            send=self._send_heartbeat,
        )
        self._events_in = 0
        self._events_out = 0
        self._type_routes: dict[type[Message], Topic | None] = {}
        self._topic_specs: dict[str, Topic | None] = {}

    @classmethod
    def from_env(cls) -> Self:
        """The service configured from the environment; override to load the service's own settings too."""
        return cls(load_settings(RuntimeSettings))

    # -- what a service implements ----------------------------------------------------------

    async def handle(self, message: Message, delivery: Delivery) -> Sequence[Message]:
        """React to one subscribed message; return the outputs to publish (the base publishes them)."""
        raise NotImplementedError(f"{type(self).__name__} subscribes to {delivery.topic} but does not implement handle()")

    async def on_start(self) -> None:
        """Runs after the producer connected, before consuming starts (restore state here)."""

    async def on_stop(self) -> None:
        """Runs after consuming stopped and was committed, before the producer is flushed and closed."""

    async def background(self) -> None:
        """A long-running producer loop (a market data source), cancelled on drain.

        Publish with :meth:`publish`. Returning ends only this task; raising stops the service.
        """

    def extra_readiness(self) -> bool:
        """Service-specific readiness (e.g. caught up, reconciled with the broker); ``True`` by default."""
        return True

    def heartbeat_details(self) -> dict[str, str | float | int | bool]:
        """Service-specific entries for each heartbeat's ``details`` (source health, progress); none by default.

        Called on every heartbeat tick; keep it cheap. Keys the base sets (``phase``, ``http_port``) win.
        """
        return {}

    async def handle_batch(self, batch: Sequence[tuple[Message, Delivery]]) -> Sequence[Sequence[Message] | Exception]:
        """React to the admitted messages of a fetched batch at once (optional; see "Batch handling" in the
        module contract). Overriding it makes the service receive batches instead of :meth:`handle` calls.

        ``batch`` is in fetch order (per partition, offset order). Return one result per message, in the
        same order: its outputs (published by the base, in this order), or the exception that failed it
        (that message is dead-lettered and the others go on). Messages of one key must be handled in order.

        The default hands each message to :meth:`handle` in turn (the base consumes per message unless a
        subclass overrides this, see :attr:`handles_batches`).
        """
        results: list[Sequence[Message] | Exception] = []
        for message, delivery in batch:
            try:
                results.append(await self.handle(message, delivery))
            except Exception as exc:  # one bad message must not stop the others
                results.append(exc)
        return results

    def batch_interval_s(self) -> float:
        """Batch pacing for a service that handles batches: after a batch that was not full, its outputs
        acknowledged, the consumer waits until this long after the batch began, so a steady trickle shares one
        fetch, applied-id look-up, produce call, acknowledgement wait and commit per interval. For services
        whose outputs nothing waits on; 0 (the default) never pauses. Called once per batch."""
        return 0.0

    @property
    def handles_batches(self) -> bool:
        """Whether this service overrides :meth:`handle_batch` (and so consumes whole batches)."""
        return type(self).handle_batch is not Service.handle_batch

    def route(self, message: Message) -> str:
        """The topic an output is published to: the registry's topic for its type unless overridden.

        Raises ``LookupError`` for a type the registry does not route to exactly one topic.
        """
        topic = self._registry_route(message)
        if topic is None:
            raise LookupError(f"{type(message).__name__} is not carried by exactly one topic of {self.name}'s registry")
        return topic.name

    # -- helpers for subclasses ---------------------------------------------------------------

    @staticmethod
    def now_ns() -> int:
        """Wall-clock time for ``ts_init`` of outputs (cores take time from events, shells from here)."""
        return time.time_ns()

    def count_published(self, count: int) -> None:
        """Count ``count`` messages published by other means (a bulk producer) in heartbeats' ``events_out``."""
        self._events_out += count

    async def publish(self, messages: Iterable[Message]) -> None:
        """Publish ``messages`` (routed by :meth:`route`, in order) and wait for every acknowledgement.

        Inside a handled message's span the outputs join its trace; elsewhere (background
        producers) one PRODUCER span per call starts a new trace that downstream handling joins.
        """
        batch = list(messages)
        if not batch:
            return
        if trace.get_current_span().get_span_context().is_valid:
            await (await self._enqueue(batch))
            return
        with telemetry.producer_span(self.name, self.route(batch[0]), attributes={"messaging.batch.message_count": len(batch)}):
            await (await self._enqueue(batch))

    async def _enqueue(self, batch: list[Message]) -> Acks:
        """Hand ``batch`` to the producer in order (each to :meth:`route`, keyed per :meth:`_key_for`)."""
        routed = []
        for message in batch:
            topic = self.route(message)
            routed.append((topic, message, self._key_for(topic, message)))
        acks = await self.bus.enqueue_routed(routed)
        acks.add_done_callback(self._count_acknowledged)
        return acks

    def _count_acknowledged(self, acks: Acks) -> None:
        if not acks.cancelled() and acks.exception() is None:
            self._events_out += len(acks.result())

    def _registry_route(self, message: Message) -> Topic | None:
        """The registry topic of the message's type (None: not in the registry); resolved once per type."""
        kind = type(message)
        if kind not in self._type_routes:
            try:
                self._type_routes[kind] = self.registry.topic_for(message)
            except LookupError:
                self._type_routes[kind] = None
        return self._type_routes[kind]

    def _key_for(self, topic: str, message: Message) -> str | None:
        """The key declared for ``topic``, else the key of the message type's registry topic, else none."""
        if topic not in self._topic_specs:
            try:
                self._topic_specs[topic] = self.registry.get(topic)
            except KeyError:
                self._topic_specs[topic] = None
        spec = self._topic_specs[topic] or self._registry_route(message)
        return None if spec is None else spec.key_of(message)

    # -- state --------------------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def http_port(self) -> int:
        """The port ``/healthz``, ``/readyz`` and ``/metrics`` are served on (after start)."""
        return self._http.port

    @property
    def consumer(self) -> ConsumerLoop | None:
        return self._consumer

    def ready_reason(self) -> str | None:
        """``None`` when ready, otherwise why not (the ``/readyz`` body)."""
        if self._phase is not Phase.RUNNING:
            return self._phase.value
        if self._consumer is not None and not self._consumer.assigned:
            return "consumer has no partitions assigned yet"
        if not self.extra_readiness():
            return f"{self.name} is not ready (service-specific readiness)"
        return None

    @property
    def ready(self) -> bool:
        return self.ready_reason() is None

    def live_reason(self) -> str | None:
        """``None`` while alive; the failure once the consumer loop or the background task crashed."""
        return None if self._failure is None else f"failed: {self._failure!r}"

    def _status(self) -> ServiceStatus:
        if self._phase in (Phase.DRAINING, Phase.STOPPED):
            return ServiceStatus.DRAINING
        if self._phase is Phase.RUNNING:
            return ServiceStatus.READY if self.ready else ServiceStatus.DEGRADED
        return ServiceStatus.STARTING

    def _heartbeat_stats(self) -> HeartbeatStats:
        return HeartbeatStats(
            status=self._status(),
            events_in=self._events_in,
            events_out=self._events_out,
            consumer_lag=self._consumer.lag if self._consumer is not None else 0,
            details={
                **self.heartbeat_details(),
                "phase": self._phase.value,
                "http_port": self._http.port if self._phase is Phase.RUNNING else 0,
            },
        )

    async def _send_heartbeat(self, heartbeat: HeartbeatEmitted) -> None:
        await self.bus.publish_to(self.heartbeat_topic, heartbeat, key=self.name)

    # -- lifecycle ------------------------------------------------------------------------------

    async def _on_delivery(self, message: Message, delivery: Delivery) -> None:
        attributes: dict[str, str | int] = {
            "messaging.kafka.partition": delivery.partition,
            "messaging.kafka.offset": delivery.offset,
            "messaging.consumer.group.name": self.group_id,
            "messaging.message.id": str(message.event_id),
            "ata.event_type": message.event_type,
        }
        with telemetry.consumer_span(self.name, delivery.topic, delivery.headers, attributes=attributes):
            outputs = await self.handle(message, delivery)
            if outputs:
                acks = await self._enqueue(list(outputs))
                if not (self.pipeline_outputs and defer_acks(acks)):
                    await acks
        self._events_in += 1

    async def _on_batch(self, batch: Sequence[tuple[Message, Delivery]]) -> list[Exception | None]:
        """One fetched batch through :meth:`handle_batch`: one span, one produce call, one acknowledgement wait."""
        attributes: dict[str, str | int] = {"messaging.batch.message_count": len(batch),
                                            "messaging.consumer.group.name": self.group_id}
        started = time.monotonic()
        topics = sorted({delivery.topic for _, delivery in batch})
        with telemetry.consumer_batch_span(self.name, topics, [delivery.headers for _, delivery in batch], attributes=attributes):
            results = await self.handle_batch(batch)
            failures: list[Exception | None] = [result if isinstance(result, Exception) else None for result in results]
            outputs = [output for result in results if not isinstance(result, Exception) for output in result]
            if outputs:
                try:
                    await (await self._enqueue(outputs))
                except Exception as exc:  # not all acknowledged: no message with outputs may count as handled
                    failures = [failure if failure is not None or not result else exc
                                for failure, result in zip(failures, results, strict=True)]
        self._events_in += len(batch)
        pause_s = pause_after_batch_s(self.batch_interval_s(), full=len(batch) >= self.settings.kafka_max_poll_records,
                                      elapsed_s=time.monotonic() - started)
        if pause_s > 0:
            await asyncio.sleep(pause_s)
        return failures

    async def start(self) -> None:
        """Bring the service up to RUNNING (see the module contract); on failure, undo what was started."""
        if self._phase is not Phase.CREATED:
            raise RuntimeError(f"{self.name} cannot start from phase {self._phase.value}")
        self._phase = Phase.STARTING
        telemetry.tracer_provider(self.name, self.instance)
        ready_gauge = metrics.SERVICE_READY.labels(service=self.name, instance=self.instance)
        ready_gauge.set_function(lambda: 1.0 if self.ready else 0.0)
        metrics.SERVICE_START_TIME.labels(service=self.name, instance=self.instance).set(time.time())
        try:
            await self._http.start()
            await self.bus.start()
            await self.on_start()
            if self.subscriptions:
                await self._start_consuming()
        except BaseException:
            await self.stop()
            raise
        self._phase = Phase.RUNNING
        self._tasks["heartbeat"] = asyncio.create_task(self._heartbeat.run(), name=f"{self.name}:heartbeat")
        self._tasks["background"] = asyncio.create_task(self.background(), name=f"{self.name}:background")
        self.log.info("service started", extra={"http_port": self._http.port, "subscriptions": list(self.subscriptions)})

    async def _start_consuming(self) -> None:
        if self._applied is None:
            self._applied = AppliedIds.from_url(self.group_id, self.settings.redis_url)
        consumer = ConsumerLoop(
            self.bus, self.group_id, self.subscriptions, self._on_delivery, applied=self._applied, concurrency=self.concurrency,
            batch_handler=self._on_batch if self.handles_batches else None,
        )
        self._consumer = consumer
        await consumer.start()
        # Shielded: cancelling this watcher on drain must not cancel the loop's handler mid-message.
        self._tasks["consumer"] = asyncio.create_task(self._watch(consumer), name=f"{self.name}:consumer")

    @staticmethod
    async def _watch(consumer: ConsumerLoop) -> None:
        await asyncio.shield(consumer.wait())

    def request_stop(self) -> None:
        """Ask a running :meth:`run` to drain and stop (signal handlers call this)."""
        self._stop_requested.set()

    async def run(self) -> None:
        """Start, run until :meth:`request_stop` or a failure, then drain and stop.

        Raises :class:`ServiceFailedError` when the consumer loop or the background task failed.
        """
        await self.start()
        try:
            await self._until_stop_or_failure()
        finally:
            await self.stop()
        if self._failure is not None:
            raise ServiceFailedError(f"{self.name} failed: {self._failure!r}") from self._failure

    async def _until_stop_or_failure(self) -> None:
        stop_waiter = asyncio.create_task(self._stop_requested.wait(), name=f"{self.name}:stop-request")
        watched = {task for key, task in self._tasks.items() if key != "heartbeat"}
        try:
            while True:
                done, _ = await asyncio.wait({stop_waiter, *watched}, return_when=asyncio.FIRST_COMPLETED)
                if stop_waiter in done:
                    return
                for task in done:
                    watched.discard(task)
                    if not task.cancelled() and task.exception() is not None:
                        self._failure = task.exception()
                        self.log.error("%s crashed; draining", task.get_name(), exc_info=self._failure)
                        return
                    if task is self._tasks.get("consumer"):
                        self._failure = RuntimeError("consumer loop ended unexpectedly")
                        return
        finally:
            stop_waiter.cancel()

    async def stop(self) -> None:
        """Drain and stop (idempotent). Each step is bounded so the whole stop fits :attr:`stop_timeout_s`."""
        if self._phase in (Phase.DRAINING, Phase.STOPPED):
            return
        was_running = self._phase is Phase.RUNNING
        self._phase = Phase.DRAINING
        deadline = time.monotonic() + self.stop_timeout_s
        self.log.info("service draining")
        await self._cancel_task("background")
        await self._cancel_task("consumer")  # only the watcher; the loop itself is stopped below
        if self._consumer is not None:
            try:
                await self._consumer.stop(timeout_s=max(0.5, deadline - time.monotonic() - 2 * CLOSE_STEP_TIMEOUT_S))
            except Exception as exc:  # already recorded as the failure by the watcher
                self._failure = self._failure or exc
        await self._cancel_task("heartbeat")
        if was_running:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(CLOSE_STEP_TIMEOUT_S, max(0.1, deadline - time.monotonic()))):
                    await self._heartbeat.emit()
        try:
            async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                await self.on_stop()
        except Exception:
            self.log.exception("on_stop failed")
        await self._close("producer", self.bus.stop(), deadline)
        if self._applied is not None:
            await self._close("applied-id store", self._applied.close(), deadline)
        await self._close("http endpoints", self._http.stop(), deadline)
        metrics.SERVICE_READY.labels(service=self.name, instance=self.instance).set_function(lambda: 0.0)
        self._phase = Phase.STOPPED
        self.log.info("service stopped")

    async def _cancel_task(self, key: str) -> None:
        task = self._tasks.pop(key, None)
        if task is None:
            return
        task.cancel()
        # A library call the cancellation lands in may swallow it and return normally (seen: a redis-py SET in a
        # sentiment background task, which then went on reconnecting its news stream and the stop never ended):
        # cancel again until the task ends.
        while not (await asyncio.wait([task], timeout=RECANCEL_AFTER_S))[0]:
            self.log.warning("task %s ignored its cancellation; cancelling it again", task.get_name())
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            # Exceptions were already seen by the watcher (or are a cancellation side effect).
            await task

    async def _close(self, what: str, step: Awaitable[None], deadline: float) -> None:
        try:
            async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                await step
        except Exception:
            self.log.exception("closing %s failed", what)


async def _serve(service: Service) -> int:
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    signals_seen = 0

    def on_signal(signum: signal.Signals) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            log.info("received %s; draining", signum.name)
            service.request_stop()
        elif main_task is not None:
            log.warning("received %s again; stopping without draining", signum.name)
            main_task.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await service.run()
    except ServiceFailedError:
        return 1
    except asyncio.CancelledError:
        return 130
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return 0


def run_service(cls: type[Service]) -> NoReturn:
    """Run ``cls`` until SIGTERM/SIGINT and exit: 0 after a clean drain, 1 if it failed, 2 on bad configuration.

    What ``python -m ata.<name>`` calls. Settings come from the environment (:meth:`Service.from_env`);
    logs go to stderr as JSON lines at ``RuntimeSettings.log_level`` (``ATA_LOG_LEVEL``, default INFO).
    """
    try:
        service = cls.from_env()
    except ConfigError as exc:
        # The settings (log level included) are what failed: report at the default level.
        telemetry.configure_logging(cls.name, f"{cls.name}-{os.getpid()}", DEFAULT_LOG_LEVEL)
        log.error("configuration refused: %s", exc, extra={"problems": exc.problems})
        sys.exit(2)
    telemetry.configure_logging(cls.name, service.instance, service.settings.log_level)
    try:
        code = asyncio.run(_serve(service))
    except Exception:
        log.exception("%s failed to start", cls.name)
        code = 1
    _exit_without_teardown(code)


def _exit_without_teardown(code: int) -> NoReturn:
    """Flush spans, logs and standard streams, then end the process at once.

    Once the service has drained there is nothing left to release, but the interpreter's own
    teardown (a full garbage collection and module clean-up over numpy, pandas, scipy, ...)
    takes seconds; with every service stopping at once on a small machine it outlasted the
    supervisor's grace period, which then SIGKILLed children that had stopped cleanly.
    """
    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)  # the SDK provider; the API's default has none
    if callable(shutdown):
        shutdown()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
