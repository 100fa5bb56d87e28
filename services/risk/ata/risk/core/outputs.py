"""Risk's per-order outputs (``SubmitOrder``, ``OrderDenied``) and their ids, built on the hot path.

Every target that becomes a decision pays for two uuid5 ids (the output's event id and the
intent id) and one model. This module computes them with the same results as the generic
constructors, only cheaper:

- :func:`derived_id` equals ``ata.events.derived_id`` (uuid5 of the cause id and
  ``"<salt>\\x1f<index>"``), computed with ``hashlib`` directly instead of through
  ``uuid.uuid5`` and ``UUID.__init__``;
- :class:`OrderOutputs` builds ``SubmitOrder`` / ``OrderDenied`` equal to
  ``cls.caused_by(cause, index=..., source=..., ts_event=..., **fields)`` (same field values,
  same ``model_fields_set``, same JSON bytes), with the model's own validation.

Both equalities are property-tested (``test_risk_outputs.py``).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from typing import Final

from ata.events import DenialReason, Message, OrderDenied, Side, SubmitOrder

#: uuid5 = SHA-1 of namespace bytes + name, first 16 bytes, version nibble 5, RFC 4122 variant
#: (the same bit surgery ``uuid.UUID(bytes=..., version=5)`` does).
_CLEAR_VERSION_AND_VARIANT: Final = ~((0xC000 << 48) | (0xF000 << 64))
_VERSION_5_RFC_4122: Final = (0x8000 << 48) | (5 << 76)
# ``UUID`` is immutable through ``__setattr__``; its two slots are written as ``UUID.__init__`` does.
_set_int: Callable[[uuid.UUID, int], None] = vars(uuid.UUID)["int"].__set__
_set_is_safe: Callable[[uuid.UUID, uuid.SafeUUID], None] = vars(uuid.UUID)["is_safe"].__set__
_new_uuid: Callable[[type[uuid.UUID]], uuid.UUID] = object.__new__
_sha1 = hashlib.sha1


def uuid5_bytes(namespace: bytes, name: bytes) -> uuid.UUID:
    """``uuid.uuid5`` of a namespace given as its 16 bytes and a UTF-8 encoded name."""
    value = int.from_bytes(_sha1(namespace + name).digest()[:16], "big")
    result = _new_uuid(uuid.UUID)
    _set_int(result, (value & _CLEAR_VERSION_AND_VARIANT) | _VERSION_5_RFC_4122)
    _set_is_safe(result, uuid.SafeUUID.unknown)
    return result


def derived_id(cause_id: uuid.UUID, output_index: int, salt: str = "") -> uuid.UUID:
    """Same contract and result as :func:`ata.events.derived_id`."""
    return uuid5_bytes(cause_id.bytes, f"{salt}\x1f{output_index}".encode())


class OrderOutputs:
    """Builds one source's ``SubmitOrder`` and ``OrderDenied`` messages.

    ``submit_order(cause, index, ...)`` equals ``SubmitOrder.caused_by(cause, index=index,
    source=source, ts_event=ts_event, intent_id=..., client_order_id=..., symbol=..., side=...,
    quantity=..., reason=...)``, and ``order_denied`` likewise; invalid values raise the same
    ``ValidationError``. The event-id salt (``"<service>:<class>"``) is encoded once.
    """

    __slots__ = ("_denial_salt", "_order_salt", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        service = source.split("/", maxsplit=1)[0]
        self._order_salt = f"{service}:{SubmitOrder.__name__}\x1f"
        self._denial_salt = f"{service}:{OrderDenied.__name__}\x1f"

    def submit_order(self, cause: Message, index: int, ts_event: int, *, intent_id: uuid.UUID, client_order_id: str,
                     symbol: str, side: Side, quantity: float, reason: str) -> SubmitOrder:
        cause_id = cause.event_id
        return SubmitOrder(
            event_type=SubmitOrder.__name__, event_id=uuid5_bytes(cause_id.bytes, f"{self._order_salt}{index}".encode()),
            ts_event=ts_event, ts_init=ts_event, source=self.source, correlation_id=cause.correlation_id,
            causation_id=cause_id, intent_id=intent_id, client_order_id=client_order_id, symbol=symbol, side=side,
            quantity=quantity, reason=reason,
        )

    def order_denied(self, cause: Message, index: int, ts_event: int, *, intent_id: uuid.UUID, symbol: str,
                     reason: DenialReason, detail: str) -> OrderDenied:
        cause_id = cause.event_id
        return OrderDenied(
            event_type=OrderDenied.__name__, event_id=uuid5_bytes(cause_id.bytes, f"{self._denial_salt}{index}".encode()),
            ts_event=ts_event, ts_init=ts_event, source=self.source, correlation_id=cause.correlation_id,
            causation_id=cause_id, intent_id=intent_id, symbol=symbol, reason=reason, detail=detail,
        )
