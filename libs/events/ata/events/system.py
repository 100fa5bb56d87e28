"""Platform events: heartbeats, dead letters, journal availability."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from ata.events.envelope import Event
from ata.events.values import NonNegativeFloat


class ServiceStatus(StrEnum):
    STARTING = "starting"
    READY = "ready"
    DEGRADED = "degraded"
    DRAINING = "draining"


class HeartbeatEmitted(Event):
    service: str = Field(min_length=1, max_length=64)
    instance: str = Field(min_length=1, max_length=128)
    status: ServiceStatus
    uptime_s: NonNegativeFloat
    events_in: int = Field(ge=0)
    events_out: int = Field(ge=0)
    consumer_lag: int = Field(ge=0)
    details: dict[str, str | float | int | bool] = Field(default_factory=dict)


class DeadLetterRecorded(Event):
    """A message that failed decoding, validation or handling, with its original bytes."""

    original_topic: str
    original_partition: int = Field(ge=0)
    original_offset: int = Field(ge=0)
    original_key: str | None = None
    original_value_b64: str
    original_headers: dict[str, str] = Field(default_factory=dict)
    stage: str = Field(description="decode | validate | handle")
    error: str = Field(max_length=10000)
    consumer_group: str


class JournalAvailabilityChanged(Event):
    """The journal can (or can no longer) persist. Risk denies new orders while unavailable."""

    available: bool
    reason: str = Field(max_length=1000)
