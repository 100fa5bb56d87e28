"""Execution-side events: order status vocabulary, reconciliation alignment, execution quality.

Lifecycle events themselves live in :mod:`ata.events.orders`; these are what execution
publishes about its own bookkeeping: a refused (illegal) status transition, an order or
position realigned with a broker during reconciliation, and the measured quality of a
completed execution.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from ata.events.envelope import Event
from ata.events.values import ClientOrderId, FiniteFloat, Money, NonNegativeFloat, Price, Quantity, Side, SignedQuantity, Symbol


class OrderStatus(StrEnum):
    """Status of an order in execution's state machine (and as reported by brokers)."""

    NEW = "new"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    PENDING_CANCEL = "pending_cancel"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED})


class OrderTransitionRefused(Event):
    """A broker report asked for a status change the state machine forbids; the order kept its state."""

    client_order_id: ClientOrderId
    broker: str = Field(min_length=1, max_length=64)
    from_status: OrderStatus
    to_status: OrderStatus
    reason: str = Field(max_length=500)


class ReconcileAction(StrEnum):
    """What reconciliation did about one order that differed between our record and a broker."""

    UPDATED = "updated"  # the broker was ahead (missed status change or fill); applied
    ADOPTED = "adopted"  # an order at the broker we had no record of; now tracked
    CANCELED_EXTRA = "canceled_extra"  # an unknown order at the broker, canceled per policy
    RESUBMITTED = "resubmitted"  # never acknowledged and unknown at the broker; sent again, same id
    CLOSED_PHANTOM = "closed_phantom"  # acknowledged once, now unknown at the broker; closed locally


class OrderReconciled(Event):
    """Our record of one order was realigned with a broker."""

    client_order_id: ClientOrderId
    broker: str = Field(min_length=1, max_length=64)
    symbol: Symbol
    action: ReconcileAction
    local_status: OrderStatus | None
    broker_status: OrderStatus | None
    local_cum_filled_qty: Quantity = 0.0
    broker_cum_filled_qty: Quantity = 0.0
    detail: str = Field(default="", max_length=500)


class PositionMismatchDetected(Event):
    """The broker's position differs from the one our fills imply; the broker's is adopted."""

    broker: str = Field(min_length=1, max_length=64)
    symbol: Symbol
    local_quantity: SignedQuantity
    broker_quantity: SignedQuantity


class ExecutionQualityMeasured(Event):
    """Quality of one completed execution against its arrival price.

    ``shortfall_bps`` is the implementation shortfall of the average fill price against the
    arrival price, signed so that positive is a cost for either side;
    ``shortfall_money`` = side · (avg_fill_price − arrival_price) · filled_qty + fees.
    """

    client_order_id: ClientOrderId
    broker: str = Field(min_length=1, max_length=64)
    symbol: Symbol
    side: Side
    filled_qty: Quantity
    arrival_price: Price
    avg_fill_price: Price
    shortfall_bps: FiniteFloat
    shortfall_money: Money
    fees: NonNegativeFloat = 0.0


EXECUTION_ALIGNMENT = (OrderTransitionRefused, OrderReconciled, PositionMismatchDetected)
