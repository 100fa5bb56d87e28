"""SQLite backend: the embedded default (``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``).

Durability: WAL journal mode with ``synchronous=FULL`` by default. In WAL mode ``NORMAL``
survives a process crash (kill -9) but a power loss or OS crash can roll back the most recent
commits; the journal commits Kafka offsets right after a batch commits, so a rolled-back batch
whose offsets were committed would be lost for good. ``FULL`` fsyncs the WAL on every commit,
and since one commit carries a whole fetched batch (hundreds to thousands of events) the fsync
is paid per batch, not per event. ``synchronous="NORMAL"`` is available for throwaway journals.

Batches are written with one ``executemany`` inside one explicit transaction, in arrival order:
``seq`` is the rowid, which SQLite numbers in that order (strictly increasing; a repeat dropped by
``INSERT ... ON CONFLICT(event_id) DO NOTHING`` takes no number, and the first arrival of an id
within a batch is the one kept). The parameter rows come from a generator that turns the ids into
BLOBs as SQLite pulls them, so no second copy of the batch is built. Inserting a batch in id order
instead (one left-to-right walk of the unique index) was measured slower: the table itself, keyed
by ``seq``, then takes scattered inserts instead of appends at its end.

Layout (schema version 2): ids (``event_id``, ``correlation_id``, ``causation_id``) are 16-byte
BLOBs, not 36-character text, which more than halves the unique index that every insert has to
update at a random place. A journal file of version 1 (text ids, no version table) is refused
with an error that says so; ``ata journal migrate`` (:meth:`SqliteStore.migrate`) converts it.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from ata.journal.core.records import COLUMNS, JournalRecord, OffsetRange
from ata.journal.store.base import QUOTED, JournalStore, StoreUnavailableError, column_list

Synchronous = Literal["FULL", "NORMAL", "EXTRA"]
BUSY_TIMEOUT_MS = 5000
#: Page cache (KiB): the event_id index takes random inserts, which stay cheap while it is cached.
CACHE_KIB = 131_072
#: Pages of a new journal file: rows of ~0.5-1 KiB, fewer page headers and splits than with smaller pages
#: (measured on the append bench: 16 KiB cost ~10 % less CPU per event than 8 KiB, 4 KiB ~20 % more).
PAGE_BYTES = 16384
#: Reads through a memory map (no copy into the page cache of the connection) up to this size.
MMAP_BYTES = 1 << 30
#: Columns holding UUIDs (BLOBs since version 2).
UUID_COLUMNS = frozenset({"event_id", "correlation_id", "causation_id"})
#: Index suffixes of the version 1 events table (``<prefix>events_<suffix>``).
V1_INDEXES = ("correlation", "symbol_ts", "position")


def uuid_blob(text: str) -> bytes:
    """A UUID's 16 bytes from its text (canonical, or any form :class:`uuid.UUID` accepts)."""
    try:
        raw = bytes.fromhex(text.replace("-", ""))  # uuid.UUID ignores hyphens wherever they are, too
    except ValueError:
        raw = b""
    return raw if len(raw) == 16 else uuid.UUID(text).bytes


def uuid_text(raw: bytes) -> str:
    """Canonical text of a UUID's 16 bytes."""
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def parameter_rows(records: Sequence[JournalRecord]) -> Iterator[tuple[Any, ...]]:
    """Parameter tuples of ``records`` with the ids as BLOBs, made as ``executemany`` pulls them (no list of rows).

    An origin event correlates to itself: its ``correlation_id`` reuses the ``event_id`` bytes.
    """
    for r in records:
        event_id, correlation_id, causation_id = r[0], r[8], r[9]
        blob = uuid_blob(event_id)
        yield (blob, r[1], r[2], r[3], r[4], r[5], r[6], r[7],
               blob if correlation_id == event_id else None if correlation_id is None else uuid_blob(correlation_id),
               None if causation_id is None else uuid_blob(causation_id), r[10], r[11], r[12])


def _blob_or_none(text: str | None) -> bytes | None:
    return None if text is None else uuid_blob(text)


def _exists(conn: sqlite3.Connection, table: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [table]).fetchone() is not None


def configure(conn: sqlite3.Connection, synchronous: Synchronous) -> None:
    """The connection settings of every journal connection (page size applies to a new file only)."""
    conn.execute(f"PRAGMA page_size={PAGE_BYTES}")  # before WAL is set, or it cannot change any more
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute(f"PRAGMA mmap_size={MMAP_BYTES}")


def sqlite_path(url: str) -> Path:
    """``sqlite:///a/b.db`` -> ``a/b.db`` (relative), ``sqlite:////a/b.db`` -> ``/a/b.db``."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a sqlite URL: {url!r} (expected sqlite:///path)")
    return Path(url.removeprefix("sqlite:///"))


class SqliteStore(JournalStore):
    placeholder = "?"
    types = {"key": "INTEGER PRIMARY KEY", "uuid": "BLOB", "int": "INTEGER", "bigint": "INTEGER", "json": "TEXT"}

    def __init__(self, url: str, prefix: str = "", *, synchronous: Synchronous = "FULL") -> None:
        super().__init__(url, prefix)
        self.path = sqlite_path(url)
        self.synchronous = synchronous
        self._conn: sqlite3.Connection | None = None
        # to_thread may hop between worker threads; the lock keeps one user at a time.
        self._lock = threading.Lock()

    def open(self) -> None:
        if self._conn is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailableError(f"cannot open {self.path}: {exc}") from exc
        try:
            configure(conn, self.synchronous)
            self._initialise(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreUnavailableError(f"cannot initialise {self.path}: {exc}") from exc
        except StoreUnavailableError:
            conn.close()
            raise
        self._conn = conn

    def _initialise(self, conn: sqlite3.Connection) -> None:
        """Create what is missing and check (or stamp) the schema version, in one write transaction."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            self.initialise(lambda sql, params: conn.execute(sql, params).fetchone(), functools.partial(_exists, conn))
            conn.execute("COMMIT")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")

    def migrate(self) -> int:
        """Convert a journal file of schema version 1 (text ids) to the current version in place; the events
        converted (0 when there was nothing to convert: a new journal or one of the current version).

        One write transaction, so a failure or a crash leaves the file as it was. The version 1 table is
        renamed aside (its indexes dropped first: they keep their names across a rename), the current
        tables are created and stamped, the events are copied in ``seq`` order with the ids turned into
        BLOBs, and the old table is dropped. Ranges and snapshots have the same layout in both versions
        and stay. The page size of the file stays what version 1 chose (it changes only with a VACUUM).
        Run it while no journal service is writing to the file (it waits for their write lock anyway).
        """
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"cannot open {self.path}: {exc}") from exc
        try:
            configure(conn, self.synchronous)
            conn.create_function("uuid_blob", 1, _blob_or_none, deterministic=True)
            conn.execute("BEGIN IMMEDIATE")
            if _exists(conn, self.version_table) or not _exists(conn, self.events_table):
                return 0
            aside = f"{self.prefix}events_v1"
            for index in V1_INDEXES:
                conn.execute(f"DROP INDEX IF EXISTS {self.events_table}_{index}")
            conn.execute(f"ALTER TABLE {self.events_table} RENAME TO {aside}")
            self.initialise(lambda sql, params: conn.execute(sql, params).fetchone(), functools.partial(_exists, conn))
            values = ", ".join(f"uuid_blob({name})" if name in UUID_COLUMNS else QUOTED.get(name, name) for name in COLUMNS)
            moved = conn.execute(f"INSERT INTO {self.events_table} (seq, {column_list()}) SELECT seq, {values} "
                                 f"FROM {aside} ORDER BY seq").rowcount
            conn.execute(f"DROP TABLE {aside}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"migrating {self.path} failed (left unchanged): {exc}") from exc
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()
        return moved

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.open()
        assert self._conn is not None
        return self._conn

    def _uuid_text(self, value: Any) -> str:
        return uuid_text(value) if isinstance(value, bytes) else str(value)

    def _uuid_param(self, text: str) -> Any:
        try:
            return uuid_blob(text)
        except ValueError:
            return text  # matches nothing: every stored id is a BLOB

    def insert_statement(self) -> str:
        """The event insert of :meth:`append`, for rows from :func:`parameter_rows`; a repeated id is skipped."""
        return (f"INSERT INTO {self.events_table} ({column_list()}) VALUES ({', '.join('?' * len(COLUMNS))}) "
                "ON CONFLICT(event_id) DO NOTHING")

    def _append(self, records: Sequence[JournalRecord], ranges: Sequence[OffsetRange]) -> int:
        extend = (f"UPDATE {self.ranges_table} SET last_offset = MAX(last_offset, ?) "
                  f'WHERE topic = ? AND "partition" = ? AND first_offset <= ? AND last_offset >= ? - 1')
        add = f'INSERT INTO {self.ranges_table} (topic, "partition", first_offset, last_offset) VALUES (?, ?, ?, ?)'
        with self._lock:
            conn = self._connection()
            try:
                before = conn.total_changes
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(self.insert_statement(), parameter_rows(records))
                inserted = conn.total_changes - before
                for rng in ranges:
                    if conn.execute(extend, (rng.last, rng.topic, rng.partition, rng.first, rng.first)).rowcount == 0:
                        conn.execute(add, (rng.topic, rng.partition, rng.first, rng.last))
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(conn)
                raise StoreUnavailableError(f"append to {self.path} failed: {exc}") from exc
        return inserted

    def _rollback(self, conn: sqlite3.Connection) -> None:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            # The connection is unusable; reopen on the next call.
            conn.close()
            self._conn = None

    def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._connection().execute(sql, list(params)).fetchall()
            except sqlite3.Error as exc:
                raise StoreUnavailableError(f"query on {self.path} failed: {exc}") from exc

    def _execute(self, sql: str, params: Sequence[Any]) -> int:
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute(sql, list(params)).fetchone()
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(conn)
                raise StoreUnavailableError(f"write to {self.path} failed: {exc}") from exc
        return int(row[0]) if row else 0

    def drop(self) -> None:
        with self._lock:
            conn = self._connection()
            for table in (self.events_table, self.ranges_table, self.snapshots_table, self.version_table):
                conn.execute(f"DROP TABLE IF EXISTS {table}")
