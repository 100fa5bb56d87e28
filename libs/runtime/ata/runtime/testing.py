"""pytest plugin with fixtures for the real infrastructure (no mocks).

Loaded by the repository's root ``conftest.py``. The session starts the embedded
broker and Redis once, unless ``ATA_KAFKA_BOOTSTRAP`` / ``ATA_REDIS_URL`` point at
running ones. Tests get unique topic and group names so they never share state.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ata.runtime import infra

POSTGRES_DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


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
