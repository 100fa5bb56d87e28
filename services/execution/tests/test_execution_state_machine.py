"""Order state machine: legal paths, illegal transitions, cumulative vs incremental fills, duplicates."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from ata.events import (
    FillReported,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderStatus,
    OrderSubmitted,
    Side,
)
from ata.execution.core.state_machine import ALLOWED, BrokerReport, IllegalTransition, OrderStateMachine, TrackedOrder

S = OrderStatus
TS = 1_700_000_000_000_000_000


def make_order(qty: float = 100.0, arrival: float | None = 10.0) -> TrackedOrder:
    cmd = uuid.uuid4()
    return TrackedOrder(client_order_id=f"ata-{cmd}", symbol="AAPL", side=Side.BUY, quantity=qty, command_id=cmd,
                        correlation_id=cmd, created_ts=TS, arrival_price=arrival)


def report(order: TrackedOrder, status: OrderStatus, cum: float = 0.0, avg: float | None = None, **kw: object) -> BrokerReport:
    return BrokerReport(client_order_id=order.client_order_id, broker="sim", status=status, ts_event=TS + 1,
                        broker_order_id="b-1", cum_filled_qty=cum, avg_fill_price=avg, **kw)  # type: ignore[arg-type]


@pytest.fixture
def sm() -> OrderStateMachine:
    return OrderStateMachine("execution/test", clock=lambda: TS)


def submitted(sm: OrderStateMachine, qty: float = 100.0) -> TrackedOrder:
    order = make_order(qty)
    events = sm.submitted(order, "sim", TS)
    assert [type(e) for e in events] == [OrderSubmitted]
    return order


def test_happy_path_emits_each_lifecycle_event_and_incremental_fills(sm: OrderStateMachine) -> None:
    order = submitted(sm)
    assert [type(e) for e in sm.apply(order, report(order, S.ACCEPTED))] == [OrderAccepted]
    ev = sm.apply(order, report(order, S.PARTIALLY_FILLED, cum=30, avg=10.0))
    assert [type(e) for e in ev] == [FillReported, OrderPartiallyFilled]
    assert isinstance(ev[0], FillReported) and ev[0].quantity == 30 and ev[0].price == 10.0
    # cumulative 80 at avg 10.5 -> incremental 50 at (80*10.5 - 30*10)/50 = 10.8
    ev = sm.apply(order, report(order, S.PARTIALLY_FILLED, cum=80, avg=10.5))
    fill = ev[0]
    assert isinstance(fill, FillReported) and fill.quantity == pytest.approx(50) and fill.price == pytest.approx(10.8)
    assert fill.slippage == pytest.approx(50 * 0.8)
    ev = sm.apply(order, report(order, S.FILLED, cum=100, avg=10.6))
    assert [type(e) for e in ev] == [FillReported, OrderFilled]
    assert isinstance(ev[0], FillReported) and ev[0].quantity == pytest.approx(20)
    assert ev[0].price == pytest.approx((100 * 10.6 - 80 * 10.5) / 20)
    assert order.status is S.FILLED and order.cum_filled_qty == 100


def test_duplicate_and_stale_reports_produce_nothing(sm: OrderStateMachine) -> None:
    order = submitted(sm)
    sm.apply(order, report(order, S.ACCEPTED))
    sm.apply(order, report(order, S.PARTIALLY_FILLED, cum=40, avg=10.0))
    assert sm.apply(order, report(order, S.PARTIALLY_FILLED, cum=40, avg=10.0)) == []  # duplicate
    assert sm.apply(order, report(order, S.PARTIALLY_FILLED, cum=20, avg=10.0)) == []  # stale, lower cumulative
    assert sm.apply(order, report(order, S.ACCEPTED)) == []  # out-of-order repeat of a passed state
    assert order.cum_filled_qty == 40 and order.status is S.PARTIALLY_FILLED


def test_a_report_that_restates_the_current_state_changes_nothing(sm: OrderStateMachine) -> None:
    order = submitted(sm)
    sm.apply(order, report(order, S.ACCEPTED))
    sm.apply(order, report(order, S.PARTIALLY_FILLED, cum=40, avg=10.0))
    assert sm.restates(order, S.PARTIALLY_FILLED, 40.0) and sm.restates(order, S.PARTIALLY_FILLED, 40.0 + 1e-12)
    assert not sm.restates(order, S.PARTIALLY_FILLED, 41.0) and not sm.restates(order, S.FILLED, 40.0)
    before = order.snapshot()
    repeat = replace(report(order, S.PARTIALLY_FILLED, cum=40, avg=10.0, cum_fee=3.0), ts_event=TS + 99, broker_order_id="b-2")
    assert sm.apply(order, repeat) == [] and order.snapshot() == before  # not even its time or ids are taken


def test_broker_may_skip_accepted_and_fill_at_once(sm: OrderStateMachine) -> None:
    order = submitted(sm)
    ev = sm.apply(order, report(order, S.FILLED, cum=100, avg=9.5, fill_id="x1", last_fill_price=9.5, last_fill_qty=100))
    assert [type(e) for e in ev] == [FillReported, OrderFilled]
    assert isinstance(ev[0], FillReported) and ev[0].fill_id == "x1"


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ([(S.FILLED, 100.0)], (S.ACCEPTED, 100.0)),  # terminal -> anything
        ([(S.CANCELED, 0.0)], (S.PARTIALLY_FILLED, 10.0)),  # fill after cancel
        ([(S.REJECTED, 0.0)], (S.ACCEPTED, 0.0)),
        ([(S.EXPIRED, 0.0)], (S.FILLED, 100.0)),
        ([(S.ACCEPTED, 0.0)], (S.REJECTED, 0.0)),  # reject after accept
        ([(S.ACCEPTED, 0.0)], (S.FILLED, 60.0)),  # filled with less than the quantity
        ([(S.ACCEPTED, 0.0)], (S.PARTIALLY_FILLED, 120.0)),  # overfill
        ([(S.ACCEPTED, 0.0)], (S.REJECTED, 10.0)),  # fill with a non-fill status
        ([(S.PARTIALLY_FILLED, 50.0)], (S.EXPIRED, 120.0)),  # overfill on expiry
    ],
)
def test_illegal_transitions_are_refused_and_leave_the_order_untouched(
    sm: OrderStateMachine, path: list[tuple[OrderStatus, float]], illegal: tuple[OrderStatus, float]
) -> None:
    order = submitted(sm)
    for status, cum in path:
        sm.apply(order, report(order, status, cum=cum, avg=10.0 if cum else None))
    before = order.snapshot()
    status, cum = illegal
    with pytest.raises(IllegalTransition) as info:
        sm.apply(order, report(order, status, cum=cum, avg=10.0 if cum else None))
    assert info.value.to_status is status and info.value.from_status is order.status
    assert order.snapshot() == before


def test_allowed_table_has_terminal_sinks() -> None:
    for status, targets in ALLOWED.items():
        assert (not targets) == status.terminal


def test_cancel_path_with_a_racing_fill(sm: OrderStateMachine) -> None:
    order = submitted(sm)
    sm.apply(order, report(order, S.ACCEPTED))
    sm.cancel_requested(order, TS)
    assert sm.apply(order, report(order, S.ACCEPTED)) == []  # the cancel is not processed yet
    ev = sm.apply(order, report(order, S.CANCELED, cum=25, avg=11.0, reason="user"))
    assert [type(e) for e in ev] == [FillReported, OrderCanceled]
    assert order.status is S.CANCELED and order.cum_filled_qty == 25


def test_local_reject_expiry_and_phantom_close(sm: OrderStateMachine) -> None:
    a = make_order()
    assert [type(e) for e in sm.rejected_locally(a, "no healthy broker", TS)] == [OrderRejected]
    b = submitted(sm)
    sm.apply(b, report(b, S.ACCEPTED))
    assert [type(e) for e in sm.apply(b, report(b, S.EXPIRED))] == [OrderExpired]
    c = submitted(sm)
    sm.apply(c, report(c, S.ACCEPTED))
    assert [type(e) for e in sm.closed_as_phantom(c, "unknown at broker", TS)] == [OrderCanceled]


def test_event_ids_are_deterministic_per_fact(sm: OrderStateMachine) -> None:
    order = submitted(sm)
    twin = TrackedOrder.restore(order.snapshot())
    first = sm.apply(order, report(order, S.PARTIALLY_FILLED, cum=10, avg=10.0))
    again = sm.apply(twin, report(twin, S.PARTIALLY_FILLED, cum=10, avg=10.0))
    assert [e.event_id for e in first] == [e.event_id for e in again]
    later = sm.apply(order, report(order, S.PARTIALLY_FILLED, cum=20, avg=10.0))
    assert {e.event_id for e in later}.isdisjoint(e.event_id for e in first)


def test_incremental_fee_from_cumulative_fee(sm: OrderStateMachine) -> None:
    order = submitted(sm)
    e1 = sm.apply(order, report(order, S.PARTIALLY_FILLED, cum=50, avg=10.0, cum_fee=0.5))
    e2 = sm.apply(order, report(order, S.FILLED, cum=100, avg=10.0, cum_fee=1.25))
    assert isinstance(e1[0], FillReported) and e1[0].fee == pytest.approx(0.5)
    assert isinstance(e2[0], FillReported) and e2[0].fee == pytest.approx(0.75)
