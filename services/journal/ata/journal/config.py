"""Settings of the journal service (env prefix ``ATA_JOURNAL_``); the database URL is ``ATA_JOURNAL_URL``.

``ATA_JOURNAL_URL`` belongs to :class:`~ata.runtime.config.RuntimeSettings` (every service may read
the journal): ``sqlite:///path`` (default ``sqlite:///<state_dir>/journal.db``) or ``postgresql://...``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ata.events import REGISTRY
from ata.runtime.config import ServiceSettings

AVAILABILITY_TOPIC = REGISTRY.get("system.journal.v1").name


class JournalSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ATA_JOURNAL_", frozen=True, extra="forbid")

    topics: tuple[str, ...] = Field(
        default=(), description="Topics to journal; empty: every registered topic including the dead-letter topics")
    group_id: str = Field(default="journal", min_length=1, max_length=200, description="The journal's consumer group")
    table_prefix: str = Field(default="", pattern=r"^([a-z_][a-z0-9_]{0,40})?$",
                              description="Prepended to the table names (several journals in one database)")
    sqlite_synchronous: Literal["FULL", "NORMAL", "EXTRA"] = Field(
        default="FULL", description="SQLite durability; FULL fsyncs each batch commit (see ata.journal.store.sqlite)")
    max_batch_records: int = Field(default=5000, ge=1, description="Most records fetched, written and committed together")
    batch_interval_ms: int = Field(
        default=250, ge=0, le=10_000,
        description="Least time between the starts of two batches (unless a batch was full) and longest a fetch waits "
                    "for data (at most 500 ms): records gather into fewer, larger writes and commits, for up to about "
                    "twice this much journal lag; 0: every fetch written at once")
    retry_initial_ms: int = Field(default=200, ge=1, description="First wait before retrying a failed write")
    retry_max_ms: int = Field(default=5000, ge=1, description="Longest wait between write retries")
    availability_topic: str = Field(default=AVAILABILITY_TOPIC, min_length=1,
                                    description="Where JournalAvailabilityChanged is published")
    snapshot_interval_s: float = Field(
        default=60.0, ge=0, description="Period of portfolio/orders/risk snapshots built from the journal; recovery folds "
                                        "the events after the latest one, so this bounds its work; 0: off")
    snapshot_min_events: int = Field(default=1000, ge=1, description="Events since the last snapshot before a new one")
