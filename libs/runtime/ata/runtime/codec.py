"""Wire format: one message is one UTF-8 JSON object (orjson), typed by its ``event_type``.

Contract:
- :func:`encode` writes ``message.model_dump(mode="json")``: UUIDs as strings, enums as values,
  timestamps as int nanoseconds; any language (or kcat) can read it;
- :func:`decode` dispatches on ``event_type`` through :func:`ata.events.message_class` and
  validates with the model, so nothing malformed reaches a core. It raises
  :class:`DecodeError` when the bytes are not a JSON object with a known ``event_type`` and
  :class:`MessageValidationError` when the object does not satisfy its model. Both carry a
  readable ``reason`` and the dead-letter ``stage`` they belong to.
- ``decode(raw) == validate(*parse(raw))``: the two halves are public so a consumer can parse a
  whole fetched batch (cheap, and enough to read event ids with :func:`event_id_of`) and build
  each model only when it handles the record: a batch of plain dicts costs the garbage collector
  far less than a batch of models.
- Kafka headers are ``str -> str`` at this layer; :func:`to_kafka_headers` and
  :func:`from_kafka_headers` convert from and to the client's ``[(key, bytes)]`` form;
  :class:`HeaderView` is the same mapping, decoded on first use.
"""

from __future__ import annotations

import uuid
from collections.abc import ItemsView, Iterable, Iterator, Mapping
from typing import Any, ClassVar

import orjson
from pydantic import ValidationError

from ata.events import Message, message_class

__all__ = [
    "CodecError",
    "DecodeError",
    "HeaderView",
    "MessageValidationError",
    "decode",
    "encode",
    "event_id_of",
    "from_kafka_headers",
    "parse",
    "to_kafka_headers",
    "validate",
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


def parse(raw: bytes) -> tuple[type[Message], dict[str, Any]]:
    """The message class and JSON object of ``raw``, not validated yet; raises :class:`DecodeError`."""
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
        return message_class(event_type), data
    except KeyError:
        raise DecodeError(f"unknown event_type {event_type!r}") from None


def validate(cls: type[Message], data: dict[str, Any]) -> Message:
    """``data`` (from :func:`parse`) as a ``cls``; raises :class:`MessageValidationError`."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise MessageValidationError(_describe(exc)) from None


def decode(raw: bytes) -> Message:
    """The typed message encoded in ``raw``; raises :class:`DecodeError` or :class:`MessageValidationError`."""
    return validate(*parse(raw))


def event_id_of(data: Mapping[str, Any]) -> uuid.UUID | None:
    """The ``event_id`` of a parsed, not yet validated message; None when it is not a UUID string.

    Read with ``uuid.UUID``, not with the model: a consumer that looks ids up before validating
    must compare them with the validated message's ``event_id``.
    """
    value = data.get("event_id")
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


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


class HeaderView(Mapping[str, str]):
    """The client's header list as a read-only ``str -> str`` mapping, decoded on first use.

    Same values as :func:`from_kafka_headers`; most handlers never read the headers of a record,
    so a consumer need not decode them for every record.
    """

    __slots__ = ("_decoded", "_raw")

    def __init__(self, headers: Iterable[tuple[str, bytes | None]] | None) -> None:
        self._raw = headers
        self._decoded: dict[str, str] | None = None

    def _headers(self) -> dict[str, str]:
        if self._decoded is None:
            self._decoded = from_kafka_headers(self._raw)
            self._raw = None
        return self._decoded

    def __getitem__(self, key: str) -> str:
        return self._headers()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._headers())

    def __len__(self) -> int:
        return len(self._headers())

    # The decoded dict's own view and look-up: Mapping's generic ones go through __iter__ and
    # __getitem__ in Python, and the trace context of every consumed record is read through them.
    def items(self) -> ItemsView[str, str]:
        return self._headers().items()

    def __contains__(self, key: object) -> bool:
        return key in self._headers()

    def __repr__(self) -> str:
        return f"HeaderView({self._headers()!r})"
