"""Journal store fixtures on both backends: SQLite in a temporary directory and the machine's PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ata.journal.store import JournalStore
from ata.journal.testing import sqlite_url, temporary_store


@pytest.fixture(params=["sqlite", "postgres"])
def journal_url(request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str) -> str:
    """A journal database URL of each backend."""
    return sqlite_url(tmp_path) if request.param == "sqlite" else postgres_url


@pytest.fixture
def store(journal_url: str) -> Iterator[JournalStore]:
    """An open store with its own tables (unique prefix), dropped after the test."""
    with temporary_store(journal_url) as opened:
        yield opened
