"""Execution benchmarks: order commands through the execution service to the simulated broker.

The simulated broker runs as its own process (HTTP on 127.0.0.1), execution runs in this
process as a real :class:`~ata.execution.service.ExecutionService` over the embedded broker
(or ``ATA_KAFKA_BOOTSTRAP``) and Redis, in an isolated topic namespace.

- ``execution.throughput``: a burst of orders published at once; orders/s from the first
  command to the last ``OrderAccepted`` observed on the order events topic. Goal >= 2,000/s.
- ``execution.latency``: commands paced at a fixed rate; command -> ``OrderAccepted`` latency
  measured from each command's scheduled send time (no coordinated omission), p50/p99.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from ata.events import OrderAccepted, Side, SubmitOrder, client_order_id_for
from ata.execution.config import ExecutionSettings
from ata.execution.service import COMMANDS, ExecutionService, namespaced, namespaced_registry
from ata.runtime import infra
from ata.runtime.bus import KafkaBus
from ata.runtime.codec import decode
from ata.runtime.config import RuntimeSettings
from ata.runtime.kafka import provision_topics
from bench.runner import Context, Metric, benchmark, percentile

TIMEOUT_S = 180.0


@contextlib.contextmanager
def infrastructure() -> Iterator[tuple[str, str]]:
    """(kafka bootstrap, redis url): from the environment, else embedded for the benchmark."""
    kafka, redis = os.environ.get("ATA_KAFKA_BOOTSTRAP"), os.environ.get("ATA_REDIS_URL")
    if kafka and redis:
        yield kafka, redis
        return
    with tempfile.TemporaryDirectory(prefix="ata-bench-") as state_dir, infra.embedded(Path(state_dir)) as state:
        yield state.kafka_bootstrap, state.redis_url


@contextlib.contextmanager
def sim_broker_process() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="ata-sim-") as tmp:
        port_file = Path(tmp) / "port"
        proc = subprocess.Popen([sys.executable, "-m", "ata.execution.brokers.sim_server", "--port-file", str(port_file)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while not port_file.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("simulated broker did not start")
                time.sleep(0.05)
            yield f"http://127.0.0.1:{port_file.read_text()}"
        finally:
            proc.terminate()
            proc.wait(10)


def commands(count: int, run: str) -> list[SubmitOrder]:
    out = []
    for i in range(count):
        intent = uuid.uuid5(uuid.NAMESPACE_URL, f"{run}/{i}")
        out.append(SubmitOrder.origin(natural_key=(run, i), ts_event=1_700_000_000_000_000_000 + i, ts_init=1,
                                      source="risk/bench", intent_id=intent, client_order_id=client_order_id_for(intent),
                                      symbol="AAPL", side=Side.BUY, quantity=1.0))
    return out


@contextlib.asynccontextmanager
async def running_execution(bootstrap: str, redis_url: str, sim_url: str, namespace: str) -> AsyncIterator[ExecutionService]:
    settings = RuntimeSettings(kafka_bootstrap=bootstrap, redis_url=redis_url, instance_id="bench")
    exec_settings = ExecutionSettings(sim_broker_url=sim_url, topic_namespace=namespace, redis_prefix=f"bench:{namespace}")
    service = ExecutionService(settings, exec_settings)
    await service.start()
    try:
        async with asyncio.timeout(TIMEOUT_S):
            while not service.ready:  # noqa: ASYNC110  (readiness has no event to wait on)
                await asyncio.sleep(0.05)
        yield service
    finally:
        await service.stop()


async def _acks(bootstrap: str, topic: str, expected: int, seen: dict[str, float], ready: asyncio.Event) -> None:
    """Record when each client order id's OrderAccepted is first observed."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"bench-{uuid.uuid4().hex[:8]}",
                                auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=10,
                                session_timeout_ms=6000, heartbeat_interval_ms=1000)
    await consumer.start()
    try:
        while not consumer.assignment():  # noqa: ASYNC110  (aiokafka offers no assignment event)
            await asyncio.sleep(0.05)
        ready.set()
        while len(seen) < expected:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                now = time.perf_counter()
                for record in records:
                    event = decode(record.value)
                    if isinstance(event, OrderAccepted):
                        seen.setdefault(event.client_order_id, now)
    finally:
        await consumer.stop()


async def _run(count: int, rate_per_s: float | None) -> tuple[float, list[float]]:
    """(orders/s, latencies in s) for ``count`` commands, a burst when ``rate_per_s`` is None."""
    namespace = f"b{uuid.uuid4().hex[:10]}"
    registry = namespaced_registry(namespace)
    with infrastructure() as (bootstrap, redis_url), sim_broker_process() as sim_url:
        await asyncio.to_thread(provision_topics, bootstrap, registry)
        batch = commands(count, namespace)
        seen: dict[str, float] = {}
        scheduled: dict[str, float] = {}
        async with running_execution(bootstrap, redis_url, sim_url, namespace):
            consumer_ready = asyncio.Event()
            events_topic = namespaced("orders.events.v1", namespace)
            watcher = asyncio.create_task(_acks(bootstrap, events_topic, count, seen, consumer_ready))
            async with asyncio.timeout(TIMEOUT_S):
                await consumer_ready.wait()
            topic = namespaced(COMMANDS, namespace)
            async with KafkaBus(RuntimeSettings(kafka_bootstrap=bootstrap, instance_id="bench-risk"), service="risk",
                                registry=registry) as bus:
                start = time.perf_counter() + 0.05
                pending = []
                for i, cmd in enumerate(batch):
                    due = start + (i / rate_per_s if rate_per_s else 0.0)
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    scheduled[cmd.client_order_id] = max(due, time.perf_counter()) if rate_per_s is None else due
                    pending.append(asyncio.create_task(bus.publish_to(topic, cmd, key=cmd.client_order_id)))
                await asyncio.gather(*pending)
                async with asyncio.timeout(TIMEOUT_S):
                    await watcher
        first = min(scheduled.values())
        rate = count / (max(seen.values()) - first)
        return rate, [seen[k] - scheduled[k] for k in scheduled]


@benchmark(
    "execution.throughput",
    "orders/s through the execution service to the simulated broker process: goal >= 2,000/s",
    params={"count": 5_000},
    quick={"count": 1_000},
)
def bench_throughput(ctx: Context) -> list[Metric]:
    rate, latencies = asyncio.run(_run(ctx.params["count"], None))
    ms = [x * 1e3 for x in latencies]
    return [Metric("orders/s", rate, "orders/s", at_least=2000.0), Metric("burst p99 command->ack", percentile(ms, 99), "ms")]


@benchmark(
    "execution.latency",
    "command -> OrderAccepted latency at a paced 500 orders/s (p50, p99)",
    params={"count": 5_000, "rate_per_s": 500},
    quick={"count": 1_000},
)
def bench_latency(ctx: Context) -> list[Metric]:
    _, latencies = asyncio.run(_run(ctx.params["count"], ctx.params["rate_per_s"]))
    ms = [x * 1e3 for x in latencies]
    ctx.record("latency_ms_max", max(ms))
    return [Metric("p50", percentile(ms, 50), "ms"), Metric("p99", percentile(ms, 99), "ms")]
