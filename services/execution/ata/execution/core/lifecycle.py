"""Order lifecycle events built on the hot path through :mod:`ata.events.fastpath`.

Every command produces at least two lifecycle events (submitted, accepted) and the state
machine builds them from values it already holds; validating those again costs more than the
rest of the state change. :func:`lifecycle_event` equals ``cls(**values)``: when each value is
one validation would accept *unchanged* (exact types, bounds, lengths, patterns, finiteness)
the model is assembled without validation, otherwise it is validated and raises the usual
``ValidationError``. The tests hold the two paths to identical models and wire bytes.
"""

from __future__ import annotations

import functools
import math
import re
import uuid
from typing import Any, Final, TypeVar

from ata.events import (
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderSubmitted,
    Side,
)
from ata.events.envelope import MAX_TS_NS, MIN_TS_NS, Message
from ata.events.fastpath import assemblable, assembled, uuid5_of
from ata.events.values import CLIENT_ORDER_ID_MAX, SYMBOL_PATTERN

E = TypeVar("E", bound=Message)

#: The fields every lifecycle event has, in declaration order; ``avg_fill_price`` or ``reason`` follow for some.
ORDER_FIELDS: Final = ("event_id", "event_type", "schema_version", "ts_event", "ts_init", "source", "correlation_id",
                       "causation_id", "client_order_id", "broker", "broker_order_id", "symbol", "side", "quantity",
                       "cum_filled_qty")
#: The model's field beyond :data:`ORDER_FIELDS`, per lifecycle event type.
EXTRA_FIELD: Final[dict[type[Message], str | None]] = {
    OrderSubmitted: None, OrderAccepted: None, OrderExpired: None, OrderPartiallyFilled: "avg_fill_price",
    OrderFilled: "avg_fill_price", OrderCanceled: "reason", OrderRejected: "reason",
}
_ASSEMBLABLE: Final = frozenset(
    cls for cls, extra in EXTRA_FIELD.items() if assemblable(cls, ORDER_FIELDS + ((extra,) if extra else ())))
_SYMBOL: Final = re.compile(SYMBOL_PATTERN)
_CLIENT_ORDER_ID: Final = re.compile(r"^[A-Za-z0-9_\-.:]+$")
_MAX_SOURCE, _MAX_BROKER, _MAX_BROKER_ORDER_ID, _MAX_REASON = 200, 64, 128, 500


@functools.lru_cache(maxsize=4096)
def _valid_symbol(symbol: str) -> bool:
    return _SYMBOL.fullmatch(symbol) is not None


@functools.lru_cache(maxsize=65536)
def _valid_client_order_id(client_order_id: str) -> bool:
    return 1 <= len(client_order_id) <= CLIENT_ORDER_ID_MAX and _CLIENT_ORDER_ID.fullmatch(client_order_id) is not None


def event_id(command_id: uuid.UUID, salt: str) -> uuid.UUID:
    """``ata.events.derived_id(command_id, 0, salt=salt)``."""
    return uuid5_of(command_id.bytes, f"{salt}\x1f0".encode())


def _ts(value: Any) -> bool:
    return type(value) is int and MIN_TS_NS <= value <= MAX_TS_NS


def _str(value: Any, low: int, high: int) -> bool:
    return type(value) is str and low <= len(value) <= high


def _float(value: Any, low: float, *, inclusive: bool) -> bool:
    return type(value) is float and (value >= low if inclusive else value > low) and value < math.inf


def _unchanged_by_validation(cls: type[Message], values: dict[str, Any]) -> bool:
    """Whether validating ``values`` as ``cls`` would accept every value as it is."""
    if cls not in _ASSEMBLABLE or values["event_type"] != cls.__name__ or values["schema_version"] != cls.SCHEMA_VERSION:
        return False
    extra = EXTRA_FIELD[cls]
    if extra == "avg_fill_price" and not _float(values[extra], 0.0, inclusive=False):
        return False
    if extra == "reason" and not _str(values[extra], 0, _MAX_REASON):
        return False
    return (type(values["event_id"]) is uuid.UUID and _ts(values["ts_event"]) and _ts(values["ts_init"])
            and _str(values["source"], 1, _MAX_SOURCE) and type(values["correlation_id"]) is uuid.UUID
            and type(values["causation_id"]) is uuid.UUID and type(values["client_order_id"]) is str
            and _valid_client_order_id(values["client_order_id"]) and _str(values["broker"], 1, _MAX_BROKER)
            and _str(values["broker_order_id"], 0, _MAX_BROKER_ORDER_ID) and type(values["symbol"]) is str
            and _valid_symbol(values["symbol"]) and type(values["side"]) is Side
            and _float(values["quantity"], 0.0, inclusive=False) and _float(values["cum_filled_qty"], 0.0, inclusive=True))


def lifecycle_event(cls: type[E], values: dict[str, Any]) -> E:
    """``cls(**values)`` for ``values`` naming every field of ``cls`` in declaration order (see the module docstring)."""
    if _unchanged_by_validation(cls, values):
        return assembled(cls, values)
    return cls(**values)
