"""The execution engine: order commands in, broker orders out, lifecycle events and fills back.

It holds no transport: brokers are :class:`~ata.execution.core.ports.BrokerPort` objects and
the local record is an :class:`OrderStore`, both injected; time comes from an injected clock
(ns). The service shell feeds it commands, market data, broker updates and timer ticks and
publishes whatever events it returns.

Guarantees
----------
- **Never two orders for one intent.** The client order id is the intent's
  (``client_order_id_for(intent_id)``); a command for a known id produces nothing new. The
  order is written to the store as SUBMITTED *before* it is sent, so a restart knows every
  order that may exist at a broker. An ambiguous outcome (timeout, reset) is resolved by
  looking the order up by client order id on the same broker; only an answer that the
  broker has no such order leads to a resubmission, with the same id, to the same broker
  (the broker refuses a second copy: "client_order_id must be unique" means it exists).
  An order is routed to another broker only when the first one certainly never received
  it (breaker open, connection refused).
- **Failover and routing.** Each broker has a circuit breaker; brokers are ranked by health
  (closed before half-open; open ones are skipped) and then by estimated cost in bps
  (fees plus the broker's observed average shortfall), then by configured priority.
- **TWAP.** Market orders at or above ``TwapPolicy.min_quantity`` are split into ``slices``
  children with ids ``<parent>.<i>``, due every ``interval_ns``. Children are internal: the
  parent's lifecycle events and fills are published, aggregated over the children.
- **Execution quality.** When an order completes with fills, its implementation shortfall
  against the arrival price (the mid, or last trade, when the command arrived) is published
  as :class:`~ata.events.ExecutionQualityMeasured` and folded into per-broker statistics.
- **Reconciliation** (:meth:`ExecutionEngine.reconcile`): see that method.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from ata.events import (
    BarClosed,
    CancelOrder,
    ExecutionQualityMeasured,
    FillReported,
    Message,
    OrderReconciled,
    OrderStatus,
    OrderTransitionRefused,
    OrderType,
    PositionMismatchDetected,
    QuoteUpdated,
    ReconcileAction,
    SubmitOrder,
    client_order_id_for,
    origin_id,
    round_quantity,
)
from ata.execution.core.ports import (
    AmbiguousOutcomeError,
    BrokerError,
    BrokerOrder,
    BrokerPort,
    BrokerUnavailableError,
    DuplicateClientOrderIdError,
    OrderRejectedError,
    OrderRequest,
)
from ata.execution.core.slippage import cost_bps
from ata.execution.core.state_machine import BrokerReport, IllegalTransition, OrderStateMachine, TrackedOrder
from ata.runtime.resilience import BreakerPolicy, BreakerState, CircuitBreaker, CircuitOpenError

_log = logging.getLogger(__name__)
S = OrderStatus
PARENT = "twap-parent"
POSITION_TOL = 1e-9


class OrderStore(Protocol):
    """Execution's own record of orders (Redis in the service, a dict in tests)."""

    async def load(self) -> list[dict[str, Any]]: ...

    async def save(self, order: TrackedOrder) -> None: ...

    async def load_positions(self) -> dict[str, dict[str, float]]: ...

    async def save_positions(self, broker: str, positions: dict[str, float]) -> None: ...


class MemoryOrderStore:
    """An :class:`OrderStore` in a dict (unit tests, backtests)."""

    def __init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self.positions: dict[str, dict[str, float]] = {}

    async def load(self) -> list[dict[str, Any]]:
        return list(self.orders.values())

    async def save(self, order: TrackedOrder) -> None:
        self.orders[order.client_order_id] = order.snapshot()

    async def load_positions(self) -> dict[str, dict[str, float]]:
        return {b: dict(p) for b, p in self.positions.items()}

    async def save_positions(self, broker: str, positions: dict[str, float]) -> None:
        self.positions[broker] = dict(positions)


@dataclass(frozen=True)
class BrokerRoute:
    """A broker and what routing needs to know about it."""

    port: BrokerPort
    priority: int = 0
    fee_bps: float = 0.0
    fee_per_share: float = 0.0

    @property
    def name(self) -> str:
        return self.port.name


@dataclass(frozen=True)
class TwapPolicy:
    min_quantity: float
    slices: int = 5
    interval_ns: int = 60_000_000_000
    lot: float = 1.0


@dataclass
class BrokerQuality:
    """Running statistics of completed executions at one broker."""

    orders: int = 0
    mean_shortfall_bps: float = 0.0

    def add(self, shortfall_bps: float) -> None:
        self.orders += 1
        self.mean_shortfall_bps += (shortfall_bps - self.mean_shortfall_bps) / self.orders


class _Outcome(Enum):
    UNAVAILABLE = "unavailable"  # certainly not at the broker: may route elsewhere
    UNRESOLVED = "unresolved"  # may be at the broker; re-checked later, never rerouted


@dataclass(frozen=True)
class EngineConfig:
    source: str = "execution"
    breaker_policy: BreakerPolicy = field(default_factory=BreakerPolicy)
    twap: TwapPolicy | None = None
    lookup_attempts: int = 3
    lookup_delay_s: float = 0.05
    max_submit_attempts: int = 3
    inflight_recheck_ns: int = 5_000_000_000
    adopt_extra_orders: bool = True


class ExecutionEngine:
    """See the module docstring. Not thread-safe; one asyncio loop drives it."""

    def __init__(self, routes: Sequence[BrokerRoute], store: OrderStore, clock: Callable[[], int],
                 config: EngineConfig | None = None, breakers: dict[str, CircuitBreaker] | None = None) -> None:
        if not routes:
            raise ValueError("at least one broker route is required")
        self.config = config or EngineConfig()
        self.routes = {r.name: r for r in routes}
        self.store = store
        self._clock = clock
        self.sm = OrderStateMachine(self.config.source, clock)
        self.breakers = breakers if breakers is not None else {}
        for name in self.routes:
            self.breakers.setdefault(name, CircuitBreaker(f"broker:{name}", self.config.breaker_policy))
        #: Every order seen (by client order id). Add through :meth:`_track`, which keeps the indices below.
        self.orders: dict[str, TrackedOrder] = {}
        # Indices so that periodic work costs what is live, not every order ever seen. Statuses only move
        # forward (nothing leaves a terminal status, nothing returns to NEW or SUBMITTED), so an order is
        # indexed when tracked and dropped lazily by the scan that finds it has moved on.
        self._live: dict[str, TrackedOrder] = {}  # not terminal when last looked at: reconciliation
        self._pending: dict[str, TrackedOrder] = {}  # NEW or SUBMITTED when last looked at: the timer
        self._children: dict[str, dict[str, TrackedOrder]] = {}  # TWAP slices by parent id, then their own
        self.positions: dict[str, dict[str, float]] = {name: {} for name in self.routes}
        self.quality: dict[str, BrokerQuality] = {name: BrokerQuality() for name in self.routes}
        self.arrival: dict[str, float] = {}
        self.ready = False
        self._locks: dict[str, asyncio.Lock] = {}

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> list[Message]:
        """Load the local record and reconcile it with every broker; ready afterwards."""
        for data in await self.store.load():
            self._track(TrackedOrder.restore(data))
        for broker, positions in (await self.store.load_positions()).items():
            self.positions.setdefault(broker, {}).update(positions)
        events: list[Message] = []
        for route in self.routes.values():
            events += await self.reconcile(route, check_positions=True)
        self.ready = True
        return events

    def _track(self, order: TrackedOrder) -> None:
        """Record ``order`` (new, restored or adopted) and index it; tracking an id again replaces its order."""
        coid = order.client_order_id
        self.orders[coid] = order
        self._live.pop(coid, None)  # a replaced order leaves no stale copy behind
        self._pending.pop(coid, None)
        if not order.status.terminal:
            self._live[coid] = order
        if order.status is S.NEW or order.status is S.SUBMITTED:
            self._pending[coid] = order
        if order.parent_id:
            self._children.setdefault(order.parent_id, {})[coid] = order

    def live_orders(self) -> list[TrackedOrder]:
        """The orders not terminal, in tracking order (those found terminal leave the index)."""
        ended = [coid for coid, order in self._live.items() if order.status.terminal]
        for coid in ended:
            del self._live[coid]
        return list(self._live.values())

    def _lock(self, client_order_id: str) -> asyncio.Lock:
        lock = self._locks.get(client_order_id)
        if lock is None:
            lock = self._locks[client_order_id] = asyncio.Lock()
        return lock

    def _now(self) -> int:
        return int(self._clock())

    # -- market data -----------------------------------------------------------------------------
    def on_market(self, event: QuoteUpdated | BarClosed) -> None:
        """Remember the arrival reference per symbol: the mid of the latest quote, else the last close."""
        if isinstance(event, QuoteUpdated):
            self.arrival[event.symbol] = (event.bid + event.ask) / 2.0
        else:
            self.arrival[event.symbol] = event.close

    # -- commands -----------------------------------------------------------------------------
    async def handle_submit(self, cmd: SubmitOrder) -> list[Message]:
        coid = cmd.client_order_id
        async with self._lock(coid):
            existing = self.orders.get(coid)
            if existing is not None:
                return await self._redelivered(existing)
            order = TrackedOrder(
                client_order_id=coid, symbol=cmd.symbol, side=cmd.side, quantity=cmd.quantity, command_id=cmd.event_id,
                correlation_id=cmd.correlation_id, created_ts=cmd.ts_event, order_type=cmd.order_type,
                limit_price=cmd.limit_price, stop_price=cmd.stop_price, time_in_force=cmd.time_in_force,
                intent_id=str(cmd.intent_id), arrival_price=self.arrival.get(cmd.symbol),
            )
            self._track(order)
            if coid != client_order_id_for(cmd.intent_id):
                events = self.sm.rejected_locally(order, "client_order_id does not derive from intent_id", cmd.ts_event)
                await self.store.save(order)
                return events
            twap = self.config.twap
            if twap is not None and cmd.order_type is OrderType.MARKET and cmd.quantity >= twap.min_quantity:
                return await self._start_twap(order, twap)
            return await self._route_and_submit(order)

    async def _redelivered(self, order: TrackedOrder) -> list[Message]:
        """A command for an order we know (redelivered after a crash, or replayed): nothing is sent again.

        The events of the order's current state are emitted again with their original ids (see
        :meth:`OrderStateMachine.replay`): a crash after the order was saved but before its events
        were acknowledged would otherwise lose them, and consumers drop the ones they have. An
        order still in flight is resolved with its broker first.
        """
        changes: list[Message] = []
        if order.status is S.SUBMITTED and order.extra.get("kind") != PARENT:
            changes = await self._resolve_inflight(order)
        replayed = self.sm.replay(order)
        seen = {e.event_id for e in replayed}
        return replayed + [e for e in changes if e.event_id not in seen]

    async def handle_cancel(self, cmd: CancelOrder) -> list[Message]:
        order = self.orders.get(cmd.client_order_id)
        if order is None or order.status.terminal or order.status is S.PENDING_CANCEL:
            return []
        is_parent = order.extra.get("kind") == PARENT
        targets = list(self._children.get(order.client_order_id, {}).values()) if is_parent else [order]
        events: list[Message] = []
        for target in targets:
            async with self._lock(target.client_order_id):
                if target.status.terminal or target.status in (S.NEW, S.PENDING_CANCEL):
                    if target.status is S.NEW:  # a TWAP slice not yet sent: never send it
                        target.status = S.CANCELED
                        await self.store.save(target)
                    continue
                self.sm.cancel_requested(target, cmd.ts_event)
                await self.store.save(target)
                route = self.routes[target.broker]
                try:
                    answer = await route.port.cancel(target.client_order_id)
                except BrokerError as exc:
                    _log.warning("cancel of %s at %s failed: %s", target.client_order_id, route.name, exc)
                    continue
                if answer is not None:
                    events += await self._apply(target, answer.report(route.name))
        if is_parent:
            events += await self._settle_parent(order)
        return events

    # -- submission -----------------------------------------------------------------------------
    def rank(self, order: TrackedOrder, exclude: Iterable[str] = ()) -> list[BrokerRoute]:
        """Healthy brokers for ``order``, best first: closed before half-open, then cost, then priority."""
        skipped = set(exclude)
        ranked = []
        for route in self.routes.values():
            state = self.breakers[route.name].state
            if route.name in skipped or state is BreakerState.OPEN:
                continue
            ranked.append((state is not BreakerState.CLOSED, self.estimated_cost_bps(route, order), route.priority, route.name))
        ranked.sort()
        return [self.routes[name] for *_, name in ranked]

    def estimated_cost_bps(self, route: BrokerRoute, order: TrackedOrder) -> float:
        price = order.limit_price or order.arrival_price or self.arrival.get(order.symbol)
        per_share_bps = route.fee_per_share / price * 1e4 if price else 0.0
        return route.fee_bps + per_share_bps + self.quality[route.name].mean_shortfall_bps

    async def _route_and_submit(self, order: TrackedOrder, *, only: str | None = None) -> list[Message]:
        """Send ``order`` to the best healthy broker, failing over while brokers certainly refuse it."""
        events: list[Message] = []
        tried: set[str] = set()
        while True:
            if only is not None:
                candidates = [self.routes[only]] if only not in tried else []
            else:
                candidates = self.rank(order, exclude=tried)
            if not candidates:
                if order.status is S.SUBMITTED and only is not None:
                    return events  # pinned to a broker that is down: stays in flight, re-checked later
                events += self._visible(order, self.sm.rejected_locally(order, "no healthy broker", self._now()))
                await self.store.save(order)
                if order.parent_id and order.parent_id in self.orders:
                    events += await self._settle_parent(self.orders[order.parent_id])
                await self._after_change(order, events)
                return events
            route = candidates[0]
            tried.add(route.name)
            if order.status is S.NEW:
                events += self._visible(order, self.sm.submitted(order, route.name, self._now()))
            elif order.broker != route.name:
                events += self._visible(order, self.sm.rerouted(order, route.name, self._now()))
            await self.store.save(order)  # write-ahead: a restart must know the order may exist there
            result = await self._send(order, route)
            if result is _Outcome.UNAVAILABLE:
                continue
            if result is not _Outcome.UNRESOLVED:
                events += result
            await self._after_change(order, events)
            return events

    @staticmethod
    def _visible(order: TrackedOrder, events: list[Message]) -> list[Message]:
        """TWAP slices are internal: their own lifecycle events are not published."""
        return [] if order.parent_id else events

    async def _send(self, order: TrackedOrder, route: BrokerRoute) -> list[Message] | _Outcome:
        breaker = self.breakers[route.name]
        request = _request(order)
        for _ in range(self.config.max_submit_attempts):
            try:
                breaker.acquire()
            except CircuitOpenError:
                return _Outcome.UNAVAILABLE if order.submit_attempts == 0 else _Outcome.UNRESOLVED
            order.submit_attempts += 1
            try:
                placed = await route.port.submit(request)
            except DuplicateClientOrderIdError:
                breaker.record_success()  # the broker answered: it already has the order
                found = await self._lookup(route, order.client_order_id)
                if isinstance(found, BrokerOrder):
                    return await self._apply(order, found.report(route.name))
                return _Outcome.UNRESOLVED
            except OrderRejectedError as exc:
                breaker.record_success()
                return await self._apply(order, BrokerReport(order.client_order_id, route.name, S.REJECTED,
                                                             self._now(), reason=exc.reason))
            except BrokerUnavailableError:
                breaker.record_failure()
                order.submit_attempts -= 1  # it never arrived
                if order.submit_attempts == 0:
                    return _Outcome.UNAVAILABLE
                continue  # earlier attempts were ambiguous: stay on this broker
            except AmbiguousOutcomeError:
                breaker.record_failure()
                found = await self._lookup(route, order.client_order_id)
                if isinstance(found, BrokerOrder):
                    return await self._apply(order, found.report(route.name))
                if found is _Outcome.UNRESOLVED:
                    return _Outcome.UNRESOLVED
                continue  # the broker says it has no such order: resubmit, same id, same broker
            breaker.record_success()
            return await self._apply(order, placed.report(route.name))
        return _Outcome.UNRESOLVED

    async def _lookup(self, route: BrokerRoute, client_order_id: str) -> BrokerOrder | _Outcome | None:
        """The order at ``route`` (None: the broker has none; UNRESOLVED: we could not ask)."""
        for attempt in range(self.config.lookup_attempts):
            try:
                return await route.port.get_order(client_order_id)
            except BrokerError:
                if attempt + 1 < self.config.lookup_attempts:
                    await asyncio.sleep(self.config.lookup_delay_s * 2**attempt)
        return _Outcome.UNRESOLVED

    async def _resolve_inflight(self, order: TrackedOrder) -> list[Message]:
        """An order sent but never acknowledged: look it up, resubmit to the same broker if absent."""
        route = self.routes.get(order.broker)
        if route is None:
            return []
        found = await self._lookup(route, order.client_order_id)
        if found is _Outcome.UNRESOLVED:
            return []
        if isinstance(found, BrokerOrder):
            events = await self._apply(order, found.report(route.name))
            await self._after_change(order, events)
            return events
        return await self._route_and_submit(order, only=route.name)

    # -- broker reports -------------------------------------------------------------------------
    async def on_broker_update(self, broker: str, update: BrokerOrder) -> list[Message]:
        """A trade update from a broker's stream. Unknown orders are left to reconciliation."""
        order = self.orders.get(update.client_order_id)
        if order is None:
            return []
        async with self._lock(order.client_order_id):
            events = await self._apply(order, update.report(broker))
            await self._after_change(order, events)
            return events

    async def on_broker_updates(self, broker: str, updates: Sequence[BrokerOrder]) -> list[Message]:
        """Several trade updates that arrived together: different orders are applied concurrently
        (their store writes share round trips), the updates of one order in arrival order.

        An update that restates a live order's current state is dropped first, without a lock or a
        task: the stream repeats every answer a submission already applied, so in a burst most
        updates are such repeats. (A terminal order's repeats still go through, as before: applying
        one completes bookkeeping a crash may have interrupted.)"""
        lanes: dict[str, list[BrokerOrder]] = {}
        for update in updates:
            order = self.orders.get(update.client_order_id)
            if order is None or (not order.status.terminal and self.sm.restates(order, update.status, update.cum_filled_qty)):
                continue  # unknown orders are left to reconciliation, as in on_broker_update
            lanes.setdefault(update.client_order_id, []).append(update)

        async def lane(items: list[BrokerOrder]) -> list[Message]:
            events: list[Message] = []
            for update in items:
                events += await self.on_broker_update(broker, update)
            return events

        results = await asyncio.gather(*(lane(items) for items in lanes.values()))
        return [event for events in results for event in events]

    async def _apply(self, order: TrackedOrder, report: BrokerReport) -> list[Message]:
        """Apply ``report``; the order is saved only when it changed (repeats are most reports)."""
        before = _fingerprint(order)
        try:
            events = self.sm.apply(order, report)
        except IllegalTransition as exc:
            _log.warning("%s", exc)
            return [OrderTransitionRefused(
                **self.sm.envelope(order, "OrderTransitionRefused",
                                   f"{exc.from_status}:{exc.to_status}:{report.cum_filled_qty!r}"),
                ts_event=report.ts_event, client_order_id=order.client_order_id, broker=report.broker,
                from_status=exc.from_status, to_status=exc.to_status, reason=exc.reason[:500])]
        if events or _fingerprint(order) != before:
            await self.store.save(order)
        for event in events:
            if isinstance(event, FillReported) and not order.parent_id:
                book = self.positions.setdefault(event.broker, {})
                book[event.symbol] = book.get(event.symbol, 0.0) + event.side.sign * event.quantity
                await self.store.save_positions(event.broker, book)
        if order.parent_id:
            # Slices are internal: their fills reach the outside world through the parent.
            events = [e for e in events if isinstance(e, OrderTransitionRefused)]
            parent = self.orders.get(order.parent_id)
            if parent is not None:
                events += await self._settle_parent(parent)
        return events

    async def _after_change(self, order: TrackedOrder, events: list[Message]) -> None:
        """Completion bookkeeping: execution quality once an order is terminal with fills."""
        if not order.status.terminal or order.parent_id or order.extra.get("quality") == "done":
            return
        quality = self._quality(order)
        if quality is not None:
            events.append(quality)
        order.extra["quality"] = "done"
        await self.store.save(order)

    def _quality(self, order: TrackedOrder) -> ExecutionQualityMeasured | None:
        if order.cum_filled_qty <= 0 or not order.arrival_price or not order.avg_fill_price:
            return None
        shortfall_bps = cost_bps(order.side, order.arrival_price, order.avg_fill_price)
        money = order.side.sign * (order.avg_fill_price - order.arrival_price) * order.cum_filled_qty + order.cum_fee
        broker = order.broker
        if broker in self.quality:
            self.quality[broker].add(shortfall_bps)
        return ExecutionQualityMeasured(
            **self.sm.envelope(order, "ExecutionQualityMeasured", repr(order.cum_filled_qty)), ts_event=order.updated_ts,
            client_order_id=order.client_order_id, broker=broker, symbol=order.symbol, side=order.side,
            filled_qty=order.cum_filled_qty, arrival_price=order.arrival_price, avg_fill_price=order.avg_fill_price,
            shortfall_bps=shortfall_bps, shortfall_money=money, fees=order.cum_fee)

    # -- TWAP ---------------------------------------------------------------------------------
    async def _start_twap(self, parent: TrackedOrder, policy: TwapPolicy) -> list[Message]:
        parent.extra["kind"] = PARENT
        events = self.sm.submitted(parent, "twap", parent.created_ts)
        for index, (qty, due) in enumerate(twap_slices(parent.quantity, policy, parent.created_ts)):
            child = TrackedOrder(
                client_order_id=f"{parent.client_order_id}.{index}", symbol=parent.symbol, side=parent.side, quantity=qty,
                command_id=parent.command_id, correlation_id=parent.correlation_id, created_ts=due,
                time_in_force=parent.time_in_force, intent_id=parent.intent_id, parent_id=parent.client_order_id,
                arrival_price=parent.arrival_price)
            self._track(child)
            await self.store.save(child)
        await self.store.save(parent)
        return events + await self.on_timer(self._now())

    async def _settle_parent(self, parent: TrackedOrder) -> list[Message]:
        """Apply the children's aggregate to the parent as one cumulative report."""
        children = list(self._children.get(parent.client_order_id, {}).values())
        cum = sum(c.cum_filled_qty for c in children)
        notional = sum(c.cum_filled_qty * (c.avg_fill_price or 0.0) for c in children)
        if all(c.status.terminal for c in children):
            status = S.FILLED if math.isclose(cum, parent.quantity) else S.CANCELED
        elif cum > 0:
            status = S.PARTIALLY_FILLED
        else:
            status = S.ACCEPTED if any(c.status is not S.NEW and c.status is not S.SUBMITTED for c in children) else parent.status
        last = max(children, key=lambda c: c.updated_ts)
        report = BrokerReport(parent.client_order_id, last.broker or "twap", status, last.updated_ts or self._now(),
                              cum_filled_qty=cum, avg_fill_price=notional / cum if cum else None,
                              cum_fee=sum(c.cum_fee for c in children), reason="slices ended unfilled")
        parent.broker = last.broker or parent.broker
        events = await self._apply(parent, report)
        await self._after_change(parent, events)
        return events

    async def on_timer(self, now: int) -> list[Message]:
        """Send due TWAP slices and re-check orders in flight longer than the threshold."""
        events: list[Message] = []
        for order in list(self._pending.values()):
            if (order.status is not S.NEW and order.status is not S.SUBMITTED) or order.extra.get("kind") == PARENT:
                # Moved on for good (a TWAP parent is never due itself); another scan may have dropped it already.
                self._pending.pop(order.client_order_id, None)
            elif order.parent_id and order.status is S.NEW and order.created_ts <= now:
                async with self._lock(order.client_order_id):
                    if order.status is S.NEW:
                        events += await self._route_and_submit(order)
            elif order.status is S.SUBMITTED and now - order.updated_ts >= self.config.inflight_recheck_ns:
                async with self._lock(order.client_order_id):
                    if order.status is S.SUBMITTED:
                        events += await self._resolve_inflight(order)
        return events

    # -- reconciliation -------------------------------------------------------------------------
    async def reconcile(self, route: BrokerRoute, *, check_positions: bool = False,
                        recent_inflight: bool = True) -> list[Message]:
        """Align our record with ``route``'s broker and return the events that say how.

        - each of our live orders there is looked up (open list, else by client order id):
          if the broker is ahead (a missed status change or fill) the report is applied and
          an ``OrderReconciled(updated)`` published; if the broker does not know it, an order
          never acknowledged is resubmitted there with the same id (``resubmitted``) and an
          acknowledged one is closed locally (``closed_phantom``);
        - an open order at the broker that we have no record of is adopted (``adopted``) or,
          per configuration, canceled (``canceled_extra``);
        - with ``check_positions``, each position that differs from what our fills imply is
          published as ``PositionMismatchDetected`` and the broker's quantity adopted;
        - without ``recent_inflight`` (the periodic poll), orders sent less than the in-flight
          threshold ago are left alone: their submission is still being answered (looking each
          up would cost a broker round trip per order during a burst), and the timer re-checks
          them once they pass the threshold.
        Raises :class:`BrokerError` when the broker cannot be asked; nothing is half-applied
        per order, and a retry starts over.
        """
        port = route.port
        open_at_broker = {o.client_order_id: o for o in await port.open_orders()}
        events: list[Message] = []
        now = self._now()
        for order in [o for o in self.live_orders() if o.broker == route.name]:
            if (not recent_inflight and order.status is S.SUBMITTED
                    and now - order.updated_ts < self.config.inflight_recheck_ns):
                open_at_broker.pop(order.client_order_id, None)
                continue
            async with self._lock(order.client_order_id):
                open_at_broker_view = open_at_broker.pop(order.client_order_id, None)
                if order.status.terminal or order.status is S.NEW or order.extra.get("kind") == PARENT:
                    continue
                found = open_at_broker_view or await port.get_order(order.client_order_id)
                events += await self._reconcile_order(route, order, found)
        for extra in open_at_broker.values():
            if extra.client_order_id in self.orders:
                continue  # ours and already terminal here; the broker will catch up
            events += await self._reconcile_extra(route, extra)
        if check_positions:
            events += await self._reconcile_positions(route)
        return events

    def _reconciled(self, order: TrackedOrder, route: BrokerRoute, action: ReconcileAction, *, local: tuple[S, float],
                    found: BrokerOrder | None, detail: str) -> OrderReconciled:
        return OrderReconciled(
            **self.sm.envelope(order, "OrderReconciled", f"{action}:{local[0]}:{local[1]!r}:{found.status if found else None}"),
            ts_event=self._now(), client_order_id=order.client_order_id, broker=route.name, symbol=order.symbol,
            action=action, local_status=local[0], broker_status=found.status if found else None,
            local_cum_filled_qty=local[1], broker_cum_filled_qty=found.cum_filled_qty if found else 0.0, detail=detail)

    async def _reconcile_order(self, route: BrokerRoute, order: TrackedOrder, found: BrokerOrder | None) -> list[Message]:
        local = (order.status, order.cum_filled_qty)
        if found is None:
            if order.status is S.SUBMITTED:
                note = self._reconciled(order, route, ReconcileAction.RESUBMITTED, local=local, found=None,
                                       detail="sent but unknown at the broker")
                return [note, *await self._route_and_submit(order, only=route.name)]
            note = self._reconciled(order, route, ReconcileAction.CLOSED_PHANTOM, local=local, found=None,
                                    detail="acknowledged once, unknown now")
            closed = self.sm.closed_as_phantom(order, "unknown at broker during reconciliation", self._now())
            events: list[Message] = [note, *closed]
            await self.store.save(order)
            return events
        changes = await self._apply(order, found.report(route.name))
        if not changes:
            return []
        await self._after_change(order, changes)
        detail = f"broker was ahead: {local[0].value}/{local[1]} -> {found.status.value}/{found.cum_filled_qty}"
        return [self._reconciled(order, route, ReconcileAction.UPDATED, local=local, found=found, detail=detail), *changes]

    async def _reconcile_extra(self, route: BrokerRoute, extra: BrokerOrder) -> list[Message]:
        req = extra.request
        command_id = origin_id("adopted", route.name, req.client_order_id)
        order = TrackedOrder(client_order_id=req.client_order_id, symbol=req.symbol, side=req.side, quantity=req.quantity,
                             command_id=command_id, correlation_id=command_id, created_ts=extra.ts_event,
                             order_type=req.order_type, limit_price=req.limit_price, stop_price=req.stop_price,
                             time_in_force=req.time_in_force, broker=route.name, status=S.SUBMITTED)
        if not self.config.adopt_extra_orders:
            try:
                answer = await route.port.cancel(req.client_order_id)
            except BrokerError as exc:
                _log.warning("cancel of extra order %s failed: %s", req.client_order_id, exc)
                answer = None
            return [self._reconciled(order, route, ReconcileAction.CANCELED_EXTRA, local=(S.NEW, 0.0), found=answer or extra,
                                     detail="unknown order at the broker canceled by policy")]
        self._track(order)
        note = self._reconciled(order, route, ReconcileAction.ADOPTED, local=(S.NEW, 0.0), found=extra,
                                detail="unknown order at the broker adopted")
        async with self._lock(order.client_order_id):
            changes = await self._apply(order, extra.report(route.name))
        await self.store.save(order)
        return [note, *changes]

    async def _reconcile_positions(self, route: BrokerRoute) -> list[Message]:
        at_broker = {p.symbol: p.quantity for p in await route.port.positions()}
        local = self.positions.setdefault(route.name, {})
        events: list[Message] = []
        now = self._now()
        for symbol in sorted(set(at_broker) | set(local)):
            ours, theirs = local.get(symbol, 0.0), at_broker.get(symbol, 0.0)
            if math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=POSITION_TOL):
                continue
            events.append(PositionMismatchDetected.origin(
                natural_key=(route.name, symbol, repr(ours), repr(theirs), now), ts_event=now, ts_init=now,
                source=self.config.source, broker=route.name, symbol=symbol, local_quantity=ours, broker_quantity=theirs))
            local[symbol] = theirs
        if events:
            await self.store.save_positions(route.name, local)
        return events

    async def poll(self) -> list[Message]:
        """Periodic check of every healthy broker's open orders against our record."""
        events: list[Message] = []
        for route in self.routes.values():
            if self.breakers[route.name].state is BreakerState.OPEN:
                continue
            try:
                events += await self.reconcile(route, recent_inflight=False)
            except BrokerError as exc:
                _log.warning("poll of %s failed: %s", route.name, exc)
        return events

    # -- state ----------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {"orders": [o.snapshot() for o in self.orders.values()],
                "positions": {b: dict(p) for b, p in self.positions.items()},
                "quality": {b: [q.orders, q.mean_shortfall_bps] for b, q in self.quality.items()}}

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.orders, self._live, self._pending, self._children = {}, {}, {}, {}
        for data in snapshot["orders"]:
            self._track(TrackedOrder.restore(data))
        self.positions = {b: dict(p) for b, p in snapshot["positions"].items()}
        for broker, (count, mean) in snapshot.get("quality", {}).items():
            self.quality[broker] = BrokerQuality(int(count), float(mean))


def twap_slices(quantity: float, policy: TwapPolicy, start_ts: int) -> list[tuple[float, int]]:
    """(quantity, due time) of each slice: equal lots, the remainder in the last slice."""
    n = max(1, policy.slices)
    base = round_quantity(quantity / n, policy.lot)
    if base <= 0:
        return [(quantity, start_ts)]
    sizes = [base] * (n - 1) + [quantity - base * (n - 1)]
    return [(size, start_ts + i * policy.interval_ns) for i, size in enumerate(sizes) if size > 0]


def _fingerprint(order: TrackedOrder) -> tuple[Any, ...]:
    """What a broker report can change on an order."""
    return order.status, order.cum_filled_qty, order.cum_fee, order.broker_order_id, order.updated_ts, len(order.fills)


def _request(order: TrackedOrder) -> OrderRequest:
    return OrderRequest(client_order_id=order.client_order_id, symbol=order.symbol, side=order.side,
                        quantity=order.quantity, order_type=order.order_type, limit_price=order.limit_price,
                        stop_price=order.stop_price, time_in_force=order.time_in_force)

