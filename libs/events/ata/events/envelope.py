"""The envelope every event and command carries, and deterministic id derivation.

Contract:
- every message is a frozen pydantic v2 model with ``extra="forbid"``;
- ``event_type`` equals the class name and is a JSON-schema ``const``;
- ``event_id`` is deterministic: an origin event derives it from a natural key
  (:func:`origin_id`), a derived event from its cause and output index
  (:func:`derived_id`), so a replay or a redelivery reproduces the same ids and
  idempotent consumers can drop what they have already applied;
- ``correlation_id`` is the id of the originating market event or command and is
  inherited unchanged along the causal chain; ``causation_id`` is the direct cause.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ata.events.fastpath import uuid5_of

#: Namespace for all uuid5 ids minted by the platform. Never change it: ids in the
#: journal would stop matching re-derived ids.
ATA_NAMESPACE = uuid.UUID("6f0b3c1e-6a53-5d7e-9b1c-2f2f8a7d4e10")
_NAMESPACE_BYTES = ATA_NAMESPACE.bytes

#: Nanoseconds are plain ints; the bounds reject seconds/milliseconds passed by mistake
#: (anything before 2001-09-09 in ns is below 1e18) and absurd future values.
MIN_TS_NS = 0
MAX_TS_NS = 2**63 - 1


def origin_id(*natural_key: object) -> uuid.UUID:
    """Deterministic id of an event that has no cause (a bar, a news item, a command).

    The natural key must identify the fact, e.g. ``("replay", "sp500", "SPX", ts)``.
    """
    return uuid5_of(_NAMESPACE_BYTES, "\x1f".join(str(part) for part in natural_key).encode())


def origin_ids(*head: object) -> Callable[[object], uuid.UUID]:
    """``last -> origin_id(*head, last)``: the ids of a series of origin events whose natural keys share
    everything but the last part (a source's bars of one symbol differ only in time), with the shared
    part of the name encoded once."""
    prefix = "".join(f"{part}\x1f" for part in head).encode()

    def origin_id_of(last: object) -> uuid.UUID:
        return uuid5_of(_NAMESPACE_BYTES, prefix + str(last).encode())

    return origin_id_of


def derived_id(cause_id: uuid.UUID, output_index: int, salt: str = "") -> uuid.UUID:
    """Deterministic id of the ``output_index``-th output caused by ``cause_id``.

    ``salt`` separates outputs of different services that react to the same cause
    (e.g. regime and strategy both consume one bar): pass the producing service name.
    """
    return uuid5_of(cause_id.bytes, f"{salt}\x1f{output_index}".encode())


def _pin_event_type(schema: dict[str, Any], model: type[Any]) -> None:
    """Publish ``event_type`` as a ``const`` so analysts can dispatch on it."""
    props = schema.get("properties", {})
    if "event_type" in props:
        props["event_type"] = {"const": model.__name__, "title": "Event Type", "type": "string"}
        schema["required"] = sorted(set(schema.get("required", [])) | {"event_type"})


class Message(BaseModel):
    """Envelope shared by events and commands. Do not instantiate directly."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_pin_event_type)

    #: Bumped on a backward-compatible change of a message's fields; a breaking change
    #: needs a new message type or a new topic version instead.
    SCHEMA_VERSION: ClassVar[int] = 1

    event_id: uuid.UUID
    event_type: str
    schema_version: int = Field(default=1, ge=1)
    ts_event: int = Field(ge=MIN_TS_NS, le=MAX_TS_NS, description="When the fact happened, ns since epoch")
    ts_init: int = Field(ge=MIN_TS_NS, le=MAX_TS_NS, description="When this message was created, ns since epoch")
    source: str = Field(min_length=1, max_length=200, description="service/instance that produced it")
    correlation_id: uuid.UUID = Field(description="id of the originating market event or command")
    causation_id: uuid.UUID | None = Field(default=None, description="id of the direct cause; None for origins")

    @model_validator(mode="before")
    @classmethod
    def _fill_type_and_version(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            declared = data.setdefault("event_type", cls.__name__)
            if declared != cls.__name__:
                raise ValueError(f"event_type {declared!r} does not match model {cls.__name__}")
            data.setdefault("schema_version", cls.SCHEMA_VERSION)
        return data

    @classmethod
    def origin(cls, *, natural_key: tuple[object, ...], ts_event: int, ts_init: int, source: str, **fields: Any) -> Self:
        """Build an origin message: its id comes from ``natural_key``, it correlates to itself."""
        event_id = origin_id(cls.__name__, *natural_key)
        return cls(
            event_id=event_id,
            ts_event=ts_event,
            ts_init=ts_init,
            source=source,
            correlation_id=event_id,
            causation_id=None,
            **fields,
        )

    @classmethod
    def caused_by(
        cls,
        cause: Message,
        *,
        index: int = 0,
        source: str,
        ts_init: int | None = None,
        ts_event: int | None = None,
        **fields: Any,
    ) -> Self:
        """Build the ``index``-th output of ``source`` reacting to ``cause``.

        ``ts_event`` defaults to the cause's (the fact is as old as its cause) and
        ``ts_init`` to ``ts_event``; live shells pass their clock's time as ``ts_init``.
        """
        event_ts = cause.ts_event if ts_event is None else ts_event
        return cls(
            event_id=derived_id(cause.event_id, index, salt=f"{source.partition('/')[0]}:{cls.__name__}"),
            ts_event=event_ts,
            ts_init=event_ts if ts_init is None else ts_init,
            source=source,
            correlation_id=cause.correlation_id,
            causation_id=cause.event_id,
            **fields,
        )


class Event(Message):
    """Something that happened. Names are past tense (``BarClosed``, ``OrderFilled``)."""


class Command(Message):
    """A request to act. Names are imperative (``SubmitOrder``, ``HaltTrading``)."""
