"""Live pipeline benchmark: bars through every service on the embedded broker, beside a raw 3-hop aiokafka pipeline.

What runs (one embedded broker and Redis, started for the benchmark; every process stopped at the end):

- the services, each its own process as ``ata up`` starts them (``python -m ata.runtime.cli run <name>``
  under :class:`~ata.runtime.supervisor.Supervisor`, ``ata up``'s paper defaults: simulated broker inside
  execution, market clock): regime, strategy, oversight (rule-based, advisory), risk, execution and journal
  stay up for the whole run; market data is started once per phase with a seeded synthetic source of
  ``symbols`` 1-minute bars, 24/7 (no session gaps), on symbols of its own (fresh per-symbol state);
- the raw reference: ``producer → relay → relay → consumer`` over three fresh topics partitioned as
  ``market.bars`` (one set, and one pair of relays, for all three raw phases), each relay its own process
  (aiokafka with the runtime's client settings, ``acks=all``, orjson decode + encode of every record, offsets
  committed after the batch's outputs are acknowledged), fed with the very bytes and keys market data published
  in the rate phase. Bar → order decision is three hops as well: market data → ``market.bars`` → strategy →
  ``strategy.targets`` → risk → ``orders.commands`` / ``risk.decisions`` → an observing consumer in this
  process, as the raw pipeline's last consumer is.

Phases, services first, then the raw pipeline (with the services stopped, so they take no CPU from it):

- **idle**: before the first phase, every process's CPU use with nothing to do (consumers polling, heartbeats,
  timers), so CPU per bar can be given net of it as well.
- **paced** (``rate_per_s`` bars/s: market data's ``speed_factor`` set so, in bursts of one bar time): latency
  from a bar's publication (its ``ts_init``, stamped by market data right before producing it) to the first
  ``TargetProposed`` and the first order decision (``SubmitOrder`` or ``OrderDenied``) it causes, matched by
  ``correlation_id`` and stamped when the observer receives it. Raw: the same bursts of the same records,
  publication = just before ``send``, arrival at the last consumer. Reported with the achieved publishing rate
  and the largest backlog seen (bars published, not yet committed by the slowest service): a backlog that grows
  to the whole phase means the rate was not sustained and the latency is queueing.
- **rate** (``speed_factor`` 0): market data publishes ``rate_bars`` bars at once; the pipeline drains them.
  The end of a phase carries a fixed tail (the last hops' fetch waits, the journal's and oversight's
  batch pacing, the idle check), which a short phase measures instead of the sustained rate: 1,500 bars
  gave 635 bars/s while every service drained at 1,900-5,800 bars/s, 5,000 bars 805 bars/s. (20,000 bars,
  the raw pipeline's count, did not reach idle within the phase timeout in one try; not yet understood.)
  Rate = bars / (first bar published → every service committed every bar, then every consumer group idle on
  every topic it reads: :class:`~ata.runtime.quiescence.PipelineGate`, heartbeats aside). Services commit only
  after a message's outputs are acknowledged, so that is when every consequence (targets, orders, fills,
  journal rows) exists. Raw: ``raw_messages`` records (the rate phase's bars, cycled), until all three groups
  committed all. Beside it each service's own drain rate of the bars (the middle of its committed offsets),
  and per process (all processes of its process group, so regime's refit workers count; the broker; Redis)
  the CPU per bar, gross and net of its idle use, and the share of wall time it sat runnable waiting for a CPU.

Goals (issue #12): services' rate >= 60 % of raw; services' p99 bar → order decision <= 1.5 × raw p99 at
``rate_per_s``. The machine is shared: the load average and CPU waits are recorded, and CPU per bar is the
number that depends least on the load.

``python -m bench.bench_pipeline relay BOOTSTRAP SOURCE DESTINATION GROUP`` runs one raw relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from confluent_kafka import ConsumerGroupTopicPartitions
from confluent_kafka import TopicPartition as ConfluentPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec  # not re-exported for type checkers

from ata.events import REGISTRY, BarClosed, Topic
from ata.runtime import infra, kafka
from ata.runtime.cli_up import service_specs
from ata.runtime.config import RuntimeSettings
from ata.runtime.quiescence import PipelineGate
from ata.runtime.supervisor import Supervisor
from ata.runtime.testing import read_topic
from ata.runtime.up_modes import paper_defaults
from bench.bench_execution import sched_seconds
from bench.runner import Context, Metric, benchmark, percentile

#: Always up during the service phases; market data is started per phase.
SERVICES = ("regime", "strategy", "oversight", "risk", "execution", "journal")
BARS_TOPIC = "market.bars.v1"
PARTITIONS = REGISTRY.get(BARS_TOPIC).partitions
#: Not a consequence of bars: with several services beating, the journal is rarely idle on it.
UNGATED = frozenset({"system.heartbeats.v1"})
OBSERVED_TOPICS = ("strategy.targets.v1", "orders.commands.v1", "risk.decisions.v1")
CONSEQUENCES = {"target": frozenset({"TargetProposed"}), "decision": frozenset({"SubmitOrder", "OrderDenied"})}
BAR_MINUTES = 1
IDLE_S = 5.0
IDLE_SETTLE_S = 3.0  # after start-up, before idle CPU is measured
READY_TIMEOUT_S = 240.0
PHASE_TIMEOUT_S = 300.0
SAMPLE_S = 0.25
RAW_CHUNK = 1000
REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- processes and CPU


@dataclass(frozen=True)
class Sched:
    """Seconds a process group spent on a CPU and runnable waiting for one (``/proc/<pid>/task/*/schedstat``)."""

    cpu_s: float = 0.0
    wait_s: float = 0.0

    def __sub__(self, other: Sched) -> Sched:
        return Sched(self.cpu_s - other.cpu_s, self.wait_s - other.wait_s)


def group_sched(pgids: Mapping[str, int]) -> dict[str, Sched]:
    """:class:`Sched` so far per name: of process ``pgid`` and every live process in its process group (a service
    with its worker processes; this process alone when it leads no group). One pass over ``/proc``."""
    members: dict[int, list[int]] = {pgid: [pgid] for pgid in pgids.values()}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):  # a process may end while being read
            stat = (entry / "stat").read_text()
            pid, pgrp = int(entry.name), int(stat[stat.rindex(")") + 2:].split()[2])  # after "(comm) ": state ppid pgrp
            if pgrp in members and pid != pgrp:
                members[pgrp].append(pid)
    out = {}
    for name, pgid in pgids.items():
        cpu = wait = 0.0
        for pid in members[pgid]:
            with contextlib.suppress(OSError):
                ran, waited = sched_seconds(pid)
                cpu, wait = cpu + ran, wait + waited
        out[name] = Sched(cpu, wait)
    return out


@dataclass
class Clock:
    """Per process group :class:`Sched` and wall time since :meth:`start` (``/proc`` is read in a thread)."""

    pids: Mapping[str, int]
    _start: tuple[float, dict[str, Sched]] = (0.0, {})

    async def start(self) -> None:
        self._start = (time.monotonic(), await asyncio.to_thread(group_sched, self.pids))

    async def read(self) -> tuple[float, dict[str, Sched]]:
        """(wall seconds, Sched per name) since :meth:`start`."""
        wall, before = self._start
        now = await asyncio.to_thread(group_sched, self.pids)
        return time.monotonic() - wall, {name: now[name] - before[name] for name in self.pids}


async def idle_cpu(pids: Mapping[str, int], seconds: float) -> dict[str, float]:
    """CPU seconds per wall second each process group uses while nothing is sent to it."""
    clock = Clock(pids)
    await clock.start()
    await asyncio.sleep(seconds)
    wall, used = await clock.read()
    return {name: s.cpu_s / wall for name, s in used.items()}


async def wait_ready(supervisor: Supervisor, timeout_s: float) -> dict[str, int]:
    """Name → pid of every child once each answers ``/readyz`` with 200; raises if one exited or time ran out."""
    async with asyncio.timeout(timeout_s):
        while True:
            children = supervisor.snapshot()
            exited = [c.name for c in children if c.restarts or c.last_exit_code is not None]
            if exited:
                raise RuntimeError(f"services exited while starting: {exited}")
            if all(c.ready == "ready" and c.pid for c in children):
                return {c.name: c.pid for c in children if c.pid}
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def supervised(supervisor: Supervisor) -> AsyncIterator[Supervisor]:
    """A started supervisor, stopped (every child SIGTERMed, then SIGKILLed, and reaped) on exit."""
    supervisor.start()
    try:
        yield supervisor
    finally:
        await supervisor.stop()


# ----------------------------------------------------------------------------- offsets


class Offsets:
    """Committed and end offsets of one topic, summed over its partitions (blocking admin calls)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
        self._admin = AdminClient({"bootstrap.servers": bootstrap})
        self._partitions = [ConfluentPartition(topic, p) for p in range(partitions)]

    def end(self) -> int:
        """Approximate: the embedded broker answers with the last record batch's base offset (measured: 597 for a
        partition holding 600 records). Good for a backlog figure, not for deciding that a group is done."""
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        futures = self._admin.list_offsets(dict.fromkeys(self._partitions, latest), request_timeout=10)
        return sum(future.result(10).offset for future in futures.values())

    def committed(self, group: str) -> int:
        request = ConsumerGroupTopicPartitions(group, self._partitions)
        result = self._admin.list_consumer_group_offsets([request], request_timeout=10)[group].result(10)
        return sum(tp.offset for tp in result.topic_partitions or () if tp.offset >= 0)


@dataclass
class Progress:
    """Samples of (wall ns, approximate end offset, committed offset per group) of one topic during a phase."""

    samples: list[tuple[int, int, dict[str, int]]] = field(default_factory=list)

    def max_backlog(self) -> int:
        """Most records published but not yet committed by the slowest group."""
        return max((max(0, end - min(done.values())) for _, end, done in self.samples if done), default=0)

    def drain_rate(self, group: str, base: int, count: int) -> float | None:
        """Records/s the group committed over the middle of ``count`` records past ``base``: from its last sample
        below 20 % to its first at 80 % or more, records committed between them over the time between them.
        A group that commits whole fetched batches may jump past both marks between two samples; the span
        then reaches back to the sample before the jump, so the figure stays defined (a lower bound)."""
        progress = [(t, done[group] - base) for t, _, done in self.samples]
        before = [(t, n) for t, n in progress if n < 0.2 * count]
        after = next(((t, n) for t, n in progress if n >= 0.8 * count), None)
        if not before or after is None or after[0] <= before[-1][0]:
            return None
        (t0, n0), (t1, n1) = before[-1], after
        return (n1 - n0) / ((t1 - t0) / 1e9)


async def drain(watch: Mapping[str, Offsets], target: int, progress: Progress) -> int:
    """Sample until every group has committed ``target`` records on the topic ``watch`` gives for it; returns the
    wall ns of that moment. Exact counts, not end offsets (see :meth:`Offsets.end`)."""
    first = next(iter(watch.values()))
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        while True:
            end = await asyncio.to_thread(first.end)
            done = {g: await asyncio.to_thread(offsets.committed, g) for g, offsets in watch.items()}
            progress.samples.append((time.time_ns(), end, done))
            if all(d >= target for d in done.values()):
                return time.time_ns()
            await asyncio.sleep(SAMPLE_S)


# ----------------------------------------------------------------------------- observation


@dataclass
class Observer:
    """First arrival (wall ns) of each kind of consequence per correlation id, on the topics it reads."""

    kinds: Mapping[str, frozenset[str]]  # kind -> event types that count as it
    first: dict[str, dict[str, int]] = field(default_factory=dict)

    def note(self, value: bytes, now: int) -> None:
        data = orjson.loads(value)
        for kind, types in self.kinds.items():
            if data["event_type"] in types:
                self.first.setdefault(kind, {}).setdefault(data["correlation_id"], now)

    def latencies_ms(self, published: Mapping[str, int]) -> dict[str, list[float]]:
        """Per kind: publication → first arrival of each published id that has one."""
        out = {}
        for kind in self.kinds:
            arrived = self.first.get(kind, {})
            out[kind] = [(arrived[i] - t) / 1e6 for i, t in published.items() if i in arrived]
        return out

    async def run(self, bootstrap: str, topics: Sequence[str], ready: asyncio.Event) -> None:
        """Read ``topics`` from their beginning (group-less) until cancelled."""
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20)
        await consumer.start()
        try:
            partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ready.set()
            while True:
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    now = time.time_ns()
                    for record in records:
                        self.note(record.value, now)
        finally:
            await consumer.stop()


# ----------------------------------------------------------------------------- results


@dataclass
class PhaseResult:
    count: int  # bars (or raw records)
    wall_s: float  # first published -> everything handled
    published_rate: float  # what market data (or the raw producer) achieved, per second
    sched_wall_s: float  # wall time over which ``sched`` was taken
    sched: dict[str, Sched]  # per process group
    idle_cpu: dict[str, float]  # per process group, CPU s per s with nothing to do
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)  # per kind of consequence (paced phases)
    backlog_max: int = 0
    drain_rates: dict[str, float | None] = field(default_factory=dict)  # per service, bars/s
    progress_samples: int = 0  # offset samples taken while draining
    load: tuple[float, float, float] = field(default_factory=os.getloadavg)

    @property
    def rate(self) -> float:
        return self.count / self.wall_s

    def cpu_us(self, name: str, net: bool = False) -> float:
        """CPU microseconds per bar of a process group; ``net`` of what it would have used idle meanwhile."""
        spent = self.sched[name].cpu_s - (self.idle_cpu.get(name, 0.0) * self.sched_wall_s if net else 0.0)
        return 1e6 * spent / self.count

    def wait_share(self, name: str) -> float:
        """Share of the wall time the process group's threads sat runnable, waiting for a CPU."""
        return self.sched[name].wait_s / self.sched_wall_s

    def p(self, kind: str, q: float) -> float:
        samples = self.latencies_ms.get(kind, [])
        return percentile(samples, q) if samples else float("nan")

    def summary(self) -> dict[str, object]:
        return {
            "count": self.count, "wall_s": self.wall_s, "rate": self.rate, "published_rate": self.published_rate,
            "backlog_max": self.backlog_max, "drain_rates": self.drain_rates, "progress_samples": self.progress_samples,
            "load_average": list(self.load),
            "cpu_us_per_bar": {k: self.cpu_us(k) for k in self.sched},
            "cpu_us_per_bar_net_of_idle": {k: self.cpu_us(k, net=True) for k in self.sched},
            "idle_cpu_share": self.idle_cpu, "cpu_wait_share": {k: self.wait_share(k) for k in self.sched},
            "latency_samples": {k: len(v) for k, v in self.latencies_ms.items()},
            **{f"p{q}_ms": {k: self.p(k, q) for k in self.latencies_ms} for q in (50, 90, 99)},
        }


@dataclass(frozen=True)
class Bars:
    """Bars as published: (key, value) in bar-time order, and event id -> publication wall ns."""

    records: list[tuple[bytes, bytes]]
    published: dict[str, int]

    @property
    def published_rate(self) -> float:
        first, last = min(self.published.values()), max(self.published.values())
        return len(self.published) / max((last - first) / 1e9, 1e-9)


async def published_bars(bootstrap: str, prefix: str) -> Bars:
    """The bars of the symbols starting with ``prefix`` on ``market.bars.v1``."""
    rows = []
    for record in await read_topic(bootstrap, BARS_TOPIC, timeout_s=60.0):
        data = orjson.loads(record.value)
        if data["symbol"].startswith(prefix):
            rows.append((data["ts_event"], data["symbol"], record.key, record.value, data["event_id"], data["ts_init"]))
    rows.sort()
    return Bars([(key, value) for _, _, key, value, _, _ in rows], {row[4]: row[5] for row in rows})


# ----------------------------------------------------------------------------- service phases


@dataclass(frozen=True)
class Plan:
    symbols: int
    rate_per_s: float  # the paced phase's rate (the latency goal's)
    paced_bars: int
    low_rate_per_s: float  # a rate the services sustain here: latency without queueing
    low_bars: int
    rate_bars: int
    raw_messages: int
    seed: int = 7

    def speed(self, rate_per_s: float) -> float:
        """Market data's speed factor for ``rate_per_s`` bars/s: bar times per second x the bar's length."""
        return rate_per_s / self.symbols * 60.0 * BAR_MINUTES

    def raw_feed(self, bars: Bars, count: int, rate_per_s: float) -> RawFeed:
        """The first ``count`` bars, one bar time at a time at ``rate_per_s`` records/s."""
        return RawFeed(bars.records[:count], self.symbols, self.symbols / rate_per_s)


@dataclass(frozen=True)
class Phase:
    """One run of market data: symbols named ``<prefix>000`` ..., ``bars`` bars from ``start`` at ``speed``."""

    prefix: str
    bars: int
    speed: float  # market data's speed_factor; 0: as fast as possible
    start: str  # first synthetic session (ISO date)

    def env(self, plan: Plan) -> dict[str, str]:
        return {**paper_defaults(), "ATA_MARKETDATA_SOURCE": "synthetic", "ATA_MARKETDATA_SEED": str(plan.seed),
                "ATA_MARKETDATA_SYMBOLS": json.dumps([f"{self.prefix}{i:03d}" for i in range(plan.symbols)]),
                "ATA_MARKETDATA_SYNTHETIC_MAX_BARS": str(self.bars), "ATA_MARKETDATA_SPEED_FACTOR": repr(self.speed),
                "ATA_MARKETDATA_CALENDAR": "", "ATA_MARKETDATA_SYNTHETIC_START": self.start,
                "ATA_MARKETDATA_SYNTHETIC_TIMEFRAME": f"{BAR_MINUTES}m"}


@dataclass
class Stack:
    """The running services and what observes them."""

    state: infra.InfraState
    directory: Path
    pids: dict[str, int]  # service, broker, redis -> process group id
    idle_cpu: dict[str, float]
    observer: Observer
    gate: PipelineGate
    offsets: Offsets  # of the bars topic
    bars: int = 0  # published so far


async def service_phase(stack: Stack, plan: Plan, phase: Phase) -> PhaseResult:
    """Start market data for ``phase``, wait until the pipeline has handled all it published, stop market data."""
    groups = [g for g in SERVICES if BARS_TOPIC in stack.gate.topics[g]]
    base, end_before = stack.bars, await asyncio.to_thread(stack.offsets.end)
    spec, = service_specs(["marketdata"], stack.state, stack.directory, phase.env(plan))
    progress = Progress()
    async with supervised(Supervisor([spec], log_dir=stack.directory / "logs" / "services", probe_readiness=False)) as md:
        async with asyncio.timeout(READY_TIMEOUT_S):
            # Market data's own start-up is not the pipeline's: the clocks start at its first bars.
            while await asyncio.to_thread(stack.offsets.end) == end_before:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        clock = Clock({**stack.pids, "marketdata": md.snapshot()[0].pid or 0})
        await clock.start()
        await drain(dict.fromkeys(groups, stack.offsets), base + phase.bars, progress)
        # The rest of what the bars caused (targets, orders, fills, journal rows), by the broker's end offsets,
        # which may miss a partition's last record batch (see Offsets.end): this wait may end a batch early.
        await asyncio.wait_for(stack.gate.wait_idle(), PHASE_TIMEOUT_S)
        idle_ns = time.time_ns()
        sched_wall, sched = await clock.read()
    stack.bars += phase.bars
    bars = await published_bars(stack.state.kafka_bootstrap, phase.prefix)
    if len(bars.published) != phase.bars:
        raise RuntimeError(f"market data published {len(bars.published)} bars of {phase.prefix}*, expected {phase.bars}")
    return PhaseResult(
        phase.bars, (idle_ns - min(bars.published.values())) / 1e9, bars.published_rate, sched_wall, sched,
        stack.idle_cpu, stack.observer.latencies_ms(bars.published) if phase.speed else {}, progress.max_backlog(),
        {g: progress.drain_rate(g, base, phase.bars) for g in groups}, len(progress.samples))


def pipeline_gate(bootstrap: str) -> PipelineGate:
    """Every service's group over the topics it reads (the journal: all, heartbeats aside)."""
    topics = dict(PipelineGate.for_services(bootstrap, [s for s in SERVICES if s != "journal"]).topics)
    topics["journal"] = tuple(t for t in REGISTRY.names() if t not in UNGATED)
    return PipelineGate(bootstrap, topics)


async def services_run(state: infra.InfraState, directory: Path, plan: Plan,
                       ctx: Context) -> tuple[dict[str, PhaseResult], Bars]:
    """Every service phase on one set of running services; returns each phase's result (``low``, ``paced``,
    ``rate``) and the rate phase's bars."""
    observer = Observer(CONSEQUENCES)
    observed = asyncio.Event()
    watcher = asyncio.create_task(observer.run(state.kafka_bootstrap, OBSERVED_TOPICS, observed))
    specs = service_specs(list(SERVICES), state, directory, paper_defaults())
    try:
        async with supervised(Supervisor(specs, log_dir=directory / "logs" / "services")) as services:
            ctx.status("starting services")
            pids = await wait_ready(services, READY_TIMEOUT_S) | {"broker": state.broker_pid or 0,
                                                                   "redis": state.redis_pid or 0}
            await asyncio.wait_for(observed.wait(), READY_TIMEOUT_S)
            ctx.status("services idle")
            await asyncio.sleep(IDLE_SETTLE_S)
            stack = Stack(state, directory, pids, await idle_cpu(pids, IDLE_S), observer,
                          pipeline_gate(state.kafka_bootstrap), Offsets(state.kafka_bootstrap, BARS_TOPIC))
            results = {}
            for name, phase in {
                    "low": Phase("L", plan.low_bars, plan.speed(plan.low_rate_per_s), "2024-01-02"),
                    "paced": Phase("P", plan.paced_bars, plan.speed(plan.rate_per_s), "2024-02-01"),
                    "rate": Phase("R", plan.rate_bars, 0.0, "2024-03-01")}.items():
                ctx.status(f"services: {phase.bars} bars, {name}")
                results[name] = await service_phase(stack, plan, phase)
            restarts = {c.name: c.restarts for c in services.snapshot() if c.restarts}
            if restarts:
                raise RuntimeError(f"services restarted during the run: {restarts}")
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    return results, await published_bars(state.kafka_bootstrap, "R")


# ----------------------------------------------------------------------------- raw pipeline


async def relay(bootstrap: str, source: str, destination: str, group: str) -> None:
    """One raw hop: consume a batch, decode + re-encode each record with orjson, send it keyed as it came, await the
    acknowledgements, commit the batch. Prints ``ready`` once it has partitions; stops on SIGTERM."""
    settings = RuntimeSettings(kafka_bootstrap=bootstrap, instance_id=group)
    consumer, producer = kafka.consumer(settings, group, source), kafka.producer(settings)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await producer.start()
    await consumer.start()
    try:
        while not consumer.assignment():  # noqa: ASYNC110  (aiokafka offers no assignment event)
            await asyncio.sleep(0.05)
        print("ready", flush=True)
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            sent = []
            for records in batches.values():
                for record in records:
                    data = orjson.loads(record.value)
                    data["causation_id"], data["source"] = data["event_id"], group
                    sent.append(await producer.send(destination, orjson.dumps(data), key=record.key))
            if sent:
                await asyncio.gather(*sent)
                await consumer.commit({tp: records[-1].offset + 1 for tp, records in batches.items()})
    finally:
        await consumer.stop()
        await producer.stop()


@contextlib.contextmanager
def relay_process(bootstrap: str, source: str, destination: str, group: str) -> Iterator[int]:
    """A relay process in its own process group, ready (has partitions) when this yields its pid; stopped on exit."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "bench.bench_pipeline", "relay", bootstrap, source, destination, group],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert proc.stdout is not None
        # Blocks until the relay has partitions or exits; its Kafka client bounds its own start-up.
        if proc.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"relay {group} did not start (exit code {proc.poll()})")
        yield proc.pid
    finally:
        infra.stop_pid(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)


@dataclass(frozen=True)
class RawFeed:
    """What the raw producer sends: records in order, each one's id, and how (all at once, or paced bursts)."""

    records: Sequence[tuple[bytes, bytes]]
    burst: int  # records sent together (one bar time when paced)
    interval_s: float  # between bursts; 0: as fast as acknowledged

    def ids(self) -> list[str]:
        return [orjson.loads(value)["event_id"] for _, value in self.records]


async def raw_run(bootstrap: str, feeds: Mapping[str, tuple[RawFeed, bool]], broker_pid: int) -> dict[str, PhaseResult]:
    """Each feed in turn through one raw pipeline (relays started once, their idle CPU measured first); a feed's
    flag says whether its latencies are wanted (ids unique within it)."""
    run = f"raw{uuid.uuid4().hex[:8]}"
    names = [f"{run}.hop{i}.v1" for i in range(3)]
    topics = [Topic(name, (BarClosed,), "symbol", PARTITIONS, (), ()) for name in names]
    await asyncio.to_thread(kafka.provision_topics, bootstrap, topics)
    groups = [f"{run}-relay0", f"{run}-relay1", f"{run}-last"]
    watch = {g: Offsets(bootstrap, name) for g, name in zip(groups, names, strict=True)}
    settings = RuntimeSettings(kafka_bootstrap=bootstrap, instance_id=run)
    results, sent = {}, 0
    with relay_process(bootstrap, names[0], names[1], groups[0]) as pid0, \
            relay_process(bootstrap, names[1], names[2], groups[1]) as pid1:
        last, producer = kafka.consumer(settings, groups[2], names[2]), kafka.producer(settings)
        await last.start()
        await producer.start()
        try:
            while not last.assignment():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            pids = {"relay0": pid0, "relay1": pid1, "broker": broker_pid, "bench (producer+last)": os.getpid()}
            await asyncio.sleep(IDLE_SETTLE_S)
            idle = await idle_cpu(pids, IDLE_S)
            for name, (feed, latency) in feeds.items():
                observer, published = Observer({"decision": frozenset({"BarClosed"})}), dict[str, int]()
                clock = Clock(pids)
                await clock.start()
                consuming = asyncio.create_task(_consume_last(last, observer, len(feed.records)))
                await _produce(producer, names[0], feed, published)
                async with asyncio.timeout(PHASE_TIMEOUT_S):
                    await consuming
                sent += len(feed.records)
                idle_ns = await drain(watch, sent, Progress())
                sched_wall, sched = await clock.read()
                results[name] = PhaseResult(
                    len(feed.records), (idle_ns - min(published.values())) / 1e9, Bars([], published).published_rate,
                    sched_wall, sched, idle, observer.latencies_ms(published) if latency else {})
        finally:
            await producer.stop()
            await last.stop()
    return results


async def _produce(producer: AIOKafkaProducer, topic: str, feed: RawFeed, published: dict[str, int]) -> None:
    """Send the feed's records; each record's publication time (its first, when the feed repeats records) is taken
    just before its burst is handed over."""
    ids = feed.ids()
    start = time.perf_counter()
    acks = []
    for n, i in enumerate(range(0, len(feed.records), feed.burst)):
        if feed.interval_s:
            delay = start + n * feed.interval_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        now = time.time_ns()
        for (key, value), event_id in zip(feed.records[i:i + feed.burst], ids[i:i + feed.burst], strict=True):
            published.setdefault(event_id, now)  # a cycled feed repeats ids: its first send counts
            acks.append(await producer.send(topic, value, key=key))
        if not feed.interval_s:
            await asyncio.gather(*acks)
            acks = []
    await asyncio.gather(*acks)


async def _consume_last(consumer: AIOKafkaConsumer, observer: Observer, count: int) -> None:
    """The raw pipeline's last consumer: decode each record, note its arrival, commit each batch."""
    seen = 0
    while seen < count:
        batches = await consumer.getmany(timeout_ms=200)
        now = time.time_ns()
        for records in batches.values():
            for record in records:
                observer.note(record.value, now)
            seen += len(records)
        if batches:
            await consumer.commit({tp: records[-1].offset + 1 for tp, records in batches.items()})


# ----------------------------------------------------------------------------- benchmark


def _process_metrics(rate: PhaseResult, unit: str) -> list[Metric]:
    """Per process: CPU per bar (or message) over the phase, and what it burns with nothing to do (net figures, which
    subtract the latter, are in the details: noisy when the phase is short)."""
    out = []
    for name in sorted(rate.sched):
        out.append(Metric(f"{name}: CPU per {unit}", rate.cpu_us(name), "us"))
        if name in rate.idle_cpu:
            out.append(Metric(f"{name}: CPU when idle", 100 * rate.idle_cpu[name], "% of a core"))
    return out


@benchmark(
    "pipeline.live",
    "bars through every service on the embedded broker against a raw 3-hop aiokafka pipeline, same run: "
    "rate >= 60 % of raw; p99 bar -> order decision <= 1.5 x raw p99 at 500 bars/s",
    params={"symbols": 10, "rate_per_s": 500, "paced_bars": 1_000, "low_rate_per_s": 50, "low_bars": 500,
            "rate_bars": 5_000, "raw_messages": 20_000},
    quick={"paced_bars": 500, "low_bars": 300, "rate_bars": 2_000, "raw_messages": 5_000},
)
def bench_pipeline(ctx: Context) -> list[Metric]:
    p = ctx.params
    plan = Plan(p["symbols"], float(p["rate_per_s"]), p["paced_bars"], float(p["low_rate_per_s"]), p["low_bars"],
                p["rate_bars"], p["raw_messages"])
    with tempfile.TemporaryDirectory(prefix="ata-bench-pipeline-") as tmp, infra.embedded(Path(tmp)) as state:
        kafka.provision_topics(state.kafka_bootstrap)
        services, bars = asyncio.run(services_run(state, Path(tmp), plan, ctx))
        broker = state.broker_pid or 0
        ctx.status("raw pipeline")
        cycled = list(itertools.islice(itertools.cycle(bars.records), plan.raw_messages))
        raw = asyncio.run(raw_run(state.kafka_bootstrap, {
            "rate": (RawFeed(cycled, RAW_CHUNK, 0.0), False),
            "paced": (plan.raw_feed(bars, plan.paced_bars, plan.rate_per_s), True),
            "low": (plan.raw_feed(bars, plan.low_bars, plan.low_rate_per_s), True)}, broker))
    for side, results in (("services", services), ("raw", raw)):
        for name, result in results.items():
            ctx.record(f"{side}_{name}", result.summary())
    ctx.record("value_bytes_median", statistics.median(len(v) for _, v in bars.records))
    rate, paced, low = services["rate"], services["paced"], services["low"]
    at, low_at = f"at {plan.rate_per_s:g}/s", f"at {plan.low_rate_per_s:g}/s"
    return [
        Metric("services rate (all bars handled by all)", rate.rate, "bars/s"),
        Metric("raw 3-hop rate (all handled by all)", raw["rate"].rate, "msg/s"),
        Metric("rate ratio services/raw", rate.rate / raw["rate"].rate, at_least=0.60),
        Metric(f"services p50 bar->target {at}", paced.p("target", 50), "ms"),
        Metric(f"services p50 bar->order decision {at}", paced.p("decision", 50), "ms"),
        Metric(f"services p99 bar->order decision {at}", paced.p("decision", 99), "ms"),
        Metric(f"raw p50 {at}", raw["paced"].p("decision", 50), "ms"),
        Metric(f"raw p99 {at}", raw["paced"].p("decision", 99), "ms"),
        Metric(f"p99 ratio services/raw {at}", paced.p("decision", 99) / raw["paced"].p("decision", 99), at_most=1.5),
        Metric(f"services {at}: bars/s handled by all", paced.rate, "bars/s"),
        Metric(f"services {at}: largest backlog", paced.backlog_max, "bars"),
        Metric(f"services p50 bar->order decision {low_at}", low.p("decision", 50), "ms"),
        Metric(f"services p99 bar->order decision {low_at}", low.p("decision", 99), "ms"),
        Metric(f"raw p50 {low_at}", raw["low"].p("decision", 50), "ms"),
        Metric(f"raw p99 {low_at}", raw["low"].p("decision", 99), "ms"),
        Metric(f"services {low_at}: largest backlog", low.backlog_max, "bars"),
        *(Metric(f"{g}: drain rate", r, "bars/s") for g, r in sorted(rate.drain_rates.items()) if r is not None),
        *_process_metrics(rate, "bar"),
        Metric("services waiting for a CPU, median", 100 * statistics.median(rate.wait_share(s) for s in SERVICES),
               "% of wall"),
        *(Metric(f"raw {m.name}", m.value, m.unit) for m in _process_metrics(raw["rate"], "msg")),
        Metric("load average (1 min)", os.getloadavg()[0]),
    ]


if __name__ == "__main__":
    if sys.argv[1:2] == ["relay"] and len(sys.argv) == 6:
        asyncio.run(relay(*sys.argv[2:6]))
    else:
        raise SystemExit("usage: python -m bench.bench_pipeline relay BOOTSTRAP SOURCE DESTINATION GROUP")
