"""Risk's per-order outputs (``SubmitOrder``, ``OrderDenied``) and their ids, built on the hot path.

Every decision pays for two uuid5 ids (the output's event id and the intent id) and one model.
This module builds them with the same results as the generic constructors, only cheaper, through
:mod:`ata.events.fastpath`:

- :func:`derived_id` equals ``ata.events.derived_id`` (uuid5 of the cause id and
  ``"<salt>\\x1f<index>"``), computed by ``uuid5_of`` instead of ``uuid.uuid5``;
- :class:`OrderOutputs` builds ``SubmitOrder`` / ``OrderDenied`` equal to
  ``cls.caused_by(cause, index=..., source=..., ts_event=..., **fields)`` (same field values,
  same ``model_fields_set``, same JSON bytes). When every value passes the checks here (plain
  Python: exact types, bounds, finiteness, lengths, patterns) the model is *assembled* without
  re-validation; any other value goes through the validated constructor, which raises the usual
  ``ValidationError``. A ``SubmitOrder`` is always given every field (a market order: no limit or
  stop price, time in force DAY), so both paths set all fields.

Both equalities are property-tested at every bound (``test_risk_outputs.py``).
"""

from __future__ import annotations

import functools
import math
import re
import uuid
from typing import Final

from ata.events import DenialReason, Message, OrderDenied, OrderType, Side, SubmitOrder, TimeInForce
from ata.events.envelope import MAX_TS_NS, MIN_TS_NS
from ata.events.fastpath import assemblable, assembled, uuid5_of
from ata.events.values import CLIENT_ORDER_ID_MAX, SYMBOL_PATTERN

_ENVELOPE: Final = ("event_id", "event_type", "schema_version", "ts_event", "ts_init", "source", "correlation_id",
                    "causation_id")
_ORDER_FIELDS: Final = (*_ENVELOPE, "intent_id", "client_order_id", "symbol", "side", "quantity", "order_type",
                        "limit_price", "stop_price", "time_in_force", "reason")
_DENIAL_FIELDS: Final = (*_ENVELOPE, "intent_id", "symbol", "reason", "detail")
#: A market order without limit or stop price passes ``SubmitOrder``'s price/type validator, and
#: the envelope's "before" validator only fills ``event_type``/``schema_version``, given here.
_FAST: Final = assemblable(SubmitOrder, _ORDER_FIELDS) and assemblable(OrderDenied, _DENIAL_FIELDS)
_SYMBOL: Final = re.compile(SYMBOL_PATTERN)
_CLIENT_ORDER_ID: Final = re.compile(r"^[A-Za-z0-9_\-.:]+$")
_MAX_REASON: Final = 500  # SubmitOrder.reason
_MAX_DETAIL: Final = 1000  # OrderDenied.detail


@functools.lru_cache(maxsize=4096)
def _valid_symbol(symbol: str) -> bool:
    """Whether ``symbol`` matches the symbol pattern; symbols are few and repeat on every order."""
    return _SYMBOL.fullmatch(symbol) is not None


def derived_id(cause_id: uuid.UUID, output_index: int, salt: str = "") -> uuid.UUID:
    """Same contract and result as :func:`ata.events.derived_id`."""
    return uuid5_of(cause_id.bytes, f"{salt}\x1f{output_index}".encode())


class OrderOutputs:
    """Builds one source's ``SubmitOrder`` and ``OrderDenied`` messages.

    ``submit_order(cause, index, ...)`` equals ``SubmitOrder.caused_by(cause, index=index,
    source=source, ts_event=ts_event, intent_id=..., client_order_id=..., symbol=..., side=...,
    quantity=..., order_type=MARKET, limit_price=None, stop_price=None, time_in_force=DAY,
    reason=...)``, and ``order_denied`` likewise; invalid values raise the same ``ValidationError``.
    The event-id salt (``"<service>:<class>"``) is encoded once.
    """

    __slots__ = ("_denial_salt", "_order_salt", "_source_ok", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        service = source.split("/", maxsplit=1)[0]
        self._order_salt = f"{service}:{SubmitOrder.__name__}\x1f"
        self._denial_salt = f"{service}:{OrderDenied.__name__}\x1f"
        self._source_ok = _FAST and type(source) is str and 1 <= len(source) <= 200

    # -- checks: True only when validation would accept the value unchanged ------------------------

    def _envelope_ok(self, cause: Message, ts_event: int) -> bool:
        return (self._source_ok and type(ts_event) is int and MIN_TS_NS <= ts_event <= MAX_TS_NS
                and type(cause.event_id) is uuid.UUID and type(cause.correlation_id) is uuid.UUID)

    # -- builders ------------------------------------------------------------------------------------

    def submit_order(self, cause: Message, index: int, ts_event: int, *, intent_id: uuid.UUID, client_order_id: str,
                     symbol: str, side: Side, quantity: float, reason: str) -> SubmitOrder:
        cause_id = cause.event_id
        event_id = uuid5_of(cause_id.bytes, f"{self._order_salt}{index}".encode())
        if (self._envelope_ok(cause, ts_event) and type(intent_id) is uuid.UUID and type(client_order_id) is str
                and 1 <= len(client_order_id) <= CLIENT_ORDER_ID_MAX and _CLIENT_ORDER_ID.fullmatch(client_order_id)
                and type(symbol) is str and _valid_symbol(symbol) and type(side) is Side and type(quantity) is float
                and 0.0 < quantity < math.inf and type(reason) is str and len(reason) <= _MAX_REASON):
            return assembled(SubmitOrder, {
                "event_id": event_id, "event_type": "SubmitOrder", "schema_version": SubmitOrder.SCHEMA_VERSION,
                "ts_event": ts_event, "ts_init": ts_event, "source": self.source, "correlation_id": cause.correlation_id,
                "causation_id": cause_id, "intent_id": intent_id, "client_order_id": client_order_id, "symbol": symbol,
                "side": side, "quantity": quantity, "order_type": OrderType.MARKET, "limit_price": None,
                "stop_price": None, "time_in_force": TimeInForce.DAY, "reason": reason,
            })
        return SubmitOrder(
            event_type=SubmitOrder.__name__, event_id=event_id, ts_event=ts_event, ts_init=ts_event, source=self.source,
            correlation_id=cause.correlation_id, causation_id=cause_id, intent_id=intent_id,
            client_order_id=client_order_id, symbol=symbol, side=side, quantity=quantity, order_type=OrderType.MARKET,
            limit_price=None, stop_price=None, time_in_force=TimeInForce.DAY, reason=reason,
        )

    def order_denied(self, cause: Message, index: int, ts_event: int, *, intent_id: uuid.UUID, symbol: str,
                     reason: DenialReason, detail: str) -> OrderDenied:
        cause_id = cause.event_id
        event_id = uuid5_of(cause_id.bytes, f"{self._denial_salt}{index}".encode())
        if (self._envelope_ok(cause, ts_event) and type(intent_id) is uuid.UUID and type(symbol) is str and _valid_symbol(symbol)
                and type(reason) is DenialReason and type(detail) is str and len(detail) <= _MAX_DETAIL):
            return assembled(OrderDenied, {
                "event_id": event_id, "event_type": "OrderDenied", "schema_version": OrderDenied.SCHEMA_VERSION,
                "ts_event": ts_event, "ts_init": ts_event, "source": self.source, "correlation_id": cause.correlation_id,
                "causation_id": cause_id, "intent_id": intent_id, "symbol": symbol, "reason": reason, "detail": detail,
            })
        return OrderDenied(
            event_type=OrderDenied.__name__, event_id=event_id, ts_event=ts_event, ts_init=ts_event, source=self.source,
            correlation_id=cause.correlation_id, causation_id=cause_id, intent_id=intent_id, symbol=symbol,
            reason=reason, detail=detail,
        )
