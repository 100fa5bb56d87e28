"""Bus benchmarks over the embedded broker (or ``ATA_KAFKA_BOOTSTRAP``).

- ``bus.roundtrip``: publish -> consumer-loop handler latency at a paced 1,000 msg/s. Latency is
  measured from each message's *scheduled* send time, so a stalled producer shows up as latency
  instead of silently lowering the rate (no coordinated omission). Measuring starts only after a
  warm-up round trip on every partition (group joined, fetch positions known, producer metadata
  loaded): a fresh topic's first seconds measure the group join, not the bus. The details record
  rebalances during the measurement and the share of a CPU the process got, because on a
  saturated machine a starved process, not the bus, dominates the tail.
- ``bus.throughput``: the runtime against hand-written aiokafka with the same client settings, in
  the same run. Produce: ``KafkaBus.publish`` (routing, keying, trace headers, metrics, acks)
  against a loop that encodes each message and sends it keyed by symbol. Consume: ``ConsumerLoop``
  (decode, topic type check, metrics, dead-letter guard, per-partition commits) against a loop
  that decodes each value into its model and commits each fetched batch; a bytes-only loop is
  reported for reference. Each round runs raw and runtime back to back, alternating which goes
  first; a ratio is the median over rounds of these pairs. Beside the best wall rates, the
  median CPU time of this process per message tells how much of a gap is the runtime's own
  work rather than the shared machine or the broker.
  Goal: runtime >= 70 % of raw for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ata.events import BarClosed, Message, Topic, TopicRegistry
from ata.runtime import infra, kafka
from ata.runtime.bus import Acks, ConsumerLoop, Delivery, KafkaBus
from ata.runtime.codec import decode, encode
from ata.runtime.config import RuntimeSettings
from ata.runtime.kafka import provision_topics
from bench.runner import Context, Metric, benchmark, percentile

T0 = 1_700_000_000_000_000_000
SYMBOLS = ("AAPL", "MSFT", "SPY", "QQQ", "NVDA", "AMZN")
PUBLISH_CHUNK = 1000
TIMEOUT_S = 120.0


@contextlib.contextmanager
def broker() -> Iterator[str]:
    """The bootstrap of ``ATA_KAFKA_BOOTSTRAP``, else of an embedded broker started for the benchmark."""
    external = os.environ.get("ATA_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    with tempfile.TemporaryDirectory(prefix="ata-bench-") as state_dir, infra.embedded(Path(state_dir)) as state:
        yield state.kafka_bootstrap


def bars(count: int) -> list[BarClosed]:
    out = []
    for n in range(count):
        ts = T0 + n * 1_000_000
        symbol = SYMBOLS[n % len(SYMBOLS)]
        out.append(BarClosed.origin(
            natural_key=("bench", symbol, n), ts_event=ts, ts_init=ts, source="bench/0", symbol=symbol, timeframe="1s",
            ts_open=ts - 1_000_000, open=100.0, high=101.0, low=99.0, close=100.5, volume=1000.0,
        ))
    return out


def fresh_topic(bootstrap: str, stream: str, partitions: int = 6) -> TopicRegistry:
    name = f"b{uuid.uuid4().hex[:10]}.{stream}.v1"
    registry = TopicRegistry([Topic(name, (BarClosed,), "symbol", partitions, (), ())])
    provision_topics(bootstrap, registry)
    return registry


# ----------------------------------------------------------------------------- round trip


@dataclass
class RoundTrip:
    latencies_s: list[float]
    offered_rate: float
    rebalances: int  # partition assignments after the warm-up: each stalls the stream
    cpu_share: float  # CPU seconds of this process per wall second while measuring


async def _roundtrip(bootstrap: str, count: int, rate_per_s: float) -> RoundTrip:
    registry = fresh_topic(bootstrap, "roundtrip")
    topic = registry.data_topics()[0].name
    warmup = bars(len(SYMBOLS))  # one per symbol: every partition that carries data sees a round trip
    messages = bars(count + len(warmup))[len(warmup):]
    scheduled: dict[uuid.UUID, float] = {}
    latencies: list[float] = []
    warmed, done = asyncio.Event(), asyncio.Event()
    warm_ids = {m.event_id for m in warmup}

    async def handler(message: Message, delivery: Delivery) -> None:
        if message.event_id in warm_ids:
            warm_ids.discard(message.event_id)
            if not warm_ids:
                warmed.set()
            return
        latencies.append(time.perf_counter() - scheduled[message.event_id])
        if len(latencies) == count:
            done.set()

    settings = RuntimeSettings(kafka_bootstrap=bootstrap, instance_id="bench")
    async with KafkaBus(settings, service="bench", registry=registry) as bus:
        loop = ConsumerLoop(bus, f"bench-{uuid.uuid4().hex[:8]}", [topic], handler)
        async with loop:
            await loop.wait_assigned(TIMEOUT_S)
            async with asyncio.timeout(TIMEOUT_S):
                await bus.publish(warmup)
                await warmed.wait()
            assignments = loop.assignments
            acks: list[Acks] = []
            cpu_start, start = time.process_time(), time.perf_counter() + 0.05
            for i, message in enumerate(messages):
                due = start + i / rate_per_s
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                scheduled[message.event_id] = due
                # Enqueued without waiting: the pace must not depend on acknowledgements.
                acks.append(await bus.enqueue_routed([(topic, message, message.symbol)]))
            sent_s = time.perf_counter() - start
            await asyncio.gather(*acks)
            async with asyncio.timeout(TIMEOUT_S):
                await done.wait()
            cpu_share = (time.process_time() - cpu_start) / (time.perf_counter() - start)
            rebalances = loop.assignments - assignments
    return RoundTrip(latencies, count / sent_s, rebalances, cpu_share)


@benchmark(
    "bus.roundtrip",
    "publish -> handler latency p50/p99 at 1,000 msg/s over the embedded broker",
    params={"count": 10_000, "rate_per_s": 1000},
    quick={"count": 2_000},
)
def bench_roundtrip(ctx: Context) -> list[Metric]:
    with broker() as bootstrap:
        ctx.status("running")
        result = asyncio.run(_roundtrip(bootstrap, ctx.params["count"], ctx.params["rate_per_s"]))
    ms = [s * 1000 for s in result.latencies_s]
    ctx.record("max_ms", max(ms))
    ctx.record("rebalances_while_measuring", result.rebalances)
    ctx.record("cpu_share", result.cpu_share)
    ctx.record("load_average_1m", os.getloadavg()[0])
    return [
        Metric("p50", percentile(ms, 50), "ms"),
        Metric("p99", percentile(ms, 99), "ms"),
        Metric("offered rate", result.offered_rate, "msg/s", at_least=0.95 * ctx.params["rate_per_s"]),
    ]


# ----------------------------------------------------------------------------- throughput


@dataclass
class Phase:
    """One measured phase: wall rate and this process's CPU per message (the broker is another process)."""

    rate: float  # msg/s
    cpu_us: float  # CPU microseconds of this process per message


@contextlib.contextmanager
def _cpu_clock() -> Iterator[list[float]]:
    """Yields a list that holds this process's CPU seconds spent inside the block, once it exits."""
    spent: list[float] = []
    start = time.process_time()
    try:
        yield spent
    finally:
        spent.append(time.process_time() - start)


async def _raw_produce(settings: RuntimeSettings, topic: str, messages: list[BarClosed]) -> float:
    """A hand-written aiokafka producer: encode each message, key it by symbol, await the acks per chunk."""
    producer = kafka.producer(settings)
    await producer.start()
    try:
        start = time.perf_counter()
        for i in range(0, len(messages), PUBLISH_CHUNK):
            futures = [await producer.send(topic, encode(m), key=m.symbol.encode()) for m in messages[i:i + PUBLISH_CHUNK]]
            await asyncio.gather(*futures)
        return len(messages) / (time.perf_counter() - start)
    finally:
        await producer.stop()


async def _runtime_produce(bus: KafkaBus, messages: list[BarClosed]) -> float:
    start = time.perf_counter()
    for i in range(0, len(messages), PUBLISH_CHUNK):
        await bus.publish(messages[i:i + PUBLISH_CHUNK])
    return len(messages) / (time.perf_counter() - start)


async def _raw_consume(settings: RuntimeSettings, topic: str, count: int, typed: bool) -> float:
    """A hand-written aiokafka group consumer: when ``typed``, each value decoded into its model (what any
    consumer of typed events must do); one commit per fetched batch for all its partitions, as the runtime."""
    consumer = kafka.consumer(settings, f"raw-{uuid.uuid4().hex[:8]}", topic)
    await consumer.start()
    try:
        seen = 0
        start: float | None = None
        async with asyncio.timeout(TIMEOUT_S):
            while seen < count:
                batches = await consumer.getmany(timeout_ms=1000)
                if not batches:
                    continue
                if start is None:
                    start = time.perf_counter()  # the group join is not throughput
                for records in batches.values():
                    if typed:
                        for record in records:
                            decode(record.value)
                    seen += len(records)
                await consumer.commit({tp: records[-1].offset + 1 for tp, records in batches.items()})
        assert start is not None
        return count / (time.perf_counter() - start)
    finally:
        await consumer.stop()


async def _runtime_consume(bus: KafkaBus, topic: str, count: int) -> float:
    seen = 0
    start: float | None = None
    done = asyncio.Event()

    async def handler(message: Message, delivery: Delivery) -> None:
        nonlocal seen, start
        if start is None:
            start = time.perf_counter()
        seen += 1
        if seen == count:
            done.set()

    async with ConsumerLoop(bus, f"runtime-{uuid.uuid4().hex[:8]}", [topic], handler):
        async with asyncio.timeout(TIMEOUT_S):
            await done.wait()
    assert start is not None
    return count / (time.perf_counter() - start)


async def _measure(count: int, run: Callable[[], Awaitable[float]]) -> Phase:
    with _cpu_clock() as cpu:
        rate = await run()
    return Phase(rate, 1e6 * cpu[0] / count)


async def _throughput_round(bootstrap: str, messages: list[BarClosed], runtime_first: bool) -> dict[str, Phase]:
    """Every phase once; raw and runtime run back to back, in the order ``runtime_first`` says."""
    settings = RuntimeSettings(kafka_bootstrap=bootstrap, instance_id="bench")
    raw_registry, runtime_registry = fresh_topic(bootstrap, "raw"), fresh_topic(bootstrap, "runtime")
    raw_topic, runtime_topic = raw_registry.data_topics()[0].name, runtime_registry.data_topics()[0].name
    count = len(messages)
    async with KafkaBus(settings, service="bench", registry=runtime_registry) as bus:
        runs: dict[str, Callable[[], Awaitable[float]]] = {
            "raw_produce": lambda: _raw_produce(settings, raw_topic, messages),
            "runtime_produce": lambda: _runtime_produce(bus, messages),
            # Both consumers read the same topic (each in its own group): same bytes, same record batches.
            "raw_consume": lambda: _raw_consume(settings, runtime_topic, count, typed=True),
            "runtime_consume": lambda: _runtime_consume(bus, runtime_topic, count),
        }
        sides = ("runtime", "raw") if runtime_first else ("raw", "runtime")
        phases = {}
        for side in sides:
            phases[f"{side}_produce"] = await _measure(count, runs[f"{side}_produce"])
        # The first reader of a fresh topic is slower whoever it is (the broker reads it from its store):
        # the bytes-only reference reads it first, so that neither consumer compared pays for it.
        phases["raw_bytes_consume"] = await _measure(count, lambda: _raw_consume(settings, runtime_topic, count, typed=False))
        for side in sides:
            phases[f"{side}_consume"] = await _measure(count, runs[f"{side}_consume"])
        return phases


@dataclass
class Throughput:
    rounds: list[dict[str, Phase]]

    def best_rate(self, phase: str) -> float:
        return max(r[phase].rate for r in self.rounds)

    def median_cpu_us(self, phase: str) -> float:
        return statistics.median(r[phase].cpu_us for r in self.rounds)

    def ratio(self, kind: str) -> float:
        """Median over rounds of runtime/raw, each pair measured back to back: load that comes and goes
        shifts both sides of a pair, where comparing best rates from different rounds would not."""
        return statistics.median(r[f"runtime_{kind}"].rate / r[f"raw_{kind}"].rate for r in self.rounds)


def _rounds(bootstrap: str, count: int, rounds: int, ctx: Context) -> Throughput:
    """``rounds`` rounds, alternating whether raw or runtime goes first (a drift in load then favours neither)."""
    messages = bars(count)
    results = []
    for i in range(rounds):
        ctx.status(f"round {i + 1}/{rounds}")
        results.append(asyncio.run(_throughput_round(bootstrap, messages, runtime_first=i % 2 == 1)))
    return Throughput(results)


@benchmark(
    "bus.throughput",
    "runtime produce/consume throughput >= 70 % of raw aiokafka, same run",
    params={"count": 20_000, "rounds": 4},
    quick={"count": 5_000, "rounds": 2},
)
def bench_throughput(ctx: Context) -> list[Metric]:
    with broker() as bootstrap:
        result = _rounds(bootstrap, ctx.params["count"], ctx.params["rounds"], ctx)
    ctx.record("rounds", [{name: dataclasses.asdict(phase) for name, phase in r.items()} for r in result.rounds])
    ctx.record("load_average_1m", os.getloadavg()[0])
    metrics = []
    for kind in ("produce", "consume"):
        for side in ("raw", "runtime"):
            phase = f"{side}_{kind}"
            metrics.append(Metric(f"{side} {kind}, best", result.best_rate(phase), "msg/s"))
            metrics.append(Metric(f"{side} {kind}, CPU", result.median_cpu_us(phase), "us/msg"))
        metrics.append(Metric(f"{kind} ratio", result.ratio(kind), at_least=0.70))
    metrics.append(Metric("raw consume bytes only, best", result.best_rate("raw_bytes_consume"), "msg/s"))
    metrics.append(Metric("raw consume bytes only, CPU", result.median_cpu_us("raw_bytes_consume"), "us/msg"))
    return metrics
