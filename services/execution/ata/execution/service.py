"""The execution service shell: Kafka in and out, brokers, Redis record, metrics. Logic lives in the core.

Subscribes to order commands and market data. Before the consumer starts (so before any
order is accepted) :meth:`ExecutionService.on_start` reconciles every broker against the
Redis record, retrying until it succeeds; until then ``/readyz`` says not ready. The
background task follows each broker's trade-update stream, sends due TWAP slices,
re-checks orders in flight past the threshold and polls open orders periodically.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Self, TypeVar

from ata.events import (
    REGISTRY,
    BarClosed,
    CancelOrder,
    ExecutionQualityMeasured,
    FillReported,
    Message,
    OrderReconciled,
    OrderTransitionRefused,
    PositionMismatchDetected,
    QuoteUpdated,
    SubmitOrder,
    TopicRegistry,
)
from ata.events.orders import ORDER_LIFECYCLE
from ata.execution.brokers.alpaca import AlpacaBroker
from ata.execution.brokers.sim_client import SimulatedHttpBroker
from ata.execution.brokers.simulated import FeeModel, SimConfig, SimulatedBroker, SimulatedExchange
from ata.execution.config import ExecutionSettings
from ata.execution.core.clock import MarketClock
from ata.execution.core.engine import BrokerRoute, EngineConfig, ExecutionEngine, TwapPolicy
from ata.execution.core.ports import BrokerError, BrokerPort
from ata.execution.core.slippage import model_from_name
from ata.execution.recovery import JournalRecovery, JournalRecoveryError
from ata.execution.store import RedisOrderStore
from ata.runtime import metrics
from ata.runtime.bus import Delivery
from ata.runtime.config import ConfigError, RuntimeSettings, load_settings
from ata.runtime.resilience import Backoff, BreakerPolicy, Threshold
from ata.runtime.service import Service, run_service

T = TypeVar("T")

COMMANDS, QUOTES, BARS = "orders.commands.v1", "market.quotes.v1", "market.bars.v1"

ORDERS = metrics.counter("ata_execution_orders_total", "Order lifecycle events published, by status event", ("event",))
FILLS = metrics.counter("ata_execution_fills_total", "Fills published, by broker", ("broker",))
SHORTFALL = metrics.histogram("ata_execution_shortfall_bps", "Implementation shortfall of completed orders (bps)", ("broker",),
                              buckets=(-50, -10, -5, -1, 0, 1, 5, 10, 25, 50, 100, 250))
ALIGNMENTS = metrics.counter("ata_execution_alignments_total", "Reconciliation realignments and refused transitions", ("kind",))
SUBMIT_SECONDS = metrics.histogram("ata_execution_command_seconds", "Time from a command's arrival to its broker acknowledgement")


def namespaced(name: str, namespace: str) -> str:
    """``d.s.vN`` -> ``d.s_<namespace>.vN``; unchanged without a namespace."""
    if not namespace:
        return name
    domain, stream, version = name.split(".")
    return f"{domain}.{stream}_{namespace}.{version}"


def namespaced_registry(namespace: str) -> TopicRegistry:
    """The registry with every topic namespaced (isolated test runs share one broker)."""
    if not namespace:
        return REGISTRY
    return TopicRegistry(dataclasses.replace(t, name=namespaced(t.name, namespace)) for t in REGISTRY.data_topics())


def build_ports(settings: ExecutionSettings, clock: Callable[[], int] = time.time_ns) -> list[BrokerRoute]:
    """The configured brokers in priority order; an in-process simulated broker runs on ``clock``."""
    routes: list[BrokerRoute] = []
    timeout_s = settings.http_timeout_ms / 1000
    for priority, name in enumerate(settings.brokers.split(",")):
        port: BrokerPort
        if name == "sim":
            if settings.sim_broker_url:
                port = SimulatedHttpBroker("sim", settings.sim_broker_url, timeout_s=timeout_s)
            else:
                config = SimConfig(slippage=model_from_name(settings.sim_slippage, bps=settings.sim_slippage_bps),
                                   fees=FeeModel(bps=settings.sim_fee_bps), latency_ns=int(settings.sim_latency_ms * 1e6),
                                   participation=settings.sim_participation)
                port = SimulatedBroker("sim", SimulatedExchange(config), clock=clock)
            routes.append(BrokerRoute(port, priority=priority, fee_bps=settings.sim_fee_bps))
        elif name == "alpaca":
            routes.append(BrokerRoute(AlpacaBroker.from_settings(settings), priority=priority, fee_bps=settings.alpaca_fee_bps))
        else:
            raise ConfigError("ExecutionSettings", [f"ATA_EXECUTION_BROKERS (field brokers): unknown broker {name!r}"])
    return routes


class ExecutionService(Service):
    name = "execution"
    subscriptions = (COMMANDS, QUOTES, BARS)

    def __init__(self, settings: RuntimeSettings, exec_settings: ExecutionSettings, **kwargs: Any) -> None:
        namespace = exec_settings.topic_namespace
        self.registry = namespaced_registry(namespace)  # type: ignore[misc]  # per-instance topics
        self.subscriptions = tuple(namespaced(t, namespace) for t in (COMMANDS, QUOTES, BARS))  # type: ignore[misc]
        kwargs.setdefault("group_id", f"execution_{namespace}" if namespace else "execution")
        super().__init__(settings, **kwargs)
        self.exec_settings = exec_settings
        self.store = RedisOrderStore.from_url(settings.redis_url, exec_settings.redis_prefix)
        policy = BreakerPolicy(warning=None, critical=Threshold(consecutive_failures=exec_settings.breaker_failures),
                               open_cooldown_s=exec_settings.breaker_cooldown_s)
        twap = (TwapPolicy(exec_settings.twap_min_quantity, exec_settings.twap_slices, exec_settings.twap_interval_ms * 1_000_000)
                if exec_settings.twap_min_quantity > 0 else None)
        config = EngineConfig(source=self.source, breaker_policy=policy, twap=twap,
                              inflight_recheck_ns=exec_settings.inflight_recheck_ms * 1_000_000,
                              adopt_extra_orders=exec_settings.adopt_extra_orders)
        #: Market time unless configured otherwise (see :mod:`ata.execution.core.clock`).
        self.clock = MarketClock(time.time_ns)
        clock: Callable[[], int] = self.clock if exec_settings.clock == "market" else time.time_ns
        self.engine = ExecutionEngine(build_ports(exec_settings, clock), self.store, clock, config)
        self._engine_clock = clock
        self.recovery = (JournalRecovery(settings.journal_url, exec_settings.journal_recovery,
                                         required=exec_settings.journal_recovery_required)
                         if exec_settings.journal_recovery != "off" else None)

    @classmethod
    def from_env(cls) -> Self:
        return cls(load_settings(RuntimeSettings), load_settings(ExecutionSettings))

    def extra_readiness(self) -> bool:
        return self.engine.ready

    async def on_start(self) -> None:
        """Journal recovery (:mod:`ata.execution.recovery`), then reconciliation with every broker, before the
        consumer starts; each is retried until it works (a journal that is not required may be skipped)."""
        backoff = Backoff(initial_s=0.2, cap_s=5.0, max_attempts=None)
        attempt = 0
        recovered = self.recovery is None
        await self._resume_market_time()
        while True:
            try:
                if not recovered:
                    assert self.recovery is not None
                    ports = [route.port for route in self.engine.routes.values()]
                    await self.recovery.run(ports, self.store, self.bus, self.source, now_ns=self._engine_clock())
                    recovered = True
                events = await self.engine.start()
                break
            except (BrokerError, JournalRecoveryError) as exc:
                self.log.warning("startup reconciliation failed, retrying: %s", exc)
                await asyncio.sleep(backoff.ceiling(attempt))
                attempt += 1
        self._observe(events)
        await self.publish(events)
        self.log.info("reconciled with brokers", extra={"alignment_events": len(events), "orders": len(self.engine.orders)})

    async def _resume_market_time(self) -> None:
        """On market time, a restart in the middle of a replay stamps recovery and reconciliation with the latest time
        in its own order record, not with the wall clock: services on market time (risk) take any event time for the
        present, and a wall-clock stamp years after the replayed bars made every later bar look stale to them."""
        if self._engine_clock is not self.clock or self.clock.started:
            return
        latest = max((max(int(d.get("created_ts", 0)), int(d.get("updated_ts", 0))) for d in await self.store.load()),
                     default=0)
        if latest:
            self.clock.seed(latest)

    async def on_stop(self) -> None:
        for route in self.engine.routes.values():
            await route.port.close()
        await self.store.close()

    async def handle_batch(self, batch: Sequence[tuple[Message, Delivery]]) -> list[Sequence[Message] | Exception]:
        """A fetched batch at once: the messages of one key (per topic and partition) in order, different keys
        concurrently. Safe: commands are keyed by client order id, the engine serialises everything per client
        order id with its own lock, and orders of different ids share no state that an await could leave
        half-updated. Most of a command's time is waiting, for the store write and the broker round trip,
        which the orders of a batch share (group-committed writes, pipelined submissions), and the runtime
        publishes the batch's outputs together. A redelivered command restates its order's events with their
        original ids, so events lost with a crash before their acknowledgement are published again."""
        results: list[Sequence[Message] | Exception] = [()] * len(batch)
        lanes: dict[tuple[str, int, str | None], list[int]] = {}
        for index, (_, delivery) in enumerate(batch):
            lanes.setdefault((delivery.topic, delivery.partition, delivery.key), []).append(index)

        async def lane(indices: list[int]) -> None:
            for index in indices:
                try:
                    results[index] = await self.handle(*batch[index])
                except Exception as exc:  # this message fails alone (it is dead-lettered)
                    results[index] = exc

        await asyncio.gather(*(lane(indices) for indices in lanes.values()))
        return results

    async def handle(self, message: Message, delivery: Delivery) -> Sequence[Message]:
        if isinstance(message, QuoteUpdated | BarClosed):
            self.clock.observe(message.ts_event)
        elif isinstance(message, SubmitOrder | CancelOrder):
            self.clock.seed(message.ts_event)
        if isinstance(message, SubmitOrder):
            started = time.perf_counter()
            events = await self.engine.handle_submit(message)
            SUBMIT_SECONDS.observe(time.perf_counter() - started)
        elif isinstance(message, CancelOrder):
            events = await self.engine.handle_cancel(message)
        elif isinstance(message, QuoteUpdated | BarClosed):
            self.engine.on_market(message)
            await self._forward_market(message)
            events = []
        else:
            return []
        self._observe(events)
        return events

    async def _forward_market(self, event: QuoteUpdated | BarClosed) -> None:
        """Simulated brokers fill against the market data execution sees."""
        for route in self.engine.routes.values():
            feed = getattr(route.port, "on_market", None)
            if feed is not None:
                try:
                    await feed(event)
                except BrokerError as exc:
                    self.log.warning("market data not delivered to %s: %s", route.name, exc)

    def _observe(self, events: Sequence[Message]) -> None:
        for event in events:
            if isinstance(event, ORDER_LIFECYCLE):
                ORDERS.labels(event.event_type).inc()
            elif isinstance(event, FillReported):
                FILLS.labels(event.broker).inc()
            elif isinstance(event, ExecutionQualityMeasured):
                SHORTFALL.labels(event.broker).observe(event.shortfall_bps)
            elif isinstance(event, OrderReconciled | PositionMismatchDetected | OrderTransitionRefused):
                ALIGNMENTS.labels(event.event_type).inc()

    async def background(self) -> None:
        tasks = [asyncio.create_task(self._follow(route), name=f"execution:updates:{route.name}")
                 for route in self.engine.routes.values()]
        tasks.append(asyncio.create_task(self._timers(), name="execution:timers"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def _follow(self, route: BrokerRoute) -> None:
        """Apply the broker's trade updates; those that arrive while a batch is applied and published
        form the next batch (one publish and shared store writes per batch, not per update)."""
        async for updates in _batched(route.port.updates()):
            events = await self.engine.on_broker_updates(route.name, updates)
            self._observe(events)
            await self.publish(events)

    async def _timers(self) -> None:
        interval_s = self.exec_settings.timer_interval_ms / 1000
        poll_every_s = self.exec_settings.poll_interval_ms / 1000
        last_poll = time.monotonic()
        while True:
            await asyncio.sleep(interval_s)
            if self._engine_clock is self.clock and not self.clock.started:
                continue  # no market time yet: nothing is due before the first event
            events = await self.engine.on_timer(self._engine_clock())
            if time.monotonic() - last_poll >= poll_every_s:
                last_poll = time.monotonic()
                events += await self.engine.poll()
            self._observe(events)
            await self.publish(events)


async def _batched(source: AsyncIterator[T]) -> AsyncIterator[list[T]]:
    """The items of ``source`` in lists of everything that arrived since the previous list was taken."""
    queue: asyncio.Queue[T] = asyncio.Queue()
    done = object()

    async def read() -> None:
        try:
            async for item in source:
                queue.put_nowait(item)
        finally:
            queue.put_nowait(done)  # type: ignore[arg-type]  # the end marker

    reader = asyncio.create_task(read())
    try:
        while True:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            ended = batch[-1] is done
            if ended:
                batch.pop()
            if batch:
                yield batch
            if ended:
                await reader  # re-raises what ended the source
                return
    finally:
        reader.cancel()


def main() -> None:
    run_service(ExecutionService)
