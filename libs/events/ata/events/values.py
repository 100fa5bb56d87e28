"""Value types shared by every event, and the platform's numeric policy.

Numeric policy
--------------
Prices, quantities, cash and P&L are IEEE-754 ``float`` everywhere (on the wire as
JSON numbers, in cores, in the journal). Floats keep the hot paths fast (backtests
run hundreds of thousands of bars per second) and interoperate with numpy. Where a
value crosses into the outside world it is rounded explicitly and only there:

- an order's price is rounded to the instrument's tick with :func:`round_price`
  (half-even, via ``Decimal`` so 0.1 + 0.2 style noise never shifts a tick);
- an order's quantity is rounded *down* to the lot with :func:`round_quantity`, so
  sizing never exceeds a limit because of rounding;
- money reported to humans is rounded to cents only for display.

Accounting comparisons use a relative tolerance of 1e-9 (see ``ata.quant``).
Non-finite numbers (NaN, inf) are rejected by every model.
"""

from __future__ import annotations

import uuid
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints

#: Upper-case ticker-like symbols (``AAPL``, ``BRK.B``, ``BTC/USD``) or ``_market``,
#: the key regime detection uses for the market as a whole.
SYMBOL_PATTERN = r"^(_market|[A-Z0-9][A-Z0-9._/\-]{0,31})$"
MARKET_KEY = "_market"

Symbol = Annotated[str, StringConstraints(pattern=SYMBOL_PATTERN)]
Price = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Quantity = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PositiveQuantity = Annotated[float, Field(gt=0, allow_inf_nan=False)]
SignedQuantity = Annotated[float, Field(allow_inf_nan=False)]
Money = Annotated[float, Field(allow_inf_nan=False)]
Unit = Annotated[float, Field(ge=-1.0, le=1.0, allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]

#: Alpaca accepts at most 128 characters; ours are 40 (``ata-`` and a 36-character UUID).
CLIENT_ORDER_ID_MAX = 128
ClientOrderId = Annotated[str, StringConstraints(min_length=1, max_length=CLIENT_ORDER_ID_MAX, pattern=r"^[A-Za-z0-9_\-.:]+$")]


def client_order_id_for(intent_id: uuid.UUID) -> str:
    """The broker-facing client order id of an order intent.

    Deterministic, so a retry or a replay of the same intent can never create a second
    order at a broker: brokers reject a reused client order id.
    """
    return f"ata-{intent_id}"


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"


class TimeInForce(StrEnum):
    DAY = "day"
    GTC = "gtc"
    IOC = "ioc"


def round_price(price: float, tick: float) -> float:
    """Round ``price`` to the nearest multiple of ``tick`` (half-even)."""
    if tick <= 0:
        raise ValueError("tick must be positive")
    d_tick = Decimal(str(tick))
    steps = (Decimal(str(price)) / d_tick).to_integral_value(rounding=ROUND_HALF_EVEN)
    return float(steps * d_tick)


def round_quantity(quantity: float, lot: float) -> float:
    """Round ``quantity`` toward zero to a multiple of ``lot`` (never exceeds the request)."""
    if lot <= 0:
        raise ValueError("lot must be positive")
    d_lot = Decimal(str(lot))
    magnitude = (Decimal(str(abs(quantity))) / d_lot).to_integral_value(rounding=ROUND_FLOOR) * d_lot
    return float(magnitude if quantity >= 0 else -magnitude)
