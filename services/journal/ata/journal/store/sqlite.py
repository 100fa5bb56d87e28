"""SQLite backend: the embedded default (``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``).

Durability: WAL journal mode with ``synchronous=FULL`` by default. In WAL mode ``NORMAL``
survives a process crash (kill -9) but a power loss or OS crash can roll back the most recent
commits; the journal commits Kafka offsets right after a batch commits, so a rolled-back batch
whose offsets were committed would be lost for good. ``FULL`` fsyncs the WAL on every commit,
and since one commit carries a whole fetched batch (hundreds to thousands of events) the fsync
is paid per batch, not per event. ``synchronous="NORMAL"`` is available for throwaway journals.

Batches are written with ``executemany`` inside one explicit transaction; ``INSERT ... ON
CONFLICT(event_id) DO NOTHING`` drops repeats.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from ata.journal.core.records import COLUMNS, JournalRecord, OffsetRange
from ata.journal.store.base import JournalStore, StoreUnavailableError, column_list

Synchronous = Literal["FULL", "NORMAL", "EXTRA"]
BUSY_TIMEOUT_MS = 5000
#: Page cache (KiB): the event_id index takes random inserts, which stay cheap while it is cached.
CACHE_KIB = 131_072


def sqlite_path(url: str) -> Path:
    """``sqlite:///a/b.db`` -> ``a/b.db`` (relative), ``sqlite:////a/b.db`` -> ``/a/b.db``."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a sqlite URL: {url!r} (expected sqlite:///path)")
    return Path(url.removeprefix("sqlite:///"))


class SqliteStore(JournalStore):
    placeholder = "?"
    types = {"key": "INTEGER PRIMARY KEY", "uuid": "TEXT", "int": "INTEGER", "bigint": "INTEGER", "json": "TEXT"}

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
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            for statement in self.schema():
                conn.execute(statement)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreUnavailableError(f"cannot initialise {self.path}: {exc}") from exc
        self._conn = conn

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

    def _append(self, records: Sequence[JournalRecord], ranges: Sequence[OffsetRange]) -> int:
        marks = ", ".join("?" * len(COLUMNS))
        insert = (f"INSERT INTO {self.events_table} ({column_list()}) VALUES ({marks}) "
                  "ON CONFLICT(event_id) DO NOTHING")
        extend = (f"UPDATE {self.ranges_table} SET last_offset = MAX(last_offset, ?) "
                  f'WHERE topic = ? AND "partition" = ? AND first_offset <= ? AND last_offset >= ? - 1')
        add = f'INSERT INTO {self.ranges_table} (topic, "partition", first_offset, last_offset) VALUES (?, ?, ?, ?)'
        with self._lock:
            conn = self._connection()
            try:
                before = conn.total_changes
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(insert, [r.as_row() for r in records])
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
            for table in (self.events_table, self.ranges_table, self.snapshots_table):
                conn.execute(f"DROP TABLE IF EXISTS {table}")
