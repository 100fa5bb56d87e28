"""The order state machine: one tracked order, its legal transitions, and the events they emit.

States and legal transitions::

    NEW ──▶ SUBMITTED ──▶ ACCEPTED ──▶ PARTIALLY_FILLED ──▶ FILLED
     │          │  ╲           │  ╲          │  ▲ (more fills)
     │          │   ╲──────────┼───╲─────────┴──┴─▶ FILLED / PARTIALLY_FILLED (brokers may skip ACCEPTED)
     ▼          ▼              ▼               ▼
  REJECTED   REJECTED    PENDING_CANCEL ─▶ CANCELED (fills may still race the cancel)
                         CANCELED, EXPIRED from any live state

Terminal states (FILLED, CANCELED, REJECTED, EXPIRED) accept nothing. A report that asks
for any other change raises :class:`IllegalTransition` and leaves the order untouched.

Fill quantities: brokers report ``cum_filled_qty`` (cumulative, as Alpaca does). The
machine turns the increase over what it already knows into one incremental
:class:`~ata.events.FillReported`; a report that repeats what is known (a duplicate) emits
nothing; a report with a *lower* cumulative quantity is stale (delivered out of order) and
emits nothing either. An increase beyond the order quantity is illegal.

Event ids are derived from the order's command id and the fact itself (status and
cumulative quantity), so the same fact produces the same event id after a restart and
downstream consumers drop the repeat. Each fill is kept on the order (``fills``), so
:meth:`OrderStateMachine.replay` can state an order's current state again with the very
ids of its first emission (a redelivered command whose events were lost in a crash).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, TypeVar

from ata.events import (
    FillReported,
    Message,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderStatus,
    OrderSubmitted,
    OrderType,
    Side,
    TimeInForce,
)
from ata.execution.core.lifecycle import event_id, lifecycle_event

S = OrderStatus
_LIVE_EXITS = frozenset({S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.CANCELED, S.EXPIRED})

#: Legal transitions. A same-state transition is legal only for PARTIALLY_FILLED (another fill).
ALLOWED: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.NEW: frozenset({S.SUBMITTED, S.REJECTED}),
    S.SUBMITTED: frozenset({S.ACCEPTED, S.REJECTED} | _LIVE_EXITS),
    S.ACCEPTED: _LIVE_EXITS,
    S.PARTIALLY_FILLED: _LIVE_EXITS,
    S.PENDING_CANCEL: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED}),
    S.FILLED: frozenset(),
    S.CANCELED: frozenset(),
    S.REJECTED: frozenset(),
    S.EXPIRED: frozenset(),
}

#: Statuses a report may carry together with new fills (fills can race a cancel or an expiry).
_FILL_CARRYING = frozenset({S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.CANCELED, S.EXPIRED})

#: Relative tolerance for comparing float quantities (see the numeric policy in ata.events.values).
QTY_RTOL = 1e-9


class IllegalTransition(Exception):
    """A transition the state machine forbids. The order keeps its previous state."""

    def __init__(self, client_order_id: str, from_status: OrderStatus, to_status: OrderStatus, reason: str) -> None:
        super().__init__(f"{client_order_id}: {from_status.value} -> {to_status.value} refused: {reason}")
        self.client_order_id = client_order_id
        self.from_status = from_status
        self.to_status = to_status
        self.reason = reason


@dataclass(frozen=True)
class BrokerReport:
    """What a broker says about one order now. Quantities and fees are cumulative.

    ``last_fill_price`` / ``last_fill_qty`` / ``fill_id`` describe the most recent execution
    when the broker tells it (Alpaca's trade updates do); otherwise the incremental fill price
    is derived from the change of the average price.
    """

    client_order_id: str
    broker: str
    status: OrderStatus
    ts_event: int
    broker_order_id: str = ""
    cum_filled_qty: float = 0.0
    avg_fill_price: float | None = None
    cum_fee: float = 0.0
    reason: str = ""
    fill_id: str | None = None
    last_fill_price: float | None = None
    last_fill_qty: float | None = None


def _qty_eq(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=QTY_RTOL, abs_tol=1e-12)


E = TypeVar("E", bound=Message)


@dataclass
class TrackedOrder:
    """Execution's record of one order. Mutated only through :class:`OrderStateMachine`."""

    client_order_id: str
    symbol: str
    side: Side
    quantity: float
    command_id: uuid.UUID
    correlation_id: uuid.UUID
    created_ts: int
    order_type: OrderType = OrderType.MARKET
    limit_price: float | None = None
    stop_price: float | None = None
    time_in_force: TimeInForce = TimeInForce.DAY
    intent_id: str = ""
    parent_id: str = ""
    broker: str = ""
    broker_order_id: str = ""
    status: OrderStatus = OrderStatus.NEW
    cum_filled_qty: float = 0.0
    avg_fill_price: float | None = None
    cum_fee: float = 0.0
    arrival_price: float | None = None
    updated_ts: int = 0
    submit_attempts: int = 0
    extra: dict[str, str] = field(default_factory=dict)
    #: Every fill applied, as emitted: fill_id, ts_event, broker, quantity, price, fee.
    fills: list[dict[str, Any]] = field(default_factory=list)

    @property
    def remaining_qty(self) -> float:
        return max(0.0, self.quantity - self.cum_filled_qty)

    def snapshot(self) -> dict[str, Any]:
        """A compact JSON-ready dict (orjson encodes its enums): fields at their default value are
        left out, since they are most of an order in flight; :meth:`restore` inverts it and still
        reads the full dicts of earlier versions. ``extra`` and ``fills`` are copied, so the
        snapshot does not change with the order."""
        data: dict[str, Any] = {}
        for name, default in _SNAPSHOT_DEFAULTS:
            value = getattr(self, name)
            if value is not default and value != default:
                data[name] = value
        data["command_id"] = str(self.command_id)
        data["correlation_id"] = str(self.correlation_id)
        if self.extra:
            data["extra"] = dict(self.extra)
        if self.fills:
            data["fills"] = [dict(fill) for fill in self.fills]
        return data

    @classmethod
    def restore(cls, data: dict[str, Any]) -> TrackedOrder:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["command_id"] = uuid.UUID(str(values["command_id"]))
        values["correlation_id"] = uuid.UUID(str(values["correlation_id"]))
        values["side"] = Side(values["side"])
        for name, kind in (("order_type", OrderType), ("time_in_force", TimeInForce), ("status", OrderStatus)):
            if name in values:
                values[name] = kind(values[name])
        return cls(**values)


#: (field, default) of every plain field a snapshot may omit; the required fields have no default
#: (``_REQUIRED``, never equal to a value) and the ids, ``extra`` and ``fills`` are written apart.
_REQUIRED = object()
_SNAPSHOT_DEFAULTS: tuple[tuple[str, Any], ...] = tuple(
    (f.name, _REQUIRED if f.default is MISSING else f.default)
    for f in fields(TrackedOrder) if f.name not in ("command_id", "correlation_id", "extra", "fills"))


class OrderStateMachine:
    """Applies transitions to :class:`TrackedOrder` records and builds the resulting events.

    ``source`` is stamped on every event; ``clock`` (ns) supplies ``ts_init``.
    """

    def __init__(self, source: str, clock: Any) -> None:
        self.source = source
        self._clock = clock

    # -- local transitions -------------------------------------------------------------------
    def submitted(self, order: TrackedOrder, broker: str, ts_event: int) -> list[Message]:
        """NEW -> SUBMITTED on ``broker`` (we are about to send it)."""
        self._check(order, S.SUBMITTED)
        order.broker = broker
        order.status = S.SUBMITTED
        order.updated_ts = ts_event
        order.extra.update(submitted_to=broker, submitted_ts=str(ts_event), submitted_broker_order_id=order.broker_order_id)
        return [self._submitted_event(order, broker, ts_event)]

    def rerouted(self, order: TrackedOrder, broker: str, ts_event: int) -> list[Message]:
        """SUBMITTED on one broker that definitely never received it -> SUBMITTED on another."""
        if order.status is not S.SUBMITTED:
            raise IllegalTransition(order.client_order_id, order.status, S.SUBMITTED, "only a submitted order can be rerouted")
        order.broker = broker
        order.updated_ts = ts_event
        order.extra.update(submitted_to=broker, submitted_ts=str(ts_event), submitted_broker_order_id=order.broker_order_id)
        return [self._submitted_event(order, broker, ts_event)]

    def cancel_requested(self, order: TrackedOrder, ts_event: int) -> None:
        """-> PENDING_CANCEL. No event: the broker's answer (canceled or filled) is the fact."""
        self._check(order, S.PENDING_CANCEL)
        order.status = S.PENDING_CANCEL
        order.updated_ts = ts_event

    def rejected_locally(self, order: TrackedOrder, reason: str, ts_event: int) -> list[Message]:
        """NEW/SUBMITTED -> REJECTED without a broker report (e.g. no healthy broker)."""
        self._check(order, S.REJECTED)
        order.status = S.REJECTED
        order.updated_ts = ts_event
        order.extra["reason"] = reason[:500]
        return [self._lifecycle(order, OrderRejected, ts_event, reason=reason[:500])]

    def closed_as_phantom(self, order: TrackedOrder, reason: str, ts_event: int) -> list[Message]:
        """A once-acknowledged order its broker no longer knows: close it locally as CANCELED."""
        self._check(order, S.CANCELED)
        order.status = S.CANCELED
        order.updated_ts = ts_event
        order.extra["reason"] = reason[:500]
        return [self._lifecycle(order, OrderCanceled, ts_event, reason=reason[:500])]

    # -- broker reports ----------------------------------------------------------------------
    @staticmethod
    def restates(order: TrackedOrder, status: OrderStatus, cum_filled_qty: float) -> bool:
        """Whether a report of ``status`` with ``cum_filled_qty`` repeats the order's current state: :meth:`apply`
        then changes nothing and returns no events (cheap to ask before building the report)."""
        return status is order.status and _qty_eq(cum_filled_qty, order.cum_filled_qty)

    def apply(self, order: TrackedOrder, report: BrokerReport) -> list[Message]:
        """Apply a broker report; returns the events it causes (possibly none).

        Raises :class:`IllegalTransition` (order untouched) for a forbidden status change,
        an overfill, or a FILLED report whose quantity does not complete the order.
        """
        target = report.status
        cum = report.cum_filled_qty
        if cum < order.cum_filled_qty and not _qty_eq(cum, order.cum_filled_qty):
            return []  # stale: an older report delivered late
        delta = 0.0 if _qty_eq(cum, order.cum_filled_qty) else cum - order.cum_filled_qty
        if delta == 0.0:
            if target is order.status or self._is_stale_status(order.status, target):
                return []  # a duplicate, or a repeat of a state the order has already passed
            self._check(order, target)
        else:
            if target not in _FILL_CARRYING:
                raise IllegalTransition(order.client_order_id, order.status, target, "fill reported with a non-fill status")
            self._check(order, target, same_ok=target in (S.PARTIALLY_FILLED, S.PENDING_CANCEL))
        if cum > order.quantity and not _qty_eq(cum, order.quantity):
            raise IllegalTransition(order.client_order_id, order.status, target,
                                    f"overfill: cumulative {cum} exceeds quantity {order.quantity}")
        if target is S.FILLED and not _qty_eq(cum, order.quantity):
            raise IllegalTransition(order.client_order_id, order.status, target,
                                    f"filled with cumulative {cum} of {order.quantity}")
        if delta > 0 and (report.avg_fill_price is None or report.avg_fill_price <= 0):
            raise IllegalTransition(order.client_order_id, order.status, target, "fill without a price")

        events: list[Message] = []
        ts = report.ts_event
        if report.broker_order_id:
            order.broker_order_id = report.broker_order_id
        if delta > 0:
            events.append(self._fill(order, report, delta))
        order.status = target
        order.updated_ts = ts
        if delta > 0:
            order.cum_filled_qty = cum
            order.avg_fill_price = report.avg_fill_price
        order.cum_fee = max(order.cum_fee, report.cum_fee)
        if target in (S.CANCELED, S.REJECTED):
            order.extra["reason"] = (report.reason or ("" if target is S.CANCELED else "rejected by broker"))[:500]
        lifecycle = self._lifecycle_for(order)
        if lifecycle is not None:
            events.append(lifecycle)
        return events

    @staticmethod
    def _is_stale_status(current: OrderStatus, reported: OrderStatus) -> bool:
        """A report of a state the order has already passed (e.g. ACCEPTED after a fill)."""
        earlier = {S.NEW: 0, S.SUBMITTED: 1, S.ACCEPTED: 2, S.PARTIALLY_FILLED: 3, S.PENDING_CANCEL: 4}
        return (not current.terminal and reported in earlier and current in earlier
                and earlier[reported] < earlier[current])

    def _check(self, order: TrackedOrder, target: OrderStatus, *, same_ok: bool = False) -> None:
        if target is order.status and same_ok:
            return
        if target not in ALLOWED[order.status]:
            reason = "order is terminal" if order.status.terminal else "transition not allowed"
            raise IllegalTransition(order.client_order_id, order.status, target, reason)

    # -- event construction ------------------------------------------------------------------
    # -- replay -------------------------------------------------------------------------------
    def replay(self, order: TrackedOrder) -> list[Message]:
        """The events that state ``order``'s current state, with the ids of their first emission.

        Its submission (to the broker it was last sent to), every fill, then the lifecycle
        event of its current status. For a command redelivered after a crash that may have
        lost its events: consumers (and the journal) drop what they already have and learn
        what they missed. Intermediate states already passed (an ACCEPTED before a fill) are
        not restated: the fills and the current status carry the facts.
        """
        events: list[Message] = []
        broker = order.extra.get("submitted_to", order.broker)
        if broker and order.status is not S.NEW:
            events.append(self._submitted_event(order, broker, int(order.extra.get("submitted_ts", order.created_ts))))
        events += [self._fill_event(order, fill) for fill in order.fills]
        lifecycle = self._lifecycle_for(order)
        if lifecycle is not None:
            events.append(lifecycle)
        return events

    # -- event construction ------------------------------------------------------------------
    def _submitted_event(self, order: TrackedOrder, broker: str, ts_event: int) -> Message:
        # As it was when sent: not yet filled, no broker order id yet.
        return self._lifecycle(order, OrderSubmitted, ts_event, fact=broker, cum_filled_qty=0.0, broker=broker,
                               broker_order_id=order.extra.get("submitted_broker_order_id", ""))

    def _lifecycle_for(self, order: TrackedOrder) -> Message | None:
        """The lifecycle event of the order's current status (its ``updated_ts`` is the report's time)."""
        ts = order.updated_ts
        status = order.status
        reason = order.extra.get("reason", "")
        if status is S.ACCEPTED:
            return self._lifecycle(order, OrderAccepted, ts)
        if status is S.PARTIALLY_FILLED:
            return self._lifecycle(order, OrderPartiallyFilled, ts, avg_fill_price=order.avg_fill_price)
        if status is S.FILLED:
            return self._lifecycle(order, OrderFilled, ts, avg_fill_price=order.avg_fill_price)
        if status is S.CANCELED:
            return self._lifecycle(order, OrderCanceled, ts, reason=reason)
        if status is S.REJECTED:
            return self._lifecycle(order, OrderRejected, ts, reason=reason or "rejected by broker")
        if status is S.EXPIRED:
            return self._lifecycle(order, OrderExpired, ts)
        return None  # PENDING_CANCEL / SUBMITTED have no lifecycle event of their own

    def envelope(self, order: TrackedOrder, kind: str, fact: str) -> dict[str, Any]:
        """Envelope fields of an event of type ``kind`` about ``order``; the id is fixed by ``fact``."""
        return {"event_id": event_id(order.command_id, f"execution:{kind}:{order.client_order_id}:{fact}"),
                "correlation_id": order.correlation_id, "causation_id": order.command_id, "source": self.source,
                "ts_init": int(self._clock())}

    def _lifecycle(self, order: TrackedOrder, cls: type[E], ts_event: int, fact: str = "",
                   cum_filled_qty: float | None = None, **extra: Any) -> E:
        cum = order.cum_filled_qty if cum_filled_qty is None else cum_filled_qty
        name = cls.__name__
        # In the model's field order: lifecycle_event assembles it when validation would change nothing.
        values = {"event_id": event_id(order.command_id, f"execution:{name}:{order.client_order_id}:{cum!r}:{fact}"),
                  "event_type": name, "schema_version": cls.SCHEMA_VERSION, "ts_event": ts_event,
                  "ts_init": int(self._clock()), "source": self.source, "correlation_id": order.correlation_id,
                  "causation_id": order.command_id, "client_order_id": order.client_order_id,
                  "broker": order.broker or "unrouted", "broker_order_id": order.broker_order_id, "symbol": order.symbol,
                  "side": order.side, "quantity": order.quantity, "cum_filled_qty": cum}
        values.update(extra)  # overrides keep their place; the class's own field goes last
        return lifecycle_event(cls, values)

    def _fill(self, order: TrackedOrder, report: BrokerReport, delta: float) -> FillReported:
        assert report.avg_fill_price is not None  # checked by apply()
        cum = report.cum_filled_qty
        if report.last_fill_price is not None and report.last_fill_qty is not None and _qty_eq(report.last_fill_qty, delta):
            price = report.last_fill_price
        else:
            # Notional conservation: cum·avg_new = prev_cum·avg_prev + delta·price.
            prev_notional = order.cum_filled_qty * (order.avg_fill_price or 0.0)
            price = (cum * report.avg_fill_price - prev_notional) / delta
        fill = {"fill_id": report.fill_id or f"{order.client_order_id}:{cum!r}", "ts_event": report.ts_event,
                "broker": report.broker, "quantity": delta, "price": price, "fee": max(0.0, report.cum_fee - order.cum_fee)}
        order.fills.append(fill)
        return self._fill_event(order, fill)

    def _fill_event(self, order: TrackedOrder, fill: dict[str, Any]) -> FillReported:
        """The event of one recorded fill; its id is fixed by the fill id."""
        arrival = order.arrival_price
        quantity, price = float(fill["quantity"]), float(fill["price"])
        return FillReported(
            **self.envelope(order, "FillReported", str(fill["fill_id"])),
            ts_event=int(fill["ts_event"]),
            fill_id=str(fill["fill_id"])[:128],
            client_order_id=order.client_order_id,
            broker=str(fill["broker"]),
            symbol=order.symbol,
            side=order.side,
            quantity=quantity,
            price=price,
            fee=float(fill["fee"]),
            arrival_price=arrival,
            slippage=order.side.sign * (price - arrival) * quantity if arrival else 0.0,
        )
