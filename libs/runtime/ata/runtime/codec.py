"""Wire format: one message is one UTF-8 JSON object (orjson), typed by its ``event_type``.

Contract:
- :func:`encode` writes ``message.model_dump(mode="json")``: UUIDs as strings, enums as values,
  timestamps as int nanoseconds; any language (or kcat) can read it;
- :func:`decode` dispatches on ``event_type`` through :func:`ata.events.message_class` and
  validates with the model, so nothing malformed reaches a core. It raises
  :class:`DecodeError` when the bytes are not a JSON object with a known ``event_type`` and
  :class:`MessageValidationError` when the object does not satisfy its model. Both carry a
  readable ``reason`` and the dead-letter ``stage`` they belong to.
- Kafka headers are ``str -> str`` at this layer; :func:`to_kafka_headers` and
  :func:`from_kafka_headers` convert from and to the client's ``[(key, bytes)]`` form.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import ClassVar

import orjson
from pydantic import ValidationError

from ata.events import Message, message_class

__all__ = [
    "CodecError",
    "DecodeError",
    "MessageValidationError",
    "decode",
    "encode",
    "from_kafka_headers",
    "to_kafka_headers",
]

#: Longest error text kept from a validation failure (DeadLetterRecorded.error allows 10,000).
MAX_REASON_CHARS = 4000


class CodecError(ValueError):
    """Bytes that cannot become a message. ``stage`` is the dead-letter stage, ``reason`` the why."""

    stage: ClassVar[str] = "decode"

    def __init__(self, reason: str) -> None:
        self.reason = reason[:MAX_REASON_CHARS]
        super().__init__(self.reason)


class DecodeError(CodecError):
    """Not UTF-8 JSON, not an object, no string ``event_type``, or an unknown ``event_type``."""

    stage: ClassVar[str] = "decode"


class MessageValidationError(CodecError):
    """A JSON object of a known type that violates its model (missing field, wrong type, bound...)."""

    stage: ClassVar[str] = "validate"


def encode(message: Message) -> bytes:
    """The message as UTF-8 JSON bytes."""
    return orjson.dumps(message.model_dump(mode="json"))


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in error["loc"]) or "<message>"
        parts.append(f"{where}: {error['msg']}")
    return f"{exc.title}: " + "; ".join(parts)


def decode(raw: bytes) -> Message:
    """The typed message encoded in ``raw``; raises :class:`DecodeError` or :class:`MessageValidationError`."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not UTF-8 JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DecodeError(f"expected a JSON object, got {type(data).__name__}")
    event_type = data.get("event_type")
    if not isinstance(event_type, str):
        raise DecodeError("no string event_type field")
    try:
        cls = message_class(event_type)
    except KeyError:
        raise DecodeError(f"unknown event_type {event_type!r}") from None
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise MessageValidationError(_describe(exc)) from None


def to_kafka_headers(headers: Mapping[str, str] | None) -> list[tuple[str, bytes]] | None:
    """``{"traceparent": "00-..."}`` -> ``[("traceparent", b"00-...")]`` (None when empty)."""
    if not headers:
        return None
    return [(key, value.encode()) for key, value in headers.items()]


def from_kafka_headers(headers: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """The client's header list as a dict; undecodable bytes are replaced, a repeated key keeps its last value."""
    if not headers:
        return {}
    return {key: (value or b"").decode("utf-8", "replace") for key, value in headers}
