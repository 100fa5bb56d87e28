"""Market data benchmarks: replay throughput into the broker, and the synthetic generator.

``marketdata.replay``: a CSV of seeded synthetic 1-minute bars is replayed as fast as possible
by the real service (columnar read -> batch integrity checks -> clean bars encoded in bulk ->
confluent bulk producer, every record acknowledged) into fresh topics on the embedded broker (or
``ATA_KAFKA_BOOTSTRAP``). In the same run, on the same broker, a raw reference publishes the very
bytes the service writes for those bars (same keys, same sizes, encoded beforehand) with a bare
confluent producer of the service's settings (without even a delivery callback): the ceiling of this client and broker on this
machine, which the service's number is read against. Service and reference alternate, best of
``repeat`` each. Beside wall time every run reports CPU per bar, of this process (all its
threads: the client's I/O threads included) and of the broker process, because on a shared
2-core machine wall time mostly measures the other tenants.

Without the broker, the same file is measured through the batch path (``batch_core_only``:
checks + wire bytes) and through the per-record path live sources use (``core_only``: records ->
checks -> validated ``BarClosed``), so the cost of publishing and the gain of the batch path are
visible on the same machine in the same run.

``marketdata.synthetic``: 1,000,000 seeded 1-minute bars from ``ata.quant.synthetic``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil

from ata.events import REGISTRY
from ata.marketdata.config import MarketDataSettings
from ata.marketdata.core import CleanBars, IntegrityChecker, SessionCalendar
from ata.marketdata.service import BATCH_ROWS, BULK_PRODUCER_SETTINGS
from ata.marketdata.sources import FileReplay, synthetic_symbols
from ata.marketdata.testing import run_to_end
from ata.marketdata.wire import clean_bar_payloads
from ata.quant.synthetic import SyntheticConfig, generate_bars
from ata.runtime.config import RuntimeSettings
from ata.runtime.heartbeat import HEARTBEAT_TOPIC
from ata.runtime.kafka import bulk_producer, provision_topics
from bench.bench_bus import broker
from bench.runner import Context, Metric, benchmark, timeit

OUTPUT_TOPICS = ("market.bars.v1", "market.quotes.v1", "market.anomalies.v1", "market.ground_truth.v1", HEARTBEAT_TOPIC)


def write_csv(path: Path, symbols: int, minutes: int, calendar: SessionCalendar) -> int:
    """Seeded synthetic bars on XNYS session minutes from 2024-01-02; returns the number of rows."""
    block = generate_bars(SyntheticConfig(n_symbols=symbols, seed=42), minutes)
    opens = calendar.bar_opens(1_704_153_600_000_000_000, minutes, "1m").tolist()
    names = synthetic_symbols(symbols)
    columns = [np.round(a, 4).tolist() for a in (block.open, block.high, block.low, block.close, block.volume)]
    with path.open("w", encoding="utf-8") as out:
        out.write("timestamp,symbol,open,high,low,close,volume\n")
        for t, ts in enumerate(opens):
            o, h, low, c, v = (col[t] for col in columns)
            out.writelines(f"{ts},{names[k]},{o[k]},{h[k]},{low[k]},{c[k]},{v[k]}\n" for k in range(symbols))
    return symbols * minutes


@dataclasses.dataclass(frozen=True)
class Run:
    """One measured publish: wall seconds, CPU seconds of this process and of the broker (None: not local)."""

    records: int
    wall_s: float
    cpu_s: float
    broker_cpu_s: float | None

    @property
    def per_s(self) -> float:
        return self.records / self.wall_s

    def as_dict(self) -> dict[str, float | None]:
        broker = None if self.broker_cpu_s is None else round(self.broker_cpu_s / self.records * 1e6, 3)
        return {"per_s": round(self.per_s), "wall_s": round(self.wall_s, 3),
                "cpu_us_per_record": round(self.cpu_s / self.records * 1e6, 3), "broker_cpu_us_per_record": broker}


def broker_process(bootstrap: str) -> psutil.Process | None:
    """The local process listening on the bootstrap port, to read its CPU time (None when remote or not visible)."""
    host, _, port = bootstrap.split(",", maxsplit=1)[0].rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        return None
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == int(port) and conn.pid:
            return psutil.Process(conn.pid)
    return None


def cpu_s(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    times = process.cpu_times()
    return float(times.user + times.system)


def measured(records: int, broker: psutil.Process | None, publish: Callable[[], int]) -> Run:
    """Time ``publish`` (returns how many records it published) in wall and CPU time."""
    cpu0, broker0, started = time.process_time(), cpu_s(broker), time.perf_counter()
    published = publish()
    wall, cpu, broker_cpu = time.perf_counter() - started, time.process_time() - cpu0, cpu_s(broker) - broker0
    if published != records:
        raise RuntimeError(f"published {published} of {records} records")
    return Run(records, wall, cpu, broker_cpu if broker is not None else None)


def batch_outputs(checker: IntegrityChecker, replay: FileReplay) -> tuple[list[tuple[bytes, bytes]], int]:
    """The batch path over ``replay`` without a broker: clean bars as ``(key, wire bytes)``, and the other outputs' count."""
    batches = replay.batches(BATCH_ROWS)
    assert batches is not None
    bars: list[tuple[bytes, bytes]] = []
    others = 0
    for batch in batches:
        for item in checker.process_batch(batch, 0):
            if isinstance(item, CleanBars):
                key = batch.symbols[batch.symbol_index[item.rows[0]]].encode()
                bars.extend((key, value) for value in clean_bar_payloads(item, source="bench/0", ts_init=0))
            else:
                others += 1
    return bars, others


def fresh_names(bootstrap: str) -> dict[str, str]:
    """Fresh names for the service's output topics, created with their registry partitions."""
    names = {t: f"b{uuid.uuid4().hex[:10]}.{t.split('.')[1]}.v1" for t in OUTPUT_TOPICS}
    provision_topics(bootstrap, [dataclasses.replace(REGISTRY.get(t), name=n) for t, n in names.items()])
    return names


def replay_into_broker(bootstrap: str, path: Path, names: dict[str, str]) -> int:
    """The service (started and stopped here) replays ``path`` as fast as possible into the topics ``names``;
    returns the bars it published."""
    runtime = RuntimeSettings(kafka_bootstrap=bootstrap, instance_id="bench-md", http_port=0, redis_url="redis://127.0.0.1:1/0")
    md = MarketDataSettings(source="replay", replay_paths=(path,), timeframe="1m", calendar="XNYS", calendar_start="2023-06-01")
    return asyncio.run(run_to_end(runtime, md, names)).bars_published


def raw_produce(bootstrap: str, records: list[tuple[bytes, bytes]], topic: str) -> int:
    """The reference: already encoded ``(key, value)`` records through a bare producer of the service's settings,
    into ``topic``, every record acknowledged; returns how many."""
    producer = bulk_producer(bootstrap, client_id="bench-raw", **BULK_PRODUCER_SETTINGS)
    for n, (key, value) in enumerate(records):
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        if n % 10_000 == 0:
            producer.poll(0)
    left = producer.flush(60)
    producer.close()
    return len(records) - left


@benchmark(
    name="marketdata.replay",
    goal="replay into the broker from one process with the bulk producer: >= 50,000 bars/s",
    params={"symbols": 20, "minutes": 15_000, "repeat": 2},
    quick={"symbols": 10, "minutes": 2_000, "repeat": 1},
)
def bench_replay(ctx: Context) -> list[Metric]:
    calendar = SessionCalendar.from_exchange("XNYS", "2023-06-01")
    with tempfile.TemporaryDirectory(prefix="ata-bench-md-") as tmp:
        path = Path(tmp) / "bars.csv"
        ctx.status("writing the file")
        rows = write_csv(path, ctx.params["symbols"], ctx.params["minutes"], calendar)

        ctx.status("parse + checks only, record by record")
        checker = IntegrityChecker(MarketDataSettings().integrity(), calendar=calendar, source="bench/0")
        started, cpu0 = time.perf_counter(), time.process_time()
        clean = sum(1 for item in FileReplay([path], timeframe="1m", calendar=calendar) for _ in checker.process(item, 0))
        core_s, core_cpu_s = time.perf_counter() - started, time.process_time() - cpu0

        ctx.status("parse + checks + wire bytes, batch path")
        checker = IntegrityChecker(MarketDataSettings().integrity(), calendar=calendar, source="bench/0")
        started, cpu0 = time.perf_counter(), time.process_time()
        records, others = batch_outputs(checker, FileReplay([path], timeframe="1m", calendar=calendar))
        batch_core_s, batch_core_cpu_s = time.perf_counter() - started, time.process_time() - cpu0
        if len(records) + others != clean:
            raise RuntimeError(f"batch path gave {len(records) + others} outputs, per-record path {clean}")

        ours: list[Run] = []
        raw: list[Run] = []
        load = [os.getloadavg()[0]]
        with broker() as bootstrap:
            process = broker_process(bootstrap)
            for attempt in range(ctx.params["repeat"]):
                # Topics are created before the clock starts: a deployment provisions them once, not per replay.
                ctx.status(f"raw producer, run {attempt + 1}")
                topic = fresh_names(bootstrap)["market.bars.v1"]
                raw.append(measured(len(records), process, lambda b=bootstrap, t=topic: raw_produce(b, records, t)))
                ctx.status(f"replaying into the broker, run {attempt + 1}")
                names = fresh_names(bootstrap)
                ours.append(measured(rows, process, lambda b=bootstrap, n=names: replay_into_broker(b, path, n)))
                load.append(os.getloadavg()[0])
    best, best_raw = max(ours, key=lambda r: r.per_s), max(raw, key=lambda r: r.per_s)
    ctx.record("rows", rows)
    # A fixed pure-Python loop, so a reader can tell a slow or contended machine from a slow service.
    ctx.record("python_reference_us", timeit(lambda: sum(range(1000)), repeat=200).best * 1e6)
    ctx.record("load_average_1m", load)
    ctx.record("replay_runs", [r.as_dict() for r in ours])
    ctx.record("raw_runs", [r.as_dict() for r in raw])
    ctx.record("core_outputs", clean)
    ctx.record("bytes_per_bar", sum(len(value) for _, value in records) / len(records))
    metrics = [
        Metric("replay_bars_per_s", best.per_s, "bars/s", at_least=50_000.0),
        Metric("raw_producer_bars_per_s", best_raw.per_s, "bars/s"),
        Metric("replay_share_of_raw", best.per_s / best_raw.per_s, "ratio"),
        Metric("replay_cpu_us_per_bar", min(r.cpu_s for r in ours) / rows * 1e6, "us"),
        Metric("raw_cpu_us_per_bar", min(r.cpu_s for r in raw) / len(records) * 1e6, "us"),
    ]
    if best.broker_cpu_s is not None:
        metrics.append(Metric("broker_cpu_us_per_bar", min(r.broker_cpu_s or 0.0 for r in ours) / rows * 1e6, "us"))
    return [
        *metrics,
        Metric("batch_core_only_bars_per_s", rows / batch_core_s, "bars/s"),
        Metric("batch_core_only_cpu_us_per_bar", batch_core_cpu_s / rows * 1e6, "us"),
        Metric("core_only_bars_per_s", rows / core_s, "bars/s"),
        Metric("core_only_cpu_us_per_bar", core_cpu_s / rows * 1e6, "us"),
        Metric("bars", float(rows), "bars"),
    ]


@benchmark(
    name="marketdata.synthetic",
    goal="1,000,000 seeded 1-minute bars (10 symbols x 100,000 minutes) in <= 2 s",
    params={"symbols": 10, "minutes": 100_000},
    quick={"minutes": 20_000},
)
def bench_synthetic(ctx: Context) -> list[Metric]:
    config = SyntheticConfig(n_symbols=ctx.params["symbols"], seed=1)
    started = time.perf_counter()
    block = generate_bars(config, ctx.params["minutes"])
    elapsed = time.perf_counter() - started
    bars = block.close.size
    return [
        Metric("generate_s", elapsed, "s", at_most=2.0 * bars / 1_000_000),
        Metric("bars_per_s", bars / elapsed, "bars/s"),
    ]
