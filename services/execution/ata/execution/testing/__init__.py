"""Test support shipped with the package: fakes of external services we cannot reach in tests, and bounded waits."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from ata.events import Message


async def until(predicate: Callable[[], bool], what: str, timeout_s: float = 20.0, interval_s: float = 0.02) -> None:
    """Wait until ``predicate()`` holds; fail with "``what`` within ``timeout_s``s" otherwise."""
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                if predicate():
                    return
                await asyncio.sleep(interval_s)
    except TimeoutError:
        raise AssertionError(f"{what} within {timeout_s}s") from None


async def read_topic(bootstrap: str, topic: str, done: Callable[[list[Message]], bool], timeout_s: float = 30.0) -> list[Message]:
    """Messages of ``topic`` from the beginning until ``done(messages)`` holds (bounded by ``timeout_s``)."""
    from aiokafka import AIOKafkaConsumer

    from ata.runtime.codec import decode

    messages: list[Message] = []
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"check-{uuid.uuid4().hex}",
                                auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=50,
                                session_timeout_ms=6000, heartbeat_interval_ms=1000)
    await consumer.start()
    try:
        async with asyncio.timeout(timeout_s):
            while not done(messages):
                batches = await consumer.getmany(timeout_ms=200)
                messages += [decode(record.value) for records in batches.values() for record in records
                             if record.value is not None]
    except TimeoutError:
        raise AssertionError(f"{topic}: condition not met within {timeout_s}s; read {len(messages)} messages") from None
    finally:
        await consumer.stop()
    return messages
