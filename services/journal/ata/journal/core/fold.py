"""Folding journaled messages into state: risk's engine (portfolio, limits, trading state) and the order book. Pure.

The journal rebuilds state through the services' own code, never a re-implementation:

- **risk**: :class:`~ata.risk.core.RiskEngine` is fed exactly the message types risk consumes
  (those carried by its subscribed topics), in journal order; the outputs it returns are
  ignored (they are journaled already, with the same ids). The portfolio — positions, cash,
  realised and unrealised P&L, fees — is the engine's :class:`ata.quant.accounting.Portfolio`.
- **orders**: :class:`OrderBook` replays order commands, lifecycle events and fills through
  execution's :class:`~ata.execution.core.state_machine.OrderStateMachine`, so each order ends in
  the state execution's own engine holds for it. Not visible in events, hence not rebuilt:
  ``PENDING_CANCEL`` (no event of its own; the broker's answer follows), and execution-internal
  bookkeeping (TWAP slices, submit attempts, arrival prices).

Journal order (``seq``) is the fold order; for a single consumer (a backtest, one partition per
key) it is the order risk handled the messages in.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ata.events import (
    REGISTRY,
    CancelOrder,
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
    SubmitOrder,
)
from ata.execution.core.state_machine import BrokerReport, IllegalTransition, OrderStateMachine, TrackedOrder
from ata.risk.config import RiskSettings
from ata.risk.core import RiskEngine

#: Order status reported by each lifecycle event (OrderSubmitted is applied as a local transition).
STATUS_OF: dict[type[Message], OrderStatus] = {
    OrderAccepted: OrderStatus.ACCEPTED,
    OrderPartiallyFilled: OrderStatus.PARTIALLY_FILLED,
    OrderFilled: OrderStatus.FILLED,
    OrderCanceled: OrderStatus.CANCELED,
    OrderRejected: OrderStatus.REJECTED,
    OrderExpired: OrderStatus.EXPIRED,
}
ORDER_TYPES: tuple[type[Message], ...] = (SubmitOrder, CancelOrder, OrderSubmitted, FillReported, *STATUS_OF)
#: Fields of an order that the journal can rebuild (see the module docstring).
ORDER_FIELDS = ("client_order_id", "symbol", "side", "quantity", "order_type", "limit_price", "stop_price", "time_in_force",
                "intent_id", "command_id", "correlation_id", "broker", "broker_order_id", "status", "cum_filled_qty",
                "avg_fill_price", "cum_fee")


def consumed_types(topics: Iterable[str]) -> tuple[type[Message], ...]:
    """Every message type carried by the registry topics ``topics`` (what a service subscribed to them sees)."""
    types: list[type[Message]] = []
    for name in topics:
        types.extend(t for t in REGISTRY.get(name).value_types if t not in types)
    return tuple(types)


def order_view(order: TrackedOrder) -> dict[str, Any]:
    """The rebuildable part of an order (:data:`ORDER_FIELDS`) as plain JSON values (ids as text; the enums
    are string enums). Read from the order itself, not its snapshot, which may leave default values out."""
    view = {name: getattr(order, name) for name in ORDER_FIELDS}
    return {name: str(value) if isinstance(value, uuid.UUID) else value for name, value in view.items()}


def _zero_clock() -> int:
    return 0


@dataclass
class OrderBook:
    """Orders rebuilt from commands, lifecycle events and fills (see the module docstring).

    ``anomalies`` lists what could not be applied (an event for a transition the state machine
    refuses): the journal records what happened, the book keeps the last legal state.
    """

    orders: dict[str, TrackedOrder] = field(default_factory=dict)
    fees: dict[str, float] = field(default_factory=dict)
    anomalies: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._sm = OrderStateMachine("journal", _zero_clock)

    def open_orders(self) -> list[TrackedOrder]:
        """Orders that may still be live at a broker: sent and not terminal."""
        return [o for o in self.orders.values() if o.status is not OrderStatus.NEW and not o.status.terminal]

    def apply(self, message: Message) -> None:
        if isinstance(message, SubmitOrder):
            self.orders.setdefault(message.client_order_id, TrackedOrder(
                client_order_id=message.client_order_id, symbol=message.symbol, side=message.side,
                quantity=message.quantity, command_id=message.event_id, correlation_id=message.correlation_id,
                created_ts=message.ts_event, order_type=message.order_type, limit_price=message.limit_price,
                stop_price=message.stop_price, time_in_force=message.time_in_force, intent_id=str(message.intent_id)))
        elif isinstance(message, FillReported):
            coid = message.client_order_id
            self.fees[coid] = self.fees.get(coid, self._known_fee(coid)) + message.fee
        elif isinstance(message, OrderSubmitted):
            order = self._order(message)
            if order.status is OrderStatus.NEW:
                self._sm.submitted(order, message.broker, message.ts_event)
            else:  # rerouted before any broker answered
                order.broker = message.broker
        elif isinstance(message, OrderAccepted | OrderPartiallyFilled | OrderFilled | OrderCanceled | OrderRejected
                        | OrderExpired):
            self._report(message)

    def _known_fee(self, coid: str) -> float:
        order = self.orders.get(coid)
        return order.cum_fee if order is not None else 0.0

    def _order(self, event: OrderSubmitted | OrderAccepted | OrderPartiallyFilled | OrderFilled | OrderCanceled
               | OrderRejected | OrderExpired) -> TrackedOrder:
        order = self.orders.get(event.client_order_id)
        if order is None:  # adopted at a broker, or its command lies before the journal's start
            order = self.orders[event.client_order_id] = TrackedOrder(
                client_order_id=event.client_order_id, symbol=event.symbol, side=event.side, quantity=event.quantity,
                command_id=event.causation_id or event.event_id, correlation_id=event.correlation_id,
                created_ts=event.ts_event, broker=event.broker, status=OrderStatus.SUBMITTED)
        return order

    def _report(self, event: OrderAccepted | OrderPartiallyFilled | OrderFilled | OrderCanceled | OrderRejected
                | OrderExpired) -> None:
        order = self._order(event)
        coid = order.client_order_id
        avg = event.avg_fill_price if isinstance(event, OrderPartiallyFilled | OrderFilled) else order.avg_fill_price
        reason = event.reason if isinstance(event, OrderCanceled | OrderRejected) else ""
        report = BrokerReport(coid, event.broker, STATUS_OF[type(event)], event.ts_event,
                              broker_order_id=event.broker_order_id, cum_filled_qty=event.cum_filled_qty,
                              avg_fill_price=avg, cum_fee=self.fees.get(coid, order.cum_fee), reason=reason)
        try:
            self._sm.apply(order, report)
        except IllegalTransition as exc:
            self.anomalies.append(str(exc))
        order.broker = event.broker

    def snapshot(self) -> dict[str, Any]:
        return {"orders": [o.snapshot() for o in self.orders.values()], "fees": dict(self.fees),
                "anomalies": list(self.anomalies)}

    @classmethod
    def restore(cls, state: dict[str, Any]) -> OrderBook:
        orders = {o["client_order_id"]: TrackedOrder.restore(o) for o in state["orders"]}
        return cls(orders=orders, fees=dict(state["fees"]), anomalies=list(state["anomalies"]))


class StateFolder:
    """Risk engine + order book, folded together over journaled messages; ``seq``/``ts_ns`` say how far."""

    def __init__(self, risk_settings: RiskSettings, risk_types: tuple[type[Message], ...], *,
                 risk: RiskEngine | None = None, orders: OrderBook | None = None, seq: int = 0, ts_ns: int = 0) -> None:
        self.risk_settings = risk_settings
        self.risk_types = risk_types
        self.risk = risk or RiskEngine(risk_settings, source="risk")
        self.orders = orders or OrderBook()
        self.seq = seq
        self.ts_ns = ts_ns
        self.folded = 0

    def apply(self, seq: int, message: Message) -> None:
        if isinstance(message, self.risk_types):
            self.risk.handle(message)
        if isinstance(message, ORDER_TYPES):
            self.orders.apply(message)
        self.seq = max(self.seq, seq)
        self.ts_ns = max(self.ts_ns, message.ts_event)
        self.folded += 1

    def snapshot(self) -> dict[str, Any]:
        return {"risk": self.risk.snapshot(), "orders": self.orders.snapshot()}

    @classmethod
    def restore(cls, risk_settings: RiskSettings, risk_types: tuple[type[Message], ...], state: dict[str, Any], *,
                seq: int, ts_ns: int) -> StateFolder:
        return cls(risk_settings, risk_types, risk=RiskEngine.restore(risk_settings, state["risk"], source="risk"),
                   orders=OrderBook.restore(state["orders"]), seq=seq, ts_ns=ts_ns)
