"""Journal stores: :func:`open_store` picks the backend from the URL (see :mod:`.base` for the contract)."""

from __future__ import annotations

from ata.journal.store.base import SCHEMA_VERSION, EventFilter, JournalStore, SchemaVersionError, Snapshot, StoreUnavailableError
from ata.journal.store.postgres import PostgresStore
from ata.journal.store.sqlite import SqliteStore, Synchronous

__all__ = ["SCHEMA_VERSION", "EventFilter", "JournalStore", "PostgresStore", "SchemaVersionError", "Snapshot", "SqliteStore",
           "StoreUnavailableError", "make_store"]


def make_store(url: str, *, prefix: str = "", synchronous: Synchronous = "FULL") -> JournalStore:
    """An unopened store for ``url``: ``sqlite:///path`` or ``postgresql://...`` (``postgres://`` too)."""
    if url.startswith("sqlite:///"):
        return SqliteStore(url, prefix, synchronous=synchronous)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url, prefix)
    raise ValueError(f"unsupported journal URL {url!r}: use sqlite:///path or postgresql://...")
