"""Periodic :class:`HeartbeatEmitted` events: a service instance's status, uptime, throughput and lag.

Each heartbeat has a deterministic, unique id (service, instance, start time, sequence
number), so a heartbeat redelivered to a consumer is recognised as the same one. A failed
publish is logged and retried at the next tick: a heartbeat gap is the signal operators
watch for, so the emitter must never crash the service it reports on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ata.events import HeartbeatEmitted, ServiceStatus
from ata.runtime.metrics import HEARTBEATS

__all__ = ["HEARTBEAT_TOPIC", "HeartbeatEmitter", "HeartbeatStats"]

HEARTBEAT_TOPIC = "system.heartbeats.v1"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeartbeatStats:
    """What one heartbeat reports; produced by the service on each tick."""

    status: ServiceStatus
    events_in: int
    events_out: int
    consumer_lag: int
    details: dict[str, str | float | int | bool] = field(default_factory=dict)


class HeartbeatEmitter:
    """Sends a heartbeat every ``interval_s`` seconds through ``send`` until cancelled."""

    def __init__(
        self,
        service: str,
        instance: str,
        interval_s: float,
        *,
        stats: Callable[[], HeartbeatStats],
        send: Callable[[HeartbeatEmitted], Awaitable[None]],
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("heartbeat interval must be positive")
        self.service = service
        self.instance = instance
        self.interval_s = interval_s
        self._stats = stats
        self._send = send
        self._clock_ns = clock_ns
        self._started_ns = clock_ns()
        self._sequence = 0

    def build(self, stats: HeartbeatStats) -> HeartbeatEmitted:
        """The next heartbeat for ``stats`` (advances the sequence number)."""
        now = self._clock_ns()
        self._sequence += 1
        return HeartbeatEmitted.origin(
            natural_key=(self.service, self.instance, self._started_ns, self._sequence),
            ts_event=now,
            ts_init=now,
            source=f"{self.service}/{self.instance}",
            service=self.service,
            instance=self.instance,
            status=stats.status,
            uptime_s=max(0.0, (now - self._started_ns) / 1e9),
            events_in=stats.events_in,
            events_out=stats.events_out,
            consumer_lag=stats.consumer_lag,
            details=stats.details,
        )

    async def emit(self) -> bool:
        """Send one heartbeat now; ``False`` (and a warning) when the publish failed."""
        try:
            await self._send(self.build(self._stats()))
        except Exception:
            log.warning("heartbeat publish failed", exc_info=True, extra={"heartbeat_service": self.service})
            return False
        HEARTBEATS.labels(service=self.service, instance=self.instance).inc()
        return True

    async def run(self) -> None:
        """Emit immediately, then every ``interval_s`` seconds, until cancelled."""
        while True:
            await self.emit()
            await asyncio.sleep(self.interval_s)
