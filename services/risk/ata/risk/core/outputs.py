"""Risk's hot-path outputs (``SubmitOrder``, ``OrderDenied``, ``PortfolioSnapshotTaken``) and their ids.

Every decision pays for two uuid5 ids (the output's event id and the intent id) and one model, and
every snapshot period a snapshot with one model per position. This module builds them with the same
results as the generic constructors, only cheaper, through :mod:`ata.events.fastpath`:

- :func:`derived_id` equals ``ata.events.derived_id`` (uuid5 of the cause id and
  ``"<salt>\\x1f<index>"``), computed by ``uuid5_of`` instead of ``uuid.uuid5``;
- :class:`OrderOutputs` builds ``SubmitOrder`` / ``OrderDenied`` equal to
  ``cls.caused_by(cause, index=..., source=..., ts_event=..., **fields)`` (same field values,
  same ``model_fields_set``, same JSON bytes). When every value passes the checks here (plain
  Python: exact types, bounds, finiteness, lengths, patterns) the model is *assembled* without
  re-validation; any other value goes through the validated constructor, which raises the usual
  ``ValidationError``. A ``SubmitOrder`` is always given every field (a market order: no limit or
  stop price, time in force DAY), so both paths set all fields.
- :meth:`OrderOutputs.portfolio_snapshot` likewise equals ``PortfolioSnapshotTaken.caused_by(cause,
  index=..., source=..., positions=(PositionView(...), ...), <every other field>)``.

Both equalities are property-tested at every bound (``test_risk_outputs.py``).
"""

from __future__ import annotations

import functools
import math
import re
import uuid
from collections.abc import Iterable
from typing import Final

from ata.events import (
    DenialReason,
    Message,
    OrderDenied,
    OrderType,
    PortfolioSnapshotTaken,
    PositionView,
    Side,
    SubmitOrder,
    TimeInForce,
    TradingState,
)
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
_SNAPSHOT_FIELDS: Final = (*_ENVELOPE, "positions", "cash", "equity", "realized_pnl", "unrealized_pnl", "fees",
                           "gross_exposure", "net_exposure", "drawdown", "trading_state")
_POSITION_FIELDS: Final = ("symbol", "quantity", "avg_price", "mark_price", "realized_pnl", "unrealized_pnl")
_FAST: Final = (assemblable(SubmitOrder, _ORDER_FIELDS) and assemblable(OrderDenied, _DENIAL_FIELDS)
                and assemblable(PortfolioSnapshotTaken, _SNAPSHOT_FIELDS) and assemblable(PositionView, _POSITION_FIELDS))
_SYMBOL: Final = re.compile(SYMBOL_PATTERN)
_CLIENT_ORDER_ID: Final = re.compile(r"^[A-Za-z0-9_\-.:]+$")
_MAX_REASON: Final = 500  # SubmitOrder.reason
_MAX_DETAIL: Final = 1000  # OrderDenied.detail


@functools.lru_cache(maxsize=4096)
def _valid_symbol(symbol: str) -> bool:
    """Whether ``symbol`` matches the symbol pattern; symbols are few and repeat on every order."""
    return _SYMBOL.fullmatch(symbol) is not None


def _finite(value: object) -> bool:
    """A plain finite float: what a ``float`` field without bounds keeps unchanged."""
    return type(value) is float and math.isfinite(value)


#: A position as :meth:`OrderOutputs.portfolio_snapshot` takes it: ``PositionView``'s fields in order.
PositionRow = tuple[str, float, float, float | None, float, float]


def _position_ok(row: PositionRow) -> bool:
    """Whether ``PositionView`` validation keeps ``row``'s values unchanged."""
    symbol, quantity, avg_price, mark_price, realized_pnl, unrealized_pnl = row
    return (type(symbol) is str and _valid_symbol(symbol) and _finite(quantity) and _finite(avg_price) and avg_price >= 0.0
            and (mark_price is None or (_finite(mark_price) and mark_price > 0.0))
            and _finite(realized_pnl) and _finite(unrealized_pnl))


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

    __slots__ = ("_denial_salt", "_order_salt", "_snapshot_salt", "_source_ok", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        service = source.split("/", maxsplit=1)[0]
        self._order_salt = f"{service}:{SubmitOrder.__name__}\x1f"
        self._denial_salt = f"{service}:{OrderDenied.__name__}\x1f"
        self._snapshot_salt = f"{service}:{PortfolioSnapshotTaken.__name__}\x1f"
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

    def portfolio_snapshot(self, cause: Message, index: int, *,
                           positions: Iterable[PositionRow], cash: float,
                           equity: float, realized_pnl: float, unrealized_pnl: float, fees: float, gross_exposure: float,
                           net_exposure: float, drawdown: float, trading_state: TradingState) -> PortfolioSnapshotTaken:
        """``PortfolioSnapshotTaken.caused_by(cause, index=index, source=source, positions=(PositionView(symbol=...,
        quantity=..., avg_price=..., mark_price=..., realized_pnl=..., unrealized_pnl=...), ...), cash=..., ...)``, with
        ``positions`` given as ``(symbol, quantity, avg_price, mark_price, realized_pnl, unrealized_pnl)`` tuples."""
        cause_id = cause.event_id
        event_id = uuid5_of(cause_id.bytes, f"{self._snapshot_salt}{index}".encode())
        rows = tuple(positions)
        ts_event = cause.ts_event
        if (self._envelope_ok(cause, ts_event) and all(_position_ok(row) for row in rows) and _finite(cash)
                and _finite(equity) and _finite(realized_pnl) and _finite(unrealized_pnl) and _finite(fees) and fees >= 0.0
                and _finite(gross_exposure) and gross_exposure >= 0.0 and _finite(net_exposure) and _finite(drawdown)
                and 0.0 <= drawdown <= 1.0 and type(trading_state) is TradingState):
            views = tuple(assembled(PositionView, dict(zip(_POSITION_FIELDS, row, strict=True))) for row in rows)
            return assembled(PortfolioSnapshotTaken, {
                "event_id": event_id, "event_type": "PortfolioSnapshotTaken",
                "schema_version": PortfolioSnapshotTaken.SCHEMA_VERSION, "ts_event": ts_event, "ts_init": ts_event,
                "source": self.source, "correlation_id": cause.correlation_id, "causation_id": cause_id,
                "positions": views, "cash": cash, "equity": equity, "realized_pnl": realized_pnl,
                "unrealized_pnl": unrealized_pnl, "fees": fees, "gross_exposure": gross_exposure,
                "net_exposure": net_exposure, "drawdown": drawdown, "trading_state": trading_state,
            })
        return PortfolioSnapshotTaken(
            event_type=PortfolioSnapshotTaken.__name__, event_id=event_id, ts_event=ts_event, ts_init=ts_event,
            source=self.source, correlation_id=cause.correlation_id, causation_id=cause_id,
            positions=tuple(PositionView(**dict(zip(_POSITION_FIELDS, row, strict=True))) for row in rows), cash=cash,
            equity=equity, realized_pnl=realized_pnl, unrealized_pnl=unrealized_pnl, fees=fees,
            gross_exposure=gross_exposure, net_exposure=net_exposure, drawdown=drawdown, trading_state=trading_state,
        )
