"""Order commands, order lifecycle events and fills. Keyed by client order id."""

from __future__ import annotations

import uuid

from pydantic import Field, model_validator

from ata.events.envelope import Command, Event
from ata.events.values import (
    ClientOrderId,
    Money,
    NonNegativeFloat,
    OrderType,
    PositiveQuantity,
    Price,
    Quantity,
    Side,
    Symbol,
    TimeInForce,
)


class SubmitOrder(Command):
    """Risk-approved order intent. ``client_order_id`` == ``client_order_id_for(intent_id)``."""

    intent_id: uuid.UUID
    client_order_id: ClientOrderId
    symbol: Symbol
    side: Side
    quantity: PositiveQuantity
    order_type: OrderType = OrderType.MARKET
    limit_price: Price | None = None
    stop_price: Price | None = None
    time_in_force: TimeInForce = TimeInForce.DAY
    reason: str = Field(default="", max_length=500)

    @model_validator(mode="after")
    def _prices_match_type(self) -> SubmitOrder:
        if self.order_type is OrderType.LIMIT and self.limit_price is None:
            raise ValueError("limit order needs limit_price")
        if self.order_type is OrderType.STOP and self.stop_price is None:
            raise ValueError("stop order needs stop_price")
        if self.order_type is OrderType.MARKET and (self.limit_price or self.stop_price):
            raise ValueError("market order takes no limit_price or stop_price")
        return self


class CancelOrder(Command):
    client_order_id: ClientOrderId
    reason: str = Field(default="", max_length=500)


class _OrderEvent(Event):
    """Fields every lifecycle event carries. ``cum_filled_qty`` is cumulative."""

    client_order_id: ClientOrderId
    broker: str = Field(min_length=1, max_length=64)
    broker_order_id: str = Field(default="", max_length=128)
    symbol: Symbol
    side: Side
    quantity: PositiveQuantity
    cum_filled_qty: Quantity = 0.0


class OrderSubmitted(_OrderEvent):
    pass


class OrderAccepted(_OrderEvent):
    pass


class OrderPartiallyFilled(_OrderEvent):
    avg_fill_price: Price


class OrderFilled(_OrderEvent):
    avg_fill_price: Price


class OrderCanceled(_OrderEvent):
    reason: str = Field(default="", max_length=500)


class OrderRejected(_OrderEvent):
    reason: str = Field(max_length=500)


class OrderExpired(_OrderEvent):
    pass


class FillReported(Event):
    """One execution. ``quantity`` is incremental (this fill only), never cumulative."""

    fill_id: str = Field(min_length=1, max_length=128)
    client_order_id: ClientOrderId
    broker: str = Field(min_length=1, max_length=64)
    symbol: Symbol
    side: Side
    quantity: PositiveQuantity
    price: Price
    fee: NonNegativeFloat = 0.0
    arrival_price: Price | None = Field(default=None, description="mid/last when the order arrived")
    slippage: Money = 0.0


ORDER_LIFECYCLE = (
    OrderSubmitted,
    OrderAccepted,
    OrderPartiallyFilled,
    OrderFilled,
    OrderCanceled,
    OrderRejected,
    OrderExpired,
)
