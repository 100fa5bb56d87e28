"""The broker port: what execution needs from any broker, including what reconciliation needs.

Error contract (how an adapter must translate its transport's failures):

- :class:`OrderRejectedError` — the broker refused the order definitively (no order exists);
- :class:`DuplicateClientOrderIdError` — "client_order_id must be unique": the order already
  exists at the broker; the caller looks it up instead of resubmitting;
- :class:`BrokerUnavailableError` — the request certainly did not reach the broker (connection
  refused, DNS failure, breaker open): safe to route elsewhere;
- :class:`AmbiguousOutcomeError` — the request may or may not have been applied (timeout,
  connection reset after sending): the caller must look the order up by client order id and
  must never route it to another broker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ata.events import OrderStatus, OrderType, Side, TimeInForce
from ata.execution.core.state_machine import BrokerReport


class BrokerError(Exception):
    """Base of every error a broker adapter raises."""


class OrderRejectedError(BrokerError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DuplicateClientOrderIdError(BrokerError):
    """The broker already holds an order with this client order id."""


class BrokerUnavailableError(BrokerError):
    """The request did not reach the broker."""


class AmbiguousOutcomeError(BrokerError):
    """The request may have been applied; resolve by looking the order up."""


DUPLICATE_MESSAGE = "client_order_id must be unique"


@dataclass(frozen=True)
class OrderRequest:
    client_order_id: str
    symbol: str
    side: Side
    quantity: float
    order_type: OrderType = OrderType.MARKET
    limit_price: float | None = None
    stop_price: float | None = None
    time_in_force: TimeInForce = TimeInForce.DAY

    def to_json(self) -> dict[str, Any]:
        return {"client_order_id": self.client_order_id, "symbol": self.symbol, "side": self.side.value,
                "quantity": self.quantity, "order_type": self.order_type.value, "limit_price": self.limit_price,
                "stop_price": self.stop_price, "time_in_force": self.time_in_force.value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OrderRequest:
        return cls(client_order_id=str(data["client_order_id"]), symbol=str(data["symbol"]), side=Side(data["side"]),
                   quantity=float(data["quantity"]), order_type=OrderType(data.get("order_type", "market")),
                   limit_price=data.get("limit_price"), stop_price=data.get("stop_price"),
                   time_in_force=TimeInForce(data.get("time_in_force", "day")))


@dataclass(frozen=True)
class BrokerOrder:
    """The broker's view of one order (cumulative quantities and fees)."""

    request: OrderRequest
    broker_order_id: str
    status: OrderStatus
    cum_filled_qty: float = 0.0
    avg_fill_price: float | None = None
    cum_fee: float = 0.0
    reason: str = ""
    ts_event: int = 0
    fill_id: str | None = None
    last_fill_price: float | None = None
    last_fill_qty: float | None = None

    @property
    def client_order_id(self) -> str:
        return self.request.client_order_id

    def report(self, broker: str) -> BrokerReport:
        return BrokerReport(client_order_id=self.client_order_id, broker=broker, status=self.status,
                            ts_event=self.ts_event, broker_order_id=self.broker_order_id,
                            cum_filled_qty=self.cum_filled_qty, avg_fill_price=self.avg_fill_price, cum_fee=self.cum_fee,
                            reason=self.reason, fill_id=self.fill_id, last_fill_price=self.last_fill_price,
                            last_fill_qty=self.last_fill_qty)

    def to_json(self) -> dict[str, Any]:
        return {"request": self.request.to_json(), "broker_order_id": self.broker_order_id, "status": self.status.value,
                "cum_filled_qty": self.cum_filled_qty, "avg_fill_price": self.avg_fill_price, "cum_fee": self.cum_fee,
                "reason": self.reason, "ts_event": self.ts_event, "fill_id": self.fill_id,
                "last_fill_price": self.last_fill_price, "last_fill_qty": self.last_fill_qty}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BrokerOrder:
        return cls(request=OrderRequest.from_json(data["request"]), broker_order_id=str(data["broker_order_id"]),
                   status=OrderStatus(data["status"]), cum_filled_qty=float(data["cum_filled_qty"]),
                   avg_fill_price=data.get("avg_fill_price"), cum_fee=float(data.get("cum_fee", 0.0)),
                   reason=str(data.get("reason", "")), ts_event=int(data.get("ts_event", 0)), fill_id=data.get("fill_id"),
                   last_fill_price=data.get("last_fill_price"), last_fill_qty=data.get("last_fill_qty"))


@dataclass(frozen=True)
class BrokerFill:
    """One execution at the broker; ``quantity`` is incremental."""

    fill_id: str
    client_order_id: str
    symbol: str
    side: Side
    quantity: float
    price: float
    fee: float
    ts_event: int

    def to_json(self) -> dict[str, Any]:
        return {"fill_id": self.fill_id, "client_order_id": self.client_order_id, "symbol": self.symbol,
                "side": self.side.value, "quantity": self.quantity, "price": self.price, "fee": self.fee,
                "ts_event": self.ts_event}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BrokerFill:
        return cls(fill_id=str(data["fill_id"]), client_order_id=str(data["client_order_id"]), symbol=str(data["symbol"]),
                   side=Side(data["side"]), quantity=float(data["quantity"]), price=float(data["price"]),
                   fee=float(data["fee"]), ts_event=int(data["ts_event"]))


@dataclass(frozen=True)
class BrokerPosition:
    symbol: str
    quantity: float  # signed: long > 0, short < 0
    avg_price: float = 0.0


@dataclass(frozen=True)
class FillPage:
    fills: tuple[BrokerFill, ...]
    cursor: str  # pass back to ``fills_since`` for the next page


@runtime_checkable
class BrokerPort(Protocol):
    """One broker account. Every method may raise the errors in this module's docstring."""

    name: str

    async def submit(self, request: OrderRequest) -> BrokerOrder: ...

    async def cancel(self, client_order_id: str) -> BrokerOrder | None:
        """Request cancellation; returns the order as known after the request (None if unknown)."""
        ...

    async def get_order(self, client_order_id: str) -> BrokerOrder | None:
        """The order with this client order id, or None if the broker has none."""
        ...

    async def open_orders(self) -> list[BrokerOrder]: ...

    async def positions(self) -> list[BrokerPosition]: ...

    async def fills_since(self, cursor: str | None) -> FillPage:
        """Fills after ``cursor`` (from the beginning when None), oldest first."""
        ...

    def updates(self) -> AsyncIterator[BrokerOrder]:
        """Order snapshots as they change (trade-update stream); ends when the adapter closes."""
        ...

    async def close(self) -> None: ...
