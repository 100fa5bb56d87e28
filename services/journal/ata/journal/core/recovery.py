"""Transaction recovery: orphaned orders in the rebuilt book reconciled with what the brokers say. Pure.

An *orphan* is an order the journal saw sent (``OrderSubmitted``) that has no terminal event:
after a crash nobody may be watching it. The shell asks each broker about every orphan (and
for its open orders), optionally cancels per policy, and hands the answers to :func:`reconcile`,
which applies them through execution's state machine and returns the alignment events —
``OrderReconciled`` plus the lifecycle events and fills the broker's answer implies — with
event ids derived like execution derives them, so the same fact published twice is dropped.

Policies:

- ``resolve``: align each orphan with the broker (missed status changes and fills are applied;
  an order the broker does not know is closed locally as a phantom); orders still live at the
  broker stay open; open orders at the broker that the journal never saw are only reported;
- ``cancel``: as ``resolve``, but every orphan still live at the broker, and every unknown open
  order there, is canceled first (flat after a crash);
- ``adopt``: as ``resolve``, and unknown open orders at the broker are adopted into the book.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from ata.events import Message, OrderReconciled, OrderStatus, ReconcileAction, origin_id
from ata.execution.core.ports import BrokerOrder
from ata.execution.core.state_machine import IllegalTransition, OrderStateMachine, TrackedOrder
from ata.journal.core.fold import OrderBook


class Policy(StrEnum):
    RESOLVE = "resolve"
    CANCEL = "cancel"
    ADOPT = "adopt"


@dataclass(frozen=True)
class Finding:
    """What recovery found about one order and did about it (``action`` None: reported only)."""

    client_order_id: str
    broker: str
    local_status: OrderStatus | None
    broker_status: OrderStatus | None
    action: ReconcileAction | None
    detail: str


@dataclass
class RecoveryReport:
    orphans: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    events: list[Message] = field(default_factory=list)

    def extend(self, other: RecoveryReport) -> None:
        self.orphans += other.orphans
        self.findings += other.findings
        self.events += other.events


def orphans(book: OrderBook) -> list[TrackedOrder]:
    """Sent orders without a terminal state, by client order id."""
    return sorted(book.open_orders(), key=lambda o: o.client_order_id)


def should_cancel(policy: Policy, view: BrokerOrder | None) -> bool:
    """Whether the shell cancels this order at the broker before reconciling (policy ``cancel``, still live)."""
    return policy is Policy.CANCEL and view is not None and not view.status.terminal


def reconcile(book: OrderBook, broker: str, views: Mapping[str, BrokerOrder | None], extras: Sequence[BrokerOrder],
              policy: Policy, *, now_ns: int, source: str) -> RecoveryReport:
    """Apply one broker's answers: ``views`` for the orphans routed to it (None: unknown there), ``extras`` for
    open orders there that the book does not know (already canceled by the shell under ``cancel``)."""
    sm = OrderStateMachine(source, lambda: now_ns)
    report = RecoveryReport(orphans=sorted(views))
    for coid in sorted(views):
        order, view = book.orders[coid], views[coid]
        local = order.status, order.cum_filled_qty
        if view is None:
            action, detail = ReconcileAction.CLOSED_PHANTOM, "sent, no terminal state, unknown at the broker"
            changes = sm.closed_as_phantom(order, "unknown at broker during recovery", now_ns)
        else:
            try:
                changes = sm.apply(order, view.report(broker))
            except IllegalTransition as exc:
                report.findings.append(Finding(coid, broker, local[0], view.status, None, f"refused: {exc.reason}"))
                continue
            if not changes:
                report.findings.append(Finding(coid, broker, local[0], view.status, None, "in line with the broker"))
                continue
            action = ReconcileAction.UPDATED
            detail = f"broker was ahead: {local[0].value}/{local[1]} -> {view.status.value}/{view.cum_filled_qty}"
        report.findings.append(Finding(coid, broker, local[0], view.status if view else None, action, detail))
        report.events += [_reconciled(sm, order, broker, action, local, view, detail, now_ns), *changes]
    for extra in sorted(extras, key=lambda e: e.client_order_id):
        report.extend(_extra(book, sm, broker, extra, policy, now_ns))
    return report


def _extra(book: OrderBook, sm: OrderStateMachine, broker: str, extra: BrokerOrder, policy: Policy,  # noqa: PLR0917
           now_ns: int) -> RecoveryReport:
    req = extra.request
    command_id = origin_id("adopted", broker, req.client_order_id)
    order = TrackedOrder(client_order_id=req.client_order_id, symbol=req.symbol, side=req.side, quantity=req.quantity,
                         command_id=command_id, correlation_id=command_id, created_ts=extra.ts_event,
                         order_type=req.order_type, limit_price=req.limit_price, stop_price=req.stop_price,
                         time_in_force=req.time_in_force, broker=broker, status=OrderStatus.SUBMITTED)
    report = RecoveryReport()
    if policy is Policy.RESOLVE:
        report.findings.append(Finding(order.client_order_id, broker, None, extra.status, None,
                                       "open at the broker, unknown to the journal; left alone"))
        return report
    action = ReconcileAction.ADOPTED if policy is Policy.ADOPT else ReconcileAction.CANCELED_EXTRA
    detail = "unknown order at the broker " + ("adopted" if policy is Policy.ADOPT else "canceled by policy")
    note = _reconciled(sm, order, broker, action, (OrderStatus.NEW, 0.0), extra, detail, now_ns)
    changes: list[Message] = []
    if policy is Policy.ADOPT:
        book.orders[order.client_order_id] = order
        changes = sm.apply(order, extra.report(broker))
    report.findings.append(Finding(order.client_order_id, broker, None, extra.status, action, detail))
    report.events += [note, *changes]
    return report


def _reconciled(sm: OrderStateMachine, order: TrackedOrder, broker: str, action: ReconcileAction,  # noqa: PLR0917
                local: tuple[OrderStatus, float], found: BrokerOrder | None, detail: str, now_ns: int) -> OrderReconciled:
    fact = f"{action}:{local[0]}:{local[1]!r}:{found.status if found else None}"
    return OrderReconciled(
        **sm.envelope(order, "OrderReconciled", fact), ts_event=now_ns, client_order_id=order.client_order_id,
        broker=broker, symbol=order.symbol, action=action, local_status=local[0],
        broker_status=found.status if found else None, local_cum_filled_qty=local[1],
        broker_cum_filled_qty=found.cum_filled_qty if found else 0.0, detail=detail[:500])
