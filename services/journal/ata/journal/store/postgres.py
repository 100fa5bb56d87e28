"""PostgreSQL backend (psycopg 3): the production journal (``postgresql://user@host:port/db``).

A batch is streamed with ``COPY`` into a per-connection staging table and moved into the
events table with one ``INSERT ... SELECT ... ORDER BY ... ON CONFLICT (event_id) DO NOTHING``,
in the same transaction as the offset ranges: one round trip per batch instead of one per row.
The commit returns once PostgreSQL reports it durable (``synchronous_commit`` of the server,
``on`` by default). A broken connection is dropped and re-established on the next call.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import psycopg

from ata.journal.core.records import JournalRecord, OffsetRange
from ata.journal.store.base import JournalStore, StoreUnavailableError, column_list

CONNECT_TIMEOUT_S = 5


def _first_row(conn: psycopg.Connection[Any], sql: str, params: list[Any]) -> tuple[Any, ...] | None:
    """Run one statement; its first row, or ``None`` for a statement without a result (DDL)."""
    cursor = conn.execute(sql, params)
    return cursor.fetchone() if cursor.description is not None else None


class PostgresStore(JournalStore):
    placeholder = "%s"
    types = {"key": "BIGSERIAL PRIMARY KEY", "uuid": "UUID", "int": "INTEGER", "bigint": "BIGINT", "json": "JSONB"}
    #: The PostgreSQL layout did not change in version 2 (ids were native UUIDs already).
    compatible_versions = frozenset({1})

    def __init__(self, url: str, prefix: str = "") -> None:
        super().__init__(url, prefix)
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        self._stage = f"{prefix}stage"

    def open(self) -> None:
        with self._lock:
            self._open()

    def _open(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            conn = psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=False)
        except psycopg.Error as exc:
            raise StoreUnavailableError(f"cannot connect to the journal database: {exc}") from exc
        try:
            with conn.transaction():
                # Serialise concurrent schema creation by several journal instances.
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [self.events_table])
                self.initialise(lambda sql, params: _first_row(conn, sql, params),
                                lambda table: _first_row(conn, "SELECT to_regclass(%s) IS NOT NULL", [table]) == (True,))
            conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {self._stage} (ord INTEGER, "
                         f"LIKE {self.events_table} EXCLUDING ALL) ON COMMIT DELETE ROWS")
            conn.execute(f"ALTER TABLE {self._stage} DROP COLUMN IF EXISTS seq")
            conn.commit()
        except psycopg.Error as exc:
            conn.close()
            raise StoreUnavailableError(f"cannot initialise the journal tables: {exc}") from exc
        except StoreUnavailableError:
            conn.close()
            raise
        self._conn = conn
        return conn

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    def _failed(self, what: str, exc: psycopg.Error) -> StoreUnavailableError:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()  # rolls back; a fresh connection is made on the next call
        return StoreUnavailableError(f"{what} failed: {exc}")

    def _append(self, records: Sequence[JournalRecord], ranges: Sequence[OffsetRange]) -> int:
        columns = column_list()
        extend = (f"UPDATE {self.ranges_table} SET last_offset = GREATEST(last_offset, %s) "
                  f'WHERE topic = %s AND "partition" = %s AND first_offset <= %s AND last_offset >= %s - 1')
        add = f'INSERT INTO {self.ranges_table} (topic, "partition", first_offset, last_offset) VALUES (%s, %s, %s, %s)'
        with self._lock:
            conn = self._open()
            try:
                with conn.cursor() as cur:
                    with cur.copy(f"COPY {self._stage} (ord, {columns}) FROM STDIN") as copy:
                        for index, record in enumerate(records):
                            copy.write_row((index, *record.as_row()))
                    cur.execute(f"INSERT INTO {self.events_table} ({columns}) SELECT {columns} FROM {self._stage} "
                                "ORDER BY ord ON CONFLICT (event_id) DO NOTHING")
                    inserted = max(cur.rowcount, 0)
                    for rng in ranges:
                        cur.execute(extend, (rng.last, rng.topic, rng.partition, rng.first, rng.first))
                        if cur.rowcount == 0:
                            cur.execute(add, (rng.topic, rng.partition, rng.first, rng.last))
                conn.commit()
            except psycopg.Error as exc:
                raise self._failed("append", exc) from exc
        return inserted

    def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            conn = self._open()
            try:
                rows = conn.execute(sql, list(params)).fetchall()
                conn.commit()
            except psycopg.Error as exc:
                raise self._failed("query", exc) from exc
        return rows

    def _execute(self, sql: str, params: Sequence[Any]) -> int:
        with self._lock:
            conn = self._open()
            try:
                row = conn.execute(sql, list(params)).fetchone()
                conn.commit()
            except psycopg.Error as exc:
                raise self._failed("write", exc) from exc
        return int(row[0]) if row else 0

    def drop(self) -> None:
        with self._lock:
            conn = self._open()
            for table in (self.events_table, self.ranges_table, self.snapshots_table, self.version_table):
                conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.commit()
