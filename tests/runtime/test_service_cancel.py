"""A stop ends the background task even when a call inside it swallowed the cancellation."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from ata.runtime.config import RuntimeSettings
from ata.runtime.service import Phase, Service

WAIT_S = 30.0


class Stubborn(Service):
    """Its background task returns to work once after a cancellation, as a library call the cancellation landed in
    may do (a redis-py command did, and a service's stop then never ended)."""

    name = f"svc-stubborn-{uuid.uuid4().hex[:8]}"
    swallowed = 0

    def __init__(self, settings: RuntimeSettings, **kwargs: str) -> None:
        super().__init__(settings, **kwargs)
        self.working = asyncio.Event()

    async def background(self) -> None:
        self.working.set()
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if self.swallowed:
                    raise
                self.swallowed += 1


async def test_a_stop_ends_a_background_task_that_swallowed_its_cancellation(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]
) -> None:
    settings = RuntimeSettings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, instance_id="stubborn-0", http_port=0)
    service = Stubborn(settings, heartbeat_topic=unique_name("heartbeats"))
    await service.start()
    await asyncio.wait_for(service.working.wait(), WAIT_S)
    # Not wait_for: its cancellation on timeout would be the second cancellation the task needs.
    stopping = asyncio.create_task(service.stop())
    stopped, _ = await asyncio.wait([stopping], timeout=WAIT_S)
    if not stopped:
        stopping.cancel()
    assert stopped, "the stop did not end"
    assert service.phase is Phase.STOPPED and service.swallowed == 1
