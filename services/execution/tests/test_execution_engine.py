"""Execution engine over in-process simulated brokers: idempotent submission, ambiguity, failover,
routing, TWAP, quality and reconciliation of seeded divergences."""

from __future__ import annotations

import uuid

import pytest

from ata.events import (
    CancelOrder,
    ExecutionQualityMeasured,
    FillReported,
    Message,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderReconciled,
    OrderRejected,
    OrderStatus,
    OrderSubmitted,
    OrderTransitionRefused,
    PositionMismatchDetected,
    QuoteUpdated,
    ReconcileAction,
    Side,
    SubmitOrder,
    client_order_id_for,
)
from ata.execution.brokers.simulated import FaultKind, SimulatedBroker, SimulatedExchange
from ata.execution.core.engine import BrokerRoute, EngineConfig, ExecutionEngine, MemoryOrderStore, TwapPolicy
from ata.execution.core.ports import OrderRequest
from ata.runtime.resilience import BreakerPolicy, BreakerState, Threshold

T0 = 1_700_000_000_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def submit(symbol: str = "AAPL", qty: float = 10, side: Side = Side.BUY, ts: int = T0) -> SubmitOrder:
    intent = uuid.uuid4()
    return SubmitOrder.origin(natural_key=(intent,), ts_event=ts, ts_init=ts, source="risk", intent_id=intent,
                              client_order_id=client_order_id_for(intent), symbol=symbol, side=side, quantity=qty)


def quote(symbol: str, bid: float, ask: float, ts: int) -> QuoteUpdated:
    return QuoteUpdated.origin(natural_key=(symbol, ts), ts_event=ts, ts_init=ts, source="md", symbol=symbol, bid=bid, ask=ask)


def types(events: list[Message]) -> list[type[Message]]:
    return [type(e) for e in events]


Harness = tuple[ExecutionEngine, dict[str, SimulatedBroker], Clock]


async def make(*names: str, store: MemoryOrderStore | None = None, config: EngineConfig | None = None,
               exchanges: dict[str, SimulatedExchange] | None = None) -> Harness:
    clock = Clock()
    brokers = {n: SimulatedBroker(n, (exchanges or {}).get(n) or SimulatedExchange(), clock=clock) for n in names}
    routes = [BrokerRoute(b, priority=i) for i, b in enumerate(brokers.values())]
    engine = ExecutionEngine(routes, store or MemoryOrderStore(), clock, config)
    await engine.start()
    return engine, brokers, clock


async def test_submit_then_fill_via_stream_update_and_quality_event() -> None:
    engine, brokers, _ = await make("sim")
    engine.on_market(quote("AAPL", 99.0, 101.0, T0))
    cmd = submit(qty=10)
    events = await engine.handle_submit(cmd)
    assert types(events) == [OrderSubmitted, OrderAccepted]
    sim = brokers["sim"]
    [update] = sim.exchange.on_quote(quote("AAPL", 100.0, 102.0, T0 + 1))
    events = await engine.on_broker_update("sim", update)
    assert types(events) == [FillReported, OrderFilled, ExecutionQualityMeasured]
    fill, quality = events[0], events[2]
    assert isinstance(fill, FillReported) and fill.price == 102.0 and fill.arrival_price == 100.0
    assert isinstance(quality, ExecutionQualityMeasured)
    assert quality.shortfall_bps == pytest.approx(200.0) and quality.shortfall_money == pytest.approx(20.0)
    assert engine.quality["sim"].orders == 1
    assert await engine.on_broker_update("sim", update) == []  # duplicate report
    assert engine.positions["sim"] == {"AAPL": 10}


async def test_redelivered_command_never_creates_a_second_order() -> None:
    engine, brokers, _ = await make("sim")
    cmd = submit()
    first = await engine.handle_submit(cmd)
    assert await engine.handle_submit(cmd) == first  # restated with the same ids, nothing sent again
    # a fresh engine over the same broker but an empty local record: the broker refuses the id
    # ("client_order_id must be unique") and the engine adopts the existing order
    fresh = ExecutionEngine([BrokerRoute(brokers["sim"])], MemoryOrderStore(), Clock())
    fresh.ready = True
    events = await fresh.handle_submit(cmd)
    assert types(events) == [OrderSubmitted, OrderAccepted]
    assert brokers["sim"].exchange.submissions == 1


async def test_redelivery_after_a_crash_restates_the_lost_events_with_their_original_ids() -> None:
    """A crash after the record was saved but before the events were acknowledged: the restarted engine,
    given the redelivered command, emits submission, every fill and the current status again, with the ids
    (and facts) of their first emission, so consumers that have them drop them and the others learn them."""
    store = MemoryOrderStore()
    engine, brokers, clock = await make("sim", store=store)
    engine.on_market(quote("AAPL", 99.0, 101.0, T0))
    sim = brokers["sim"]
    cmd = submit(qty=10)
    emitted = await engine.handle_submit(cmd)
    for step, (ask, size) in enumerate([(102.0, 6.0), (102.5, 50.0)], start=1):  # 6 shown, then the rest
        touch = QuoteUpdated.origin(natural_key=("AAPL", step), ts_event=T0 + step, ts_init=T0, source="md", symbol="AAPL",
                                    bid=100.0, ask=ask, bid_size=size, ask_size=size)
        for update in sim.exchange.on_quote(touch):
            emitted += await engine.on_broker_update("sim", update)
    fills = [e for e in emitted if isinstance(e, FillReported)]
    assert len(fills) == 2 and engine.orders[cmd.client_order_id].status is OrderStatus.FILLED

    restarted = ExecutionEngine([BrokerRoute(sim)], store, clock)
    await restarted.start()
    replayed = await restarted.handle_submit(cmd)
    assert types(replayed) == [OrderSubmitted, FillReported, FillReported, OrderFilled]
    by_id = {e.event_id: e for e in emitted}
    for event in replayed:
        original = by_id[event.event_id]  # every restated event has the id it was first emitted with
        assert event.model_dump(exclude={"ts_init"}) == original.model_dump(exclude={"ts_init"})
    assert sim.exchange.submissions == 1
    assert await restarted.handle_submit(cmd) == replayed  # and again: a fixed point


async def test_ambiguous_timeout_is_resolved_by_lookup_without_resubmitting() -> None:
    engine, brokers, _ = await make("sim")
    sim = brokers["sim"]
    sim.exchange.inject(FaultKind.TIMEOUT)  # the order is placed but the answer is lost
    cmd = submit()
    events = await engine.handle_submit(cmd)
    assert types(events) == [OrderSubmitted, OrderAccepted]
    assert sim.exchange.submissions == 1
    assert engine.orders[cmd.client_order_id].submit_attempts == 1


async def test_ambiguous_outcome_with_nothing_at_broker_resubmits_same_id_same_broker() -> None:
    engine, brokers, _ = await make("a", "b")
    a = brokers["a"]

    calls: list[str] = []
    original = a.submit

    async def lost_then_ok(request: OrderRequest) -> object:
        calls.append(request.client_order_id)
        if len(calls) == 1:
            from ata.execution.core.ports import AmbiguousOutcomeError

            raise AmbiguousOutcomeError("reset before the broker saw it")
        return await original(request)

    a.submit = lost_then_ok  # type: ignore[method-assign]
    cmd = submit()
    events = await engine.handle_submit(cmd)
    assert types(events) == [OrderSubmitted, OrderAccepted]
    assert calls == [cmd.client_order_id] * 2
    assert a.exchange.submissions == 1 and brokers["b"].exchange.submissions == 0


async def test_failover_when_the_primary_breaker_opens() -> None:
    policy = BreakerPolicy(warning=None, critical=Threshold(consecutive_failures=2), open_cooldown_s=3600)
    engine, brokers, _ = await make("primary", "backup", config=EngineConfig(breaker_policy=policy))
    primary, backup = brokers["primary"], brokers["backup"]
    primary.exchange.inject(FaultKind.DISCONNECT, 2)
    first = await engine.handle_submit(submit())
    # connection refused: it certainly never arrived, so the same order fails over at once
    assert [(type(e).__name__, getattr(e, "broker", "")) for e in first] == [
        ("OrderSubmitted", "primary"), ("OrderSubmitted", "backup"), ("OrderAccepted", "backup")]
    await engine.handle_submit(submit())
    assert engine.breakers["primary"].state is BreakerState.OPEN
    third = await engine.handle_submit(submit())
    assert [getattr(e, "broker", "") for e in third] == ["backup", "backup"]  # the open primary is not tried
    assert primary.exchange.submissions == 0 and backup.exchange.submissions == 3


async def test_routing_prefers_cheaper_broker_and_all_down_rejects() -> None:
    clock = Clock()
    cheap, dear = SimulatedBroker("cheap", clock=clock), SimulatedBroker("dear", clock=clock)
    engine = ExecutionEngine([BrokerRoute(dear, priority=0, fee_bps=5.0), BrokerRoute(cheap, priority=1, fee_bps=1.0)],
                             MemoryOrderStore(), clock)
    await engine.start()
    events = await engine.handle_submit(submit())
    assert {getattr(e, "broker", "") for e in events} == {"cheap"}
    cheap.exchange.inject(FaultKind.DISCONNECT)
    dear.exchange.inject(FaultKind.DISCONNECT)
    events = await engine.handle_submit(submit())
    assert types(events)[-1] is OrderRejected


async def test_twap_slices_with_deterministic_child_ids_and_parent_aggregation() -> None:
    config = EngineConfig(twap=TwapPolicy(min_quantity=100, slices=4, interval_ns=1_000))
    engine, brokers, clock = await make("sim", config=config)
    engine.on_market(quote("AAPL", 10.0, 10.0, T0))
    cmd = submit(qty=1000)
    events = await engine.handle_submit(cmd)
    assert types(events) == [OrderSubmitted, OrderAccepted]  # parent submitted, first slice accepted
    children = sorted(k for k in engine.orders if k.startswith(cmd.client_order_id + "."))
    assert children == [f"{cmd.client_order_id}.{i}" for i in range(4)]
    sim = brokers["sim"].exchange
    assert sim.submissions == 1
    for step in range(1, 4):
        clock.now = T0 + step * 1_000
        await engine.on_timer(clock.now)
    assert sim.submissions == 4
    fills: list[Message] = []
    for update in sim.on_quote(quote("AAPL", 10.0, 10.02, clock.now + 1)):
        fills += await engine.on_broker_update("sim", update)
    parent_fills = [e for e in fills if isinstance(e, FillReported)]
    assert {f.client_order_id for f in parent_fills} == {cmd.client_order_id}
    assert sum(f.quantity for f in parent_fills) == pytest.approx(1000)
    assert isinstance(fills[-1], ExecutionQualityMeasured) and types(fills)[-2] is OrderFilled
    assert engine.orders[cmd.client_order_id].status is OrderStatus.FILLED


async def test_cancel_and_illegal_report_is_refused_and_reported() -> None:
    engine, brokers, _ = await make("sim")
    cmd = submit()
    await engine.handle_submit(cmd)
    events = await engine.handle_cancel(CancelOrder.origin(natural_key=("c",), ts_event=T0, ts_init=T0, source="risk",
                                                           client_order_id=cmd.client_order_id))
    assert types(events) == [OrderCanceled]
    placed = brokers["sim"].exchange.get(cmd.client_order_id)
    assert placed is not None
    from dataclasses import replace

    forged = replace(placed, status=OrderStatus.FILLED, cum_filled_qty=10, avg_fill_price=1.0)
    [refused] = await engine.on_broker_update("sim", forged)
    assert isinstance(refused, OrderTransitionRefused) and refused.from_status is OrderStatus.CANCELED


async def test_reconciliation_of_seeded_divergence() -> None:
    """An extra order at the broker, a missed fill, a phantom local order, a lost submission, a position gap."""
    store = MemoryOrderStore()
    ex = SimulatedExchange()
    engine, brokers, clock = await make("sim", store=store, exchanges={"sim": ex})
    missed, phantom, lost = submit(qty=10), submit(qty=5), submit(qty=7)
    await engine.handle_submit(missed)
    await engine.handle_submit(phantom)
    # the broker forgets `phantom`, then fills `missed` while we are not listening;
    # `lost` was recorded as sent but never reached the broker
    del ex._orders[phantom.client_order_id]
    ex._open.pop(phantom.client_order_id, None)
    ex.on_quote(quote("AAPL", 10.0, 10.0, T0 + 1))
    from ata.execution.core.state_machine import TrackedOrder

    lost_order = TrackedOrder(client_order_id=lost.client_order_id, symbol="AAPL", side=Side.BUY, quantity=7,
                              command_id=lost.event_id, correlation_id=lost.event_id, created_ts=T0, broker="sim",
                              status=OrderStatus.SUBMITTED)
    await store.save(lost_order)
    # someone placed an order we have no record of
    extra = OrderRequest(client_order_id="manual-1", symbol="MSFT", side=Side.SELL, quantity=3)
    ex.seed_order(extra, T0)
    # restart: a new engine over the same store and broker
    restarted = ExecutionEngine([BrokerRoute(brokers["sim"])], store, clock)
    events = await restarted.start()
    notes = {(e.client_order_id, e.action) for e in events if isinstance(e, OrderReconciled)}
    assert notes == {(missed.client_order_id, ReconcileAction.UPDATED), (phantom.client_order_id, ReconcileAction.CLOSED_PHANTOM),
                     (lost.client_order_id, ReconcileAction.RESUBMITTED), ("manual-1", ReconcileAction.ADOPTED)}
    missed_fill = [e for e in events if isinstance(e, FillReported)]
    assert [(f.client_order_id, f.quantity) for f in missed_fill] == [(missed.client_order_id, 10)]
    assert restarted.orders[phantom.client_order_id].status is OrderStatus.CANCELED
    assert restarted.orders[lost.client_order_id].status is OrderStatus.ACCEPTED
    assert restarted.orders["manual-1"].status is OrderStatus.ACCEPTED
    assert ex.get(lost.client_order_id) is not None
    # positions: our record now matches; a broker-side position we never saw is a mismatch
    assert [e for e in events if isinstance(e, PositionMismatchDetected)] == []
    ex._book_position("TSLA", 4.0, 200.0)
    again = await restarted.reconcile(restarted.routes["sim"], check_positions=True)
    [mismatch] = [e for e in again if isinstance(e, PositionMismatchDetected)]
    assert (mismatch.symbol, mismatch.local_quantity, mismatch.broker_quantity) == ("TSLA", 0.0, 4.0)
    assert restarted.ready


async def test_periodic_work_looks_at_live_orders_only_and_still_finds_what_it_must() -> None:
    """Filled and canceled orders leave the live set (the poll and the timer scan it, not every order ever
    seen); a live order's missed fill is still found by the poll, an order restored in flight is still
    re-checked by the timer, and a restart indexes only what is live."""
    store = MemoryOrderStore()
    ex = SimulatedExchange()
    config = EngineConfig(inflight_recheck_ns=1_000)
    engine, brokers, clock = await make("sim", store=store, exchanges={"sim": ex}, config=config)
    filled, canceled, open_ = submit("MSFT", qty=2), submit(qty=3), submit(qty=4)
    for cmd in (filled, canceled, open_):
        await engine.handle_submit(cmd)
    for update in ex.on_quote(quote("MSFT", 10.0, 10.0, T0 + 1)):
        await engine.on_broker_update("sim", update)
    await engine.handle_cancel(CancelOrder.origin(natural_key=("c",), ts_event=T0, ts_init=T0, source="risk",
                                                  client_order_id=canceled.client_order_id))
    assert [o.client_order_id for o in engine.live_orders()] == [open_.client_order_id]
    ex.on_quote(quote("AAPL", 10.0, 10.0, T0 + 2))  # fills `open_` while we are not listening
    events = await engine.poll()
    assert [(e.client_order_id, e.quantity) for e in events if isinstance(e, FillReported)] == [(open_.client_order_id, 4)]
    assert engine.live_orders() == []
    # restart with an order recorded as sent that never reached the broker: it is live and in flight
    from ata.execution.core.state_machine import TrackedOrder

    lost = submit(qty=5)
    await store.save(TrackedOrder(client_order_id=lost.client_order_id, symbol="AAPL", side=Side.BUY, quantity=5,
                                  command_id=lost.event_id, correlation_id=lost.event_id, created_ts=T0, broker="sim",
                                  status=OrderStatus.SUBMITTED, updated_ts=T0))
    restarted = ExecutionEngine([BrokerRoute(brokers["sim"])], store, clock, config)
    restarted.restore({"orders": await store.load(), "positions": {}})  # without start()'s reconciliation
    assert [o.client_order_id for o in restarted.live_orders()] == [lost.client_order_id]
    clock.now = T0 + 10_000
    events = await restarted.on_timer(clock.now)
    assert types(events) == [OrderAccepted] and ex.get(lost.client_order_id) is not None
    assert await restarted.on_timer(clock.now + 10_000) == []  # acknowledged: nothing left for the timer
    assert ex.submissions == 4
