"""The journal store interface, shared by the SQLite and PostgreSQL backends.

Contract:
- :meth:`JournalStore.append` persists a batch in one transaction: every record whose
  ``event_id`` is new gets the next sequence number (``seq``, insertion order), a repeat is
  skipped, and the batch's offset ranges are added to the coverage table. It returns once
  the transaction is durable (committed), or raises :class:`StoreUnavailableError` with
  nothing of the batch persisted. Offsets may be committed to Kafka only after it returned.
- Reads (:meth:`~JournalStore.events`, :meth:`~JournalStore.chain`, snapshots, coverage) never
  modify anything and raise :class:`StoreUnavailableError` when the database cannot answer.
- All methods are blocking; asyncio callers use ``asyncio.to_thread``. One store object is
  used by one thread at a time.
- ``prefix`` is prepended to every table name, so several journals (or tests) share a database.

Tables: ``<prefix>events`` (``seq``, the :data:`~ata.journal.core.records.COLUMNS`; unique
``event_id``; indexes on ``(symbol, ts_event)`` and a partial one on ``correlation_id`` for derived
events only: an origin event correlates to itself, is most of the volume, and is found by its
``event_id``; no index on the Kafka position, which no query reads (coverage lives in the ranges
table) and every insert would pay for), ``<prefix>ranges`` (persisted offsets per partition),
``<prefix>snapshots`` (service, event time, last folded ``seq``, Kafka positions, state JSON) and
``<prefix>schema_version`` (see :data:`SCHEMA_VERSION`).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ata.journal.core.records import COLUMNS, Gap, JournalRecord, OffsetRange, StoredEvent, batch_ranges, gaps

__all__ = ["SCHEMA_VERSION", "EventFilter", "JournalStore", "SchemaVersionError", "Snapshot", "StoreUnavailableError"]

PREFIX_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
#: Rows per round trip when streaming events out.
READ_CHUNK = 10_000
QUOTED = {"partition": '"partition"', "offset": '"offset"'}


def column_list(names: Sequence[str] = COLUMNS) -> str:
    """Column names for SQL, with the reserved words quoted."""
    return ", ".join(QUOTED.get(name, name) for name in names)


class StoreUnavailableError(RuntimeError):
    """The database cannot persist or answer now (disk full, read-only, unreachable, locked too long)."""


class SchemaVersionError(StoreUnavailableError):
    """The journal's tables were written by a version with another layout; the message says what to do."""


#: Version 1: ids as text on SQLite (no version table). Version 2: ids as 16-byte BLOBs on SQLite and no
#: Kafka-position index; PostgreSQL's columns are unchanged (native UUID), so it opens version 1 journals
#: (an old position index there is merely unused).
SCHEMA_VERSION = 2


@dataclass(frozen=True)
class Snapshot:
    """Folded state of ``service`` after journal sequence number ``seq`` (``ts_ns``: event time of that point).

    ``offsets`` maps ``"<topic>:<partition>"`` to the next Kafka offset folded, for services that
    resume from the broker rather than from the journal.
    """

    service: str
    ts_ns: int
    seq: int
    state: dict[str, Any]
    offsets: dict[str, int] = field(default_factory=dict)
    snapshot_id: int = 0
    created_ns: int = 0


@dataclass(frozen=True)
class EventFilter:
    """Which events to read. Times are ``ts_event`` in ns, ``start_ns`` inclusive and ``end_ns`` exclusive;
    ``after_seq``/``until_seq`` bound the sequence numbers (exclusive/inclusive)."""

    topics: tuple[str, ...] = ()
    start_ns: int | None = None
    end_ns: int | None = None
    symbol: str | None = None
    correlation_id: str | None = None
    event_types: tuple[str, ...] = ()
    after_seq: int = 0
    until_seq: int | None = None


class JournalStore(ABC):
    """A journal database (see the module contract). Subclasses provide the connection and the bulk write."""

    #: Parameter placeholder of the driver (``?`` or ``%s``).
    placeholder: str = "?"

    def __init__(self, url: str, prefix: str = "") -> None:
        if prefix and not PREFIX_PATTERN.match(prefix):
            raise ValueError(f"table prefix {prefix!r} must match {PREFIX_PATTERN.pattern}")
        self.url = url
        self.prefix = prefix
        self.events_table = f"{prefix}events"
        self.ranges_table = f"{prefix}ranges"
        self.snapshots_table = f"{prefix}snapshots"
        self.version_table = f"{prefix}schema_version"

    # -- what a backend implements ----------------------------------------------------------------

    #: Column types of the backend: ``key`` (auto-increasing primary key), ``uuid``, ``int``, ``bigint``, ``json``.
    types: dict[str, str] = {}

    def schema(self) -> list[str]:
        """DDL of the tables and their indexes (idempotent), in the backend's types."""
        e, r, s, t = self.events_table, self.ranges_table, self.snapshots_table, self.types
        return [
            f"CREATE TABLE IF NOT EXISTS {self.version_table} (version INTEGER NOT NULL)",
            f"""CREATE TABLE IF NOT EXISTS {e} (
                seq {t["key"]}, event_id {t["uuid"]} NOT NULL UNIQUE, topic TEXT NOT NULL, "partition" {t["int"]} NOT NULL,
                "offset" {t["bigint"]} NOT NULL, key TEXT, event_type TEXT NOT NULL, ts_event {t["bigint"]} NOT NULL,
                ts_init {t["bigint"]} NOT NULL, correlation_id {t["uuid"]}, causation_id {t["uuid"]}, symbol TEXT,
                headers {t["json"]} NOT NULL, payload TEXT NOT NULL)""",
            # Partial: origin events (bars, quotes, news: most of the volume) correlate to themselves and
            # are found through the event_id index; see chain().
            f"CREATE INDEX IF NOT EXISTS {e}_correlation ON {e} (correlation_id) WHERE correlation_id <> event_id",
            f"CREATE INDEX IF NOT EXISTS {e}_symbol_ts ON {e} (symbol, ts_event)",
            f"""CREATE TABLE IF NOT EXISTS {r} (
                topic TEXT NOT NULL, "partition" {t["int"]} NOT NULL, first_offset {t["bigint"]} NOT NULL,
                last_offset {t["bigint"]} NOT NULL)""",
            f'CREATE INDEX IF NOT EXISTS {r}_tp ON {r} (topic, "partition", first_offset)',
            f"""CREATE TABLE IF NOT EXISTS {s} (
                snapshot_id {t["key"]}, service TEXT NOT NULL, ts_ns {t["bigint"]} NOT NULL, seq {t["bigint"]} NOT NULL,
                offsets {t["json"]} NOT NULL, state {t["json"]} NOT NULL, created_ns {t["bigint"]} NOT NULL)""",
            f"CREATE INDEX IF NOT EXISTS {s}_service ON {s} (service, seq)",
        ]

    #: Version of the table layout this code writes; stored in ``<prefix>schema_version``.
    schema_version: int = SCHEMA_VERSION

    def check_version(self, found: int | None, *, events_table_existed: bool) -> bool:
        """Whether the version row must be written: a new journal, or one whose layout this backend reads
        unchanged (``compatible_versions``). Raises :class:`SchemaVersionError` for anything else."""
        if found == self.schema_version:
            return False
        if found is None and (not events_table_existed or 1 in self.compatible_versions):
            return True
        raise SchemaVersionError(
            f"journal {self.events_table} at {self.url_for_messages()} has schema version {found or 1}, this version of "
            f"the journal reads version {self.schema_version} only: `ata journal migrate` converts a SQLite journal of "
            "version 1 in place")

    def initialise(self, run: Callable[[str, list[Any]], tuple[Any, ...] | None], exists: Callable[[str], bool]) -> None:
        """Check (or stamp) the schema version, then create what is missing. The caller holds a write transaction;
        ``run`` executes one statement and returns its first row, ``exists`` tells whether a table exists."""
        existed = exists(self.events_table)
        row = run(f"SELECT MAX(version) FROM {self.version_table}", []) if exists(self.version_table) else None
        stamp = self.check_version(None if row is None else row[0], events_table_existed=existed)
        for statement in self.schema():
            run(statement, [])
        if stamp:
            run(f"INSERT INTO {self.version_table} (version) VALUES ({self.placeholder})", [self.schema_version])

    #: Earlier versions whose tables this backend reads and writes unchanged (stamped on open).
    compatible_versions: frozenset[int] = frozenset()

    def url_for_messages(self) -> str:
        """The store's location without credentials."""
        return self.url.split("@")[-1]

    def _uuid_text(self, value: Any) -> str:
        """A stored UUID column value as canonical text."""
        return str(value)

    def _uuid_param(self, text: str) -> Any:
        """A UUID in canonical text as a query parameter of a UUID column."""
        return text

    @abstractmethod
    def open(self) -> None:
        """Connect and create the tables and indexes if missing. Raises :class:`StoreUnavailableError`."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection (idempotent)."""

    @abstractmethod
    def _append(self, records: Sequence[JournalRecord], ranges: Sequence[OffsetRange]) -> int:
        """Write ``records`` and ``ranges`` in one committed transaction; the number of new events."""

    @abstractmethod
    def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run a read query; translate driver failures into :class:`StoreUnavailableError`."""

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any]) -> int:
        """Run one write statement in its own committed transaction; the first column of a RETURNING row, else 0."""

    @abstractmethod
    def drop(self) -> None:
        """Remove this journal's tables (tests, and ``ata journal`` never calls it)."""

    # -- writes -----------------------------------------------------------------------------------

    def append(self, records: Sequence[JournalRecord]) -> int:
        """Persist a batch durably (see the module contract); the number of events that were new."""
        if not records:
            return 0
        return self._append(records, batch_ranges(records))

    def save_snapshot(self, snapshot: Snapshot) -> int:
        """Store ``snapshot``; its id."""
        p = self.placeholder
        return self._execute(
            f"INSERT INTO {self.snapshots_table} (service, ts_ns, seq, offsets, state, created_ns) "
            f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}) RETURNING snapshot_id",
            [snapshot.service, snapshot.ts_ns, snapshot.seq, orjson.dumps(snapshot.offsets).decode(),
             orjson.dumps(snapshot.state).decode(), snapshot.created_ns],
        )

    # -- reads ------------------------------------------------------------------------------------

    def _row_event(self, row: Sequence[Any]) -> StoredEvent:
        (seq, event_id, topic, partition, offset, key, event_type, ts_event, ts_init, correlation_id, causation_id, symbol,
         headers, payload) = row
        uuid_text = self._uuid_text
        return StoredEvent(int(seq), JournalRecord(
            uuid_text(event_id), topic, int(partition), int(offset), key, event_type, int(ts_event), int(ts_init),
            None if correlation_id is None else uuid_text(correlation_id),
            None if causation_id is None else uuid_text(causation_id),
            symbol, headers if isinstance(headers, str) else orjson.dumps(headers).decode(), payload))

    def _where(self, flt: EventFilter, after_seq: int) -> tuple[str, list[Any]]:
        p = self.placeholder
        clauses = [f"seq > {p}"]
        params: list[Any] = [after_seq]
        if flt.until_seq is not None:
            clauses.append(f"seq <= {p}")
            params.append(flt.until_seq)
        if flt.topics:
            clauses.append(f"topic IN ({', '.join([p] * len(flt.topics))})")
            params.extend(flt.topics)
        if flt.event_types:
            clauses.append(f"event_type IN ({', '.join([p] * len(flt.event_types))})")
            params.extend(flt.event_types)
        if flt.start_ns is not None:
            clauses.append(f"ts_event >= {p}")
            params.append(flt.start_ns)
        if flt.end_ns is not None:
            clauses.append(f"ts_event < {p}")
            params.append(flt.end_ns)
        if flt.symbol is not None:
            clauses.append(f"symbol = {p}")
            params.append(flt.symbol)
        if flt.correlation_id is not None:
            clauses.append(f"correlation_id = {p}")
            params.append(self._uuid_param(flt.correlation_id))
        return " AND ".join(clauses), params

    def events(self, flt: EventFilter | None = None, *, chunk: int = READ_CHUNK) -> Iterator[StoredEvent]:
        """Matching events in ``seq`` order, streamed in chunks (keyset pagination on ``seq``)."""
        flt = flt or EventFilter()
        row_event = self._row_event
        for row in self._paged(f"seq, {column_list()}", flt, chunk):
            yield row_event(row)

    def payloads(self, after_seq: int, until_seq: int, event_types: Sequence[str], *,
                 chunk: int = READ_CHUNK) -> Iterator[tuple[int, str]]:
        """``(seq, payload)`` of the events of ``event_types`` with ``after_seq < seq <= until_seq``, in ``seq``
        order: what folding state needs and nothing else (no ids, headers or Kafka positions to convert)."""
        yield from self._paged("seq, payload", EventFilter(event_types=tuple(event_types), after_seq=after_seq,
                                                           until_seq=until_seq), chunk)

    def _paged(self, columns: str, flt: EventFilter, chunk: int) -> Iterator[tuple[Any, ...]]:
        """Rows of ``columns`` (the first being ``seq``) of the events ``flt`` matches, ``chunk`` per query."""
        after = flt.after_seq
        while True:
            where, params = self._where(flt, after)
            rows = self._fetch(
                f"SELECT {columns} FROM {self.events_table} WHERE {where} ORDER BY seq LIMIT {int(chunk)}", params)
            yield from rows
            if len(rows) < chunk:
                return
            after = int(rows[-1][0])

    def count(self, flt: EventFilter | None = None) -> int:
        where, params = self._where(flt or EventFilter(), (flt or EventFilter()).after_seq)
        return int(self._fetch(f"SELECT COUNT(*) FROM {self.events_table} WHERE {where}", params)[0][0])

    def last_seq(self) -> int:
        """The highest sequence number stored (0 when empty)."""
        return int(self._fetch(f"SELECT COALESCE(MAX(seq), 0) FROM {self.events_table}", [])[0][0])

    def get(self, event_id: str) -> StoredEvent | None:
        p = self.placeholder
        rows = self._fetch(f"SELECT seq, {column_list()} FROM {self.events_table} WHERE event_id = {p}",
                           [self._uuid_param(event_id)])
        return self._row_event(rows[0]) if rows else None

    def chain(self, correlation_id: str) -> list[StoredEvent]:
        """Every event of one causal chain (same ``correlation_id``), in ``seq`` order.

        Two index lookups: the origin by ``event_id``, the derived events through the partial
        ``correlation_id`` index (its predicate is repeated so the planner can use it).
        """
        p, columns = self.placeholder, column_list()
        rows = self._fetch(
            f"SELECT seq, {columns} FROM {self.events_table} WHERE event_id = {p} AND correlation_id = {p} UNION ALL "
            f"SELECT seq, {columns} FROM {self.events_table} WHERE correlation_id = {p} AND correlation_id <> event_id "
            "ORDER BY 1", [self._uuid_param(correlation_id)] * 3)
        return [self._row_event(row) for row in rows]

    def ranges(self) -> list[OffsetRange]:
        """Persisted offset ranges, as stored (see :func:`~ata.journal.core.records.merge`)."""
        rows = self._fetch(f'SELECT topic, "partition", first_offset, last_offset FROM {self.ranges_table}', [])
        return [OffsetRange(str(t), int(p), int(a), int(b)) for t, p, a, b in rows]

    def gaps(self, log_start: Mapping[tuple[str, int], int] | None = None) -> list[Gap]:
        """Holes in the persisted offsets of each partition (see :func:`~ata.journal.core.records.gaps`)."""
        return gaps(self.ranges(), log_start=log_start)

    def positions(self) -> dict[str, int]:
        """``"<topic>:<partition>"`` -> next offset after the highest persisted one."""
        rows = self._fetch(
            f'SELECT topic, "partition", MAX(last_offset) FROM {self.ranges_table} GROUP BY topic, "partition"', [])
        return {f"{t}:{p}": int(last) + 1 for t, p, last in rows}

    def latest_snapshot(self, service: str, *, at_or_before_seq: int | None = None) -> Snapshot | None:
        """The newest snapshot of ``service`` (optionally the newest not beyond ``at_or_before_seq``)."""
        p = self.placeholder
        sql = (f"SELECT snapshot_id, service, ts_ns, seq, offsets, state, created_ns FROM {self.snapshots_table} "
               f"WHERE service = {p}")
        params: list[Any] = [service]
        if at_or_before_seq is not None:
            sql += f" AND seq <= {p}"
            params.append(at_or_before_seq)
        rows = self._fetch(sql + " ORDER BY seq DESC, snapshot_id DESC LIMIT 1", params)
        if not rows:
            return None
        snapshot_id, name, ts_ns, seq, offsets, state, created_ns = rows[0]
        return Snapshot(service=name, ts_ns=int(ts_ns), seq=int(seq), state=_json(state), offsets=_json(offsets),
                        snapshot_id=int(snapshot_id), created_ns=int(created_ns))

    def __enter__(self) -> JournalStore:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value
