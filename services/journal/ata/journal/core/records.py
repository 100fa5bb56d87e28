"""What the journal stores about one consumed record, and offset coverage per partition. Pure.

A Kafka record becomes a :class:`JournalRecord` through :func:`to_record`: the envelope
fields are read from the JSON payload with orjson only (no model validation: the journal
records what was published, it does not judge it, and validating every model would cost
more than storing it). A record that is not a JSON object with an ``event_id`` is still
stored, never dropped: it gets a deterministic id derived from its position
(:func:`position_id`), event type :data:`UNDECODABLE`, and its bytes base64-encoded.

Coverage: the store keeps, per topic-partition, the offset ranges it has persisted (a batch
adds ``[first, last]``). Duplicates (same ``event_id`` at a new offset) are stored once but
still cover their offset, so :func:`gaps` over the merged ranges tells whether anything the
broker served was skipped.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, NamedTuple

import orjson

from ata.events import origin_id

UNDECODABLE = "_Undecodable"


class JournalRecord(NamedTuple):
    """One journaled event. ``headers`` and ``payload`` are JSON text; timestamps are ns.

    A named tuple rather than a frozen dataclass: one is built per consumed record, and a tuple
    is built several times faster (it is immutable all the same); its fields are :data:`COLUMNS`.
    """

    event_id: str
    topic: str
    partition: int
    offset: int
    key: str | None
    event_type: str
    ts_event: int
    ts_init: int
    correlation_id: str | None
    causation_id: str | None
    symbol: str | None
    headers: str
    payload: str

    def as_row(self) -> tuple[Any, ...]:
        """Column values in :data:`COLUMNS` order."""
        return tuple(self)


#: Stored columns besides the journal's own sequence number ``seq``.
COLUMNS: tuple[str, ...] = JournalRecord._fields


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A journaled record with its sequence number (journal insertion order, strictly increasing)."""

    seq: int
    record: JournalRecord

    def payload_bytes(self) -> bytes:
        """The payload as published (what :func:`ata.runtime.codec.decode` reads)."""
        return self.record.payload.encode()


def position_id(topic: str, partition: int, offset: int) -> str:
    """Deterministic id of a record that carries none of its own."""
    return str(origin_id("journal-undecodable", topic, partition, offset))


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Bound once: these run once per consumed record.
_canonical = _CANONICAL_UUID.fullmatch
_loads = orjson.loads
_dumps = orjson.dumps
#: (topic, partition, offset) of a :class:`JournalRecord`.
_POSITION = itemgetter(1, 2, 3)


def _event_id(value: object) -> str | None:
    """``value`` as a canonical UUID string, or None when it is not one."""
    if type(value) is not str:
        return None
    if _canonical(value):
        return value  # what every platform producer writes; parsing it again costs more than the insert
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _undecodable(topic: str, partition: int, offset: int, key: str | None, raw: bytes,  # noqa: PLR0917
                 headers: str, timestamp_ms: int) -> JournalRecord:
    ts = max(timestamp_ms, 0) * 1_000_000
    payload = orjson.dumps({"raw_b64": base64.b64encode(raw).decode("ascii")}).decode()
    return JournalRecord(position_id(topic, partition, offset), topic, partition, offset, key, UNDECODABLE, ts, ts,
                         None, None, None, headers, payload)


def headers_json(headers: Mapping[str, str] | Sequence[tuple[str, bytes | None]]) -> str:
    """Headers as JSON object text, from a mapping or from the Kafka client's ``(key, bytes)`` list (undecodable
    bytes replaced, a repeated key keeps its last value: what :func:`ata.runtime.codec.from_kafka_headers` gives)."""
    if not headers:
        return "{}"
    # The client's tuple or list is tested first: the ABC check costs more than the rest of the conversion.
    if type(headers) is not tuple and type(headers) is not list and isinstance(headers, Mapping):
        return _dumps(headers if type(headers) is dict else dict(headers)).decode()
    return _dumps({key: (value or b"").decode("utf-8", "replace") for key, value in headers}).decode()


def to_record(topic: str, partition: int, offset: int, key: bytes | str | None, value: bytes | None,  # noqa: PLR0917
              headers: Mapping[str, str] | Sequence[tuple[str, bytes | None]], timestamp_ms: int = -1) -> JournalRecord:
    """The journal row for one consumed record (see the module contract); ``headers`` as :func:`headers_json` takes them.

    Runs once per consumed record, so it reads the parsed object with exact type checks
    (``type(x) is int`` also refuses ``bool``, as the contract wants), accepts a canonical
    ``event_id`` with one regex match, and builds the tuple positionally; an origin event's
    ``correlation_id`` equals its ``event_id`` and is not checked twice.
    """
    key_text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    raw = value or b""
    try:
        data = _loads(raw)
    except orjson.JSONDecodeError:
        data = None
    if type(data) is not dict:
        return _undecodable(topic, partition, offset, key_text, raw, headers_json(headers), timestamp_ms)
    get = data.get
    event_id = get("event_id")
    if type(event_id) is not str or not _canonical(event_id):
        event_id = _event_id(event_id)
        if event_id is None:
            return _undecodable(topic, partition, offset, key_text, raw, headers_json(headers), timestamp_ms)
    ts_event = get("ts_event")
    if type(ts_event) is not int:
        ts_event = max(timestamp_ms, 0) * 1_000_000
    ts_init = get("ts_init")
    event_type = get("event_type")
    symbol = get("symbol")
    correlation = get("correlation_id")
    causation = get("causation_id")
    return JournalRecord(
        event_id, topic, partition, offset, key_text,
        event_type if type(event_type) is str and event_type else UNDECODABLE,
        ts_event,
        ts_init if type(ts_init) is int else ts_event,
        event_id if correlation == event_id else _event_id(correlation),
        None if causation is None else _event_id(causation),
        symbol if type(symbol) is str else None,
        headers_json(headers),
        raw.decode(),  # orjson accepted it, so it is valid UTF-8: the text is the published bytes exactly
    )


@dataclass(frozen=True, slots=True)
class OffsetRange:
    """Offsets ``first..last`` (inclusive) of one partition, persisted."""

    topic: str
    partition: int
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class Gap:
    """Offsets ``first..last`` (inclusive) of a partition that lie between persisted ranges."""

    topic: str
    partition: int
    first: int
    last: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1


def batch_ranges(records: Iterable[JournalRecord]) -> list[OffsetRange]:
    """The contiguous offset runs of a batch, per partition (a batch from one fetch is one run per partition).

    Once per record, so the position is read with one C-level getter and the partition's spans are
    looked up only when the partition changes (a fetch lists each partition's records together).
    """
    runs: dict[tuple[str, int], list[list[int]]] = {}
    topic: str | None = None
    partition = -1
    spans: list[list[int]] = []
    for t, p, offset in map(_POSITION, records):
        if p != partition or t != topic:
            topic, partition = t, p
            spans = runs.setdefault((t, p), [])
        if spans and spans[-1][1] + 1 == offset:
            spans[-1][1] = offset
        else:
            spans.append([offset, offset])
    return [OffsetRange(t, p, a, b) for (t, p), spans in runs.items() for a, b in spans]


def merge(ranges: Iterable[OffsetRange]) -> list[OffsetRange]:
    """Ranges merged per partition where they overlap or touch, sorted by topic, partition, first."""
    merged: list[OffsetRange] = []
    for r in sorted(ranges, key=lambda r: (r.topic, r.partition, r.first)):
        last = merged[-1] if merged else None
        if last is not None and (last.topic, last.partition) == (r.topic, r.partition) and r.first <= last.last + 1:
            merged[-1] = OffsetRange(r.topic, r.partition, last.first, max(last.last, r.last))
        else:
            merged.append(r)
    return merged


def gaps(ranges: Iterable[OffsetRange], *, log_start: Mapping[tuple[str, int], int] | None = None) -> list[Gap]:
    """Holes between persisted ranges of each partition; with ``log_start``, also a hole before the first range."""
    found: list[Gap] = []
    previous: OffsetRange | None = None
    for r in merge(ranges):
        same = previous is not None and (previous.topic, previous.partition) == (r.topic, r.partition)
        if same and previous is not None:
            found.append(Gap(r.topic, r.partition, previous.last + 1, r.first - 1))
        elif log_start is not None and r.first > log_start.get((r.topic, r.partition), 0):
            found.append(Gap(r.topic, r.partition, log_start.get((r.topic, r.partition), 0), r.first - 1))
        previous = r
    return found
