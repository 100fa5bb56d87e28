"""Execution benchmarks: order commands through the execution service to the simulated broker.

The pipeline measured, each stage a process of its own as deployed:

    risk-like producer ──SubmitOrder──▶ orders.commands ──▶ execution (``python -m ata.execution``:
    write-ahead record in Redis, submission over HTTP to the simulated broker process, the
    broker's acknowledgement applied and recorded) ──OrderSubmitted, OrderAccepted──▶
    orders.events ──▶ an observing consumer in this process

over the embedded broker (or ``ATA_KAFKA_BOOTSTRAP``) and Redis (or ``ATA_REDIS_URL``), in an
isolated topic namespace. Every Kafka write is ``acks=all``; execution commits its input
offsets only after its outputs are acknowledged. An order counts as acknowledged when its
``OrderAccepted`` is *observed* by the consumer, so the latency includes the output's trip
through Kafka. Execution starts, reconciles and reports ready before the clock starts.

- ``execution.throughput``: a burst of orders handed to the producer at once; orders/s from
  the first command to the last ``OrderAccepted`` observed. Goal >= 2,000/s.
- ``execution.latency``: commands paced at a fixed rate (a quarter of the throughput goal, so
  the figure is the pipeline's and not a backlog's); command -> ``OrderAccepted`` latency from
  each command's *scheduled* send time (no coordinated omission), p50/p99.

Both record the CPU seconds the execution and simulated broker processes used during the run
(per order, from ``/proc``) and the load average, since the machine is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from ata.events import OrderAccepted, OrderRejected, Side, SubmitOrder, client_order_id_for
from ata.execution.service import COMMANDS, namespaced, namespaced_registry
from ata.runtime import infra
from ata.runtime.bus import KafkaBus
from ata.runtime.codec import decode
from ata.runtime.config import RuntimeSettings
from ata.runtime.kafka import provision_topics
from bench.runner import Context, Metric, benchmark, percentile

TIMEOUT_S = 300.0
#: Commands handed to the producer per call while publishing (records of one call share batches).
PUBLISH_CHUNK = 500


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
def process(argv: list[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A child process, terminated (then killed) on exit."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def sim_broker_process() -> Iterator[tuple[str, int]]:
    """(url, pid) of a simulated broker process."""
    with tempfile.TemporaryDirectory(prefix="ata-sim-") as tmp:
        port_file = Path(tmp) / "port"
        with process([sys.executable, "-m", "ata.execution.brokers.sim_server", "--port-file", str(port_file)]) as proc:
            deadline = time.monotonic() + 30
            while not port_file.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("simulated broker did not start")
                time.sleep(0.05)
            yield f"http://127.0.0.1:{port_file.read_text()}", proc.pid


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def execution_process(bootstrap: str, redis_url: str, sim_url: str, namespace: str) -> Iterator[int]:
    """The pid of ``python -m ata.execution``, once its ``/readyz`` says ready (reconciled, partitions assigned)."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="ata-exec-") as state_dir:
        env = {**os.environ, "ATA_KAFKA_BOOTSTRAP": bootstrap, "ATA_REDIS_URL": redis_url, "ATA_HTTP_PORT": str(port),
               "ATA_STATE_DIR": state_dir, "ATA_INSTANCE_ID": "bench", "ATA_LOG_LEVEL": "WARNING",
               "ATA_EXECUTION_SIM_BROKER_URL": sim_url, "ATA_EXECUTION_TOPIC_NAMESPACE": namespace,
               "ATA_EXECUTION_REDIS_PREFIX": f"bench:{namespace}", "ATA_EXECUTION_JOURNAL_RECOVERY": "off"}
        with process([sys.executable, "-m", "ata.execution"], env) as proc:
            deadline = time.monotonic() + TIMEOUT_S
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("execution did not become ready")
                with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as answer:
                    if answer.status == 200:
                        break
                time.sleep(0.1)
            yield proc.pid


def sched_seconds(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of process ``pid`` so far, over its
    threads (Linux ``/proc/<pid>/task/*/schedstat``). The wait shows how much a shared machine held it back."""
    on_cpu = waiting = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread may end while being read
            ran, waited, _ = (task / "schedstat").read_text().split()
            on_cpu += int(ran)
            waiting += int(waited)
    return on_cpu / 1e9, waiting / 1e9


def commands(count: int, run: str) -> list[SubmitOrder]:
    out = []
    for i in range(count):
        intent = uuid.uuid5(uuid.NAMESPACE_URL, f"{run}/{i}")
        out.append(SubmitOrder.origin(natural_key=(run, i), ts_event=1_700_000_000_000_000_000 + i, ts_init=1,
                                      source="risk/bench", intent_id=intent, client_order_id=client_order_id_for(intent),
                                      symbol="AAPL", side=Side.BUY, quantity=1.0))
    return out


class OrdersRejectedError(RuntimeError):
    """Execution rejected orders (e.g. its broker's breaker opened after timeouts on an overloaded machine):
    they will never be accepted, so the run ends at once instead of at its timeout."""


async def _acks(bootstrap: str, topic: str, expected: int, seen: dict[str, float], ready: asyncio.Event) -> None:
    """Record when each client order id's OrderAccepted is first observed; raise once every order was
    answered if any was rejected."""
    rejected: dict[str, str] = {}
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"bench-{uuid.uuid4().hex[:8]}",
                                auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=10,
                                session_timeout_ms=6000, heartbeat_interval_ms=1000)
    await consumer.start()
    try:
        while not consumer.assignment():  # noqa: ASYNC110  (aiokafka offers no assignment event)
            await asyncio.sleep(0.05)
        ready.set()
        while len(seen) + len(rejected) < expected:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                now = time.perf_counter()
                for record in records:
                    event = decode(record.value)
                    if isinstance(event, OrderAccepted):
                        seen.setdefault(event.client_order_id, now)
                    elif isinstance(event, OrderRejected):
                        rejected.setdefault(event.client_order_id, event.reason)
    finally:
        await consumer.stop()
    if rejected:
        reasons = Counter(rejected.values()).most_common(3)
        raise OrdersRejectedError(f"{len(rejected)} of {expected} orders rejected; most common reasons: {reasons}")


@dataclass(frozen=True)
class Run:
    rate: float  # orders/s, first command to last acknowledgement observed
    wall_s: float  # first command to last acknowledgement observed
    latencies_ms: list[float]  # per order, command (scheduled send) -> OrderAccepted observed
    execution_cpu_s: float
    execution_wait_s: float  # runnable execution threads waiting for a CPU
    broker_cpu_s: float
    load: tuple[float, float, float]


async def _publish(bootstrap: str, topic: str, batch: list[SubmitOrder], rate_per_s: float | None,
                   scheduled: dict[str, float]) -> None:
    """Hand the commands to a producer, all at once or paced, recording each one's send time."""
    async with KafkaBus(RuntimeSettings(kafka_bootstrap=bootstrap, instance_id="bench-risk"), service="risk",
                        registry=namespaced_registry("")) as bus:
        acks = []
        start = time.perf_counter()
        sent = 0
        while sent < len(batch):
            if rate_per_s is None:
                due = len(batch)
            else:
                due = min(len(batch), int((time.perf_counter() - start) * rate_per_s) + 1)
                if due <= sent:
                    await asyncio.sleep((sent / rate_per_s) - (time.perf_counter() - start))
                    continue
            chunk = batch[sent:min(due, sent + PUBLISH_CHUNK)]
            now = time.perf_counter()
            for i, cmd in enumerate(chunk, start=sent):
                scheduled[cmd.client_order_id] = start + i / rate_per_s if rate_per_s else now
            acks.append(await bus.enqueue_routed((topic, cmd, cmd.client_order_id) for cmd in chunk))
            sent += len(chunk)
            await asyncio.sleep(0)  # let acknowledgements and the observer run between chunks
        await asyncio.gather(*acks)


async def _measure(bootstrap: str, namespace: str, count: int, rate_per_s: float | None, pids: tuple[int, int]) -> Run:
    batch = commands(count, namespace)
    seen: dict[str, float] = {}
    scheduled: dict[str, float] = {}
    consumer_ready = asyncio.Event()
    watcher = asyncio.create_task(_acks(bootstrap, namespaced("orders.events.v1", namespace), count, seen, consumer_ready))
    async with asyncio.timeout(TIMEOUT_S):
        await consumer_ready.wait()
    before = [sched_seconds(pid) for pid in pids]
    await _publish(bootstrap, namespaced(COMMANDS, namespace), batch, rate_per_s, scheduled)
    async with asyncio.timeout(TIMEOUT_S):
        await watcher
    after = [sched_seconds(pid) for pid in pids]
    (execution_cpu, execution_wait), (broker_cpu, _) = [
        (cpu - cpu0, wait - wait0) for (cpu, wait), (cpu0, wait0) in zip(after, before, strict=True)]
    wall = max(seen.values()) - min(scheduled.values())
    latencies = [(seen[k] - scheduled[k]) * 1e3 for k in scheduled]
    return Run(count / wall, wall, latencies, execution_cpu, execution_wait, broker_cpu, os.getloadavg())


def run(count: int, rate_per_s: float | None) -> Run:
    """``count`` commands through a fresh execution process: a burst when ``rate_per_s`` is None."""
    namespace = f"b{uuid.uuid4().hex[:10]}"
    with infrastructure() as (bootstrap, redis_url), sim_broker_process() as (sim_url, sim_pid):
        provision_topics(bootstrap, namespaced_registry(namespace))
        with execution_process(bootstrap, redis_url, sim_url, namespace) as exec_pid:
            return asyncio.run(_measure(bootstrap, namespace, count, rate_per_s, (exec_pid, sim_pid)))


def _cpu_metrics(ctx: Context, result: Run, count: int) -> list[Metric]:
    """Where the time went: CPU per order of each process, and how long execution sat runnable without a CPU."""
    ctx.record("load_average", list(result.load))
    ctx.record("latency_ms_max", max(result.latencies_ms))
    ctx.record("wall_s", result.wall_s)
    ctx.record("execution_cpu_s", result.execution_cpu_s)
    ctx.record("execution_cpu_wait_s", result.execution_wait_s)
    cpu_ms = result.execution_cpu_s / count * 1e3
    return [Metric("execution CPU per order", cpu_ms, "ms"),
            Metric("execution one-core ceiling (1/CPU per order)", 1e3 / cpu_ms, "orders/s"),
            Metric("execution waiting for a CPU", result.execution_wait_s / result.wall_s * 100, "% of wall"),
            Metric("sim broker CPU per order", result.broker_cpu_s / count * 1e3, "ms"),
            Metric("load average (1 min)", result.load[0], "")]


@benchmark(
    "execution.throughput",
    "orders/s through the execution service to the simulated broker process: goal >= 2,000/s",
    params={"count": 5_000},
    quick={"count": 1_000},
)
def bench_throughput(ctx: Context) -> list[Metric]:
    count = ctx.params["count"]
    result = run(count, None)
    return [Metric("orders/s", result.rate, "orders/s", at_least=2000.0),
            Metric("burst p99 command->ack", percentile(result.latencies_ms, 99), "ms"),
            *_cpu_metrics(ctx, result, count)]


@benchmark(
    "execution.latency",
    "command -> OrderAccepted latency at a paced rate (p50, p99)",
    params={"count": 5_000, "rate_per_s": 500},
    quick={"count": 1_000},
)
def bench_latency(ctx: Context) -> list[Metric]:
    count = ctx.params["count"]
    result = run(count, ctx.params["rate_per_s"])
    return [Metric("p50 command->ack", percentile(result.latencies_ms, 50), "ms"),
            Metric("p99 command->ack", percentile(result.latencies_ms, 99), "ms"),
            Metric("achieved orders/s", result.rate, "orders/s"),
            *_cpu_metrics(ctx, result, count)]
