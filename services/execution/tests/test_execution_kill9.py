"""kill -9 of execution three times during a burst of 1,000 orders, against the simulated broker
running as its own process, over the real embedded broker and Redis: every intent ends with
exactly one broker order — none duplicated, none lost — and one acceptance event, on the topic
and in the ledger of a journal process running alongside (which execution also recovers from
at each restart)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import orjson
import pytest

from ata.events import Message, OrderAccepted, Side, SubmitOrder, client_order_id_for
from ata.execution.brokers.sim_client import SimulatedHttpBroker
from ata.execution.service import COMMANDS, namespaced, namespaced_registry
from ata.execution.testing import read_topic
from ata.journal.store import EventFilter, SqliteStore
from ata.runtime.bus import KafkaBus
from ata.runtime.codec import decode
from ata.runtime.config import RuntimeSettings
from ata.runtime.kafka import provision_topics

ORDERS = 1000
KILL_AT = (150, 400, 700)  # broker submissions after which execution is killed
WAIT_S = 120.0


async def wait_for(predicate: Callable[[], object], timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                result = predicate()
                if asyncio.iscoroutine(result):
                    result = await result
                if result:
                    return
                await asyncio.sleep(interval_s)
    except TimeoutError:
        raise AssertionError(f"{what} within {timeout_s}s") from None


@pytest.fixture
def sim_broker(tmp_path: Path) -> Iterator[str]:
    port_file = tmp_path / "sim.port"
    log = (tmp_path / "sim.log").open("wb")
    argv = [sys.executable, "-m", "ata.execution.brokers.sim_server", "--port", "0", "--port-file", str(port_file)]
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + WAIT_S  # importing the server takes many seconds on a loaded machine
        while time.monotonic() < deadline:
            if port_file.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert port_file.exists(), f"simulated broker did not start: {(tmp_path / 'sim.log').read_text()}"
        yield f"http://127.0.0.1:{port_file.read_text()}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


class ExecutionProcess:
    """Starts, kills (SIGKILL) and restarts ``python -m ata.execution`` (or another service ``module``)."""

    def __init__(self, env: dict[str, str], log_dir: Path, module: str = "ata.execution") -> None:
        self.env = env
        self.log_dir = log_dir
        self.module = module
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = (self.log_dir / f"{self.module}-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", self.module], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def kill9(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, "execution died on its own"
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
async def broker_client(sim_broker: str) -> AsyncIterator[SimulatedHttpBroker]:
    client = SimulatedHttpBroker("sim", sim_broker, timeout_s=5.0)
    yield client
    await client.close()


def command(index: int, run: str) -> SubmitOrder:
    intent = uuid.uuid5(uuid.NAMESPACE_URL, f"{run}/{index}")
    return SubmitOrder.origin(natural_key=(run, index), ts_event=1_700_000_000_000_000_000 + index, ts_init=1, source="risk/test",
                              intent_id=intent, client_order_id=client_order_id_for(intent), symbol="AAPL",
                              side=Side.BUY if index % 2 else Side.SELL, quantity=1 + index % 7)


@pytest.mark.slow
async def test_kill9_three_times_during_a_burst_loses_and_duplicates_nothing(
    kafka_bootstrap: str, redis_url: str, sim_broker: str, broker_client: SimulatedHttpBroker, tmp_path: Path
) -> None:
    namespace = f"k{uuid.uuid4().hex[:10]}"
    registry = namespaced_registry(namespace)
    await asyncio.to_thread(provision_topics, kafka_bootstrap, registry)
    env = {**os.environ, "ATA_KAFKA_BOOTSTRAP": kafka_bootstrap, "ATA_REDIS_URL": redis_url, "ATA_HTTP_PORT": "0",
           "ATA_STATE_DIR": str(tmp_path), "ATA_EXECUTION_SIM_BROKER_URL": sim_broker,
           "ATA_EXECUTION_TOPIC_NAMESPACE": namespace, "ATA_EXECUTION_REDIS_PREFIX": f"test:{namespace}",
           "ATA_EXECUTION_INFLIGHT_RECHECK_MS": "2000", "ATA_EXECUTION_POLL_INTERVAL_MS": "3000"}
    journal_url = f"sqlite:///{tmp_path / 'journal.db'}"
    env["ATA_JOURNAL_URL"] = journal_url
    journal = ExecutionProcess(
        {**env, "ATA_JOURNAL_TOPICS": orjson.dumps([namespaced("orders.events.v1", namespace)]).decode(),
         "ATA_JOURNAL_GROUP_ID": f"journal_{namespace}",
         "ATA_JOURNAL_AVAILABILITY_TOPIC": namespaced("system.journal.v1", namespace)},
        tmp_path, module="ata.journal")
    execution = ExecutionProcess(env, tmp_path)
    commands = [command(i, namespace) for i in range(ORDERS)]
    expected = {c.client_order_id for c in commands}

    async def submissions() -> int:
        return int((await broker_client.stats())["submissions"])

    journal.start()
    execution.start()
    try:
        async with KafkaBus(RuntimeSettings(kafka_bootstrap=kafka_bootstrap, instance_id="burst"), service="risk",
                            registry=registry) as bus:
            topic = namespaced(COMMANDS, namespace)
            for start in range(0, ORDERS, 100):
                for cmd in commands[start:start + 100]:
                    await bus.publish_to(topic, cmd, key=cmd.client_order_id)
            for threshold in KILL_AT:
                await wait_for(lambda t=threshold: _at_least(submissions, t), WAIT_S, f"broker never reached {threshold} orders")
                execution.kill9()
                execution.start()
            await wait_for(lambda: _at_least(submissions, ORDERS), WAIT_S, "not every intent reached the broker")
        stats = await broker_client.stats()
        at_broker: list[str] = stats["orders"]
        assert stats["submissions"] == ORDERS
        assert len(at_broker) == len(set(at_broker)) == ORDERS  # none duplicated
        assert set(at_broker) == expected  # none lost, nothing foreign
        accepted = await _accepted_events(kafka_bootstrap, namespaced("orders.events.v1", namespace), expected)
        assert set(accepted) == expected
        assert all(len(ids) == 1 for ids in accepted.values()), "an order was accepted twice under different event ids"
        assert execution.starts == 4
        ledger = await _journaled_acceptances(journal_url, expected)
        assert ledger == {coid: ids for coid, ids in accepted.items()}, "the journal's ledger differs from the topic"
    finally:
        execution.stop()
        journal.stop()


async def _at_least(value: Callable[[], object], threshold: int) -> bool:
    result = value()
    assert asyncio.iscoroutine(result)
    return int(await result) >= threshold


async def _accepted_events(bootstrap: str, topic: str, expected: set[str]) -> dict[str, set[uuid.UUID]]:
    """Distinct OrderAccepted event ids per client order id on ``topic`` (read from the beginning)."""

    def accepted(messages: list[Message]) -> dict[str, set[uuid.UUID]]:
        found: dict[str, set[uuid.UUID]] = defaultdict(set)
        for event in messages:
            if isinstance(event, OrderAccepted):
                found[event.client_order_id].add(event.event_id)
        return found

    messages = await read_topic(bootstrap, topic, lambda ms: set(accepted(ms)) == expected, WAIT_S)
    return accepted(messages)


async def _journaled_acceptances(url: str, expected: set[str]) -> dict[str, set[uuid.UUID]]:
    """Distinct OrderAccepted event ids per client order id in the journal, once it holds every expected order."""
    store = SqliteStore(url)
    found: dict[str, set[uuid.UUID]] = defaultdict(set)

    def read() -> bool:
        found.clear()
        for stored in store.events(EventFilter(event_types=("OrderAccepted",))):
            event = decode(stored.payload_bytes())
            assert isinstance(event, OrderAccepted)
            found[event.client_order_id].add(event.event_id)
        return set(found) == expected

    store.open()
    try:
        await wait_for(lambda: asyncio.to_thread(read), WAIT_S, "the journal did not record every acceptance", 0.5)
    finally:
        store.close()
    return dict(found)
