"""pytest plugin with fixtures for the real infrastructure (no mocks), and helpers for tests.

Loaded by the repository's root ``conftest.py``. The session starts the embedded
broker and Redis once, unless ``ATA_KAFKA_BOOTSTRAP`` / ``ATA_REDIS_URL`` point at
running ones. Tests get unique topic and group names so they never share state.
:func:`read_topic` / :func:`read_messages` read what a topic holds, without a consumer group.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from ata.events import BarClosed, Message
from ata.runtime import infra
from ata.runtime.codec import decode

POSTGRES_DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
READ_TIMEOUT_S = 30.0
#: The first numbered bar's time base (:func:`numbered_bar`).
BARS_T0 = 1_700_000_000_000_000_000
MINUTE_NS = 60_000_000_000


def numbered_bar(tag: str, symbol: str, n: int) -> BarClosed:
    """The ``n``-th 1-minute bar of ``symbol`` after :data:`BARS_T0`, with an id unique to ``tag`` (a test's
    own events never collide with another test's); high and close rise with ``n``, so bars differ."""
    ts = BARS_T0 + (n + 1) * MINUTE_NS
    return BarClosed.origin(
        natural_key=(tag, symbol, n), ts_event=ts, ts_init=ts, source="test/0", symbol=symbol, timeframe="1m",
        ts_open=ts - MINUTE_NS, open=100.0, high=101.0 + n, low=99.0, close=100.0 + n, volume=10.0,
    )


def bar_number(message: Message) -> int:
    """The ``n`` of a :func:`numbered_bar` (or of a message stamped with its time)."""
    return (message.ts_event - BARS_T0) // MINUTE_NS - 1


async def read_topic(bootstrap: str, topic: str, timeout_s: float = READ_TIMEOUT_S) -> list[ConsumerRecord]:
    """Every record on ``topic`` up to its high watermarks as of the read, in partition then offset order.

    Reads with a group-less consumer (nothing committed, nothing joined). High watermarks rather
    than end-offset queries, which the embedded broker does not answer reliably. Raises
    ``TimeoutError`` after ``timeout_s`` and ``AssertionError`` when the topic does not exist.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert partitions, f"{topic} has no partitions"
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        by_partition: dict[TopicPartition, list[ConsumerRecord]] = {tp: [] for tp in partitions}
        async with asyncio.timeout(timeout_s):
            while True:
                for tp, records in (await consumer.getmany(timeout_ms=100)).items():
                    by_partition[tp].extend(records)
                positions = [await consumer.position(tp) for tp in partitions]
                watermarks = [consumer.highwater(tp) for tp in partitions]
                if all(w is not None and p >= w for p, w in zip(positions, watermarks, strict=True)):
                    return [record for tp in partitions for record in by_partition[tp]]
    finally:
        await consumer.stop()


async def read_messages(bootstrap: str, topic: str, timeout_s: float = READ_TIMEOUT_S) -> list[Message]:
    """:func:`read_topic`, each record decoded into its typed message."""
    return [decode(record.value) for record in await read_topic(bootstrap, topic, timeout_s)]


@pytest.fixture(scope="session")
def embedded_infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[infra.InfraState]:
    """The broker and Redis every integration test talks to."""
    state_dir: Path = tmp_path_factory.mktemp("ata-infra")
    with infra.embedded(
        state_dir,
        kafka_bootstrap=os.environ.get("ATA_KAFKA_BOOTSTRAP") or None,
        redis_url=os.environ.get("ATA_REDIS_URL") or None,
    ) as state:
        yield state


@pytest.fixture(scope="session")
def kafka_bootstrap(embedded_infra: infra.InfraState) -> str:
    return embedded_infra.kafka_bootstrap


@pytest.fixture(scope="session")
def redis_url(embedded_infra: infra.InfraState) -> str:
    return embedded_infra.redis_url


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """``unique_name("bars")`` -> ``"t<hex>.bars.v1"``: a fresh topic or group name per call."""

    def make(stream: str) -> str:
        return f"t{uuid.uuid4().hex[:12]}.{stream}.v1"

    return make


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The machine's PostgreSQL (trust auth, database ``test``); override with ATA_TEST_POSTGRES_URL."""
    return os.environ.get("ATA_TEST_POSTGRES_URL", POSTGRES_DEFAULT_URL)
