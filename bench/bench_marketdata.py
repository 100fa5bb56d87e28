"""Market data benchmarks: replay throughput into the broker, and the synthetic generator.

``marketdata.replay``: a CSV of seeded synthetic 1-minute bars is replayed as fast as possible
by the real service (columnar read -> batch integrity checks -> clean bars encoded in bulk ->
confluent bulk producer, every record acknowledged) into fresh topics on the embedded broker (or
``ATA_KAFKA_BOOTSTRAP``). Without the broker, the same file is measured through the batch path
(``batch_core_only``: checks + wire bytes) and through the per-record path live sources use
(``core_only``: records -> checks -> validated ``BarClosed``), so the cost of publishing and the
gain of the batch path are visible on the same machine in the same run.

``marketdata.synthetic``: 1,000,000 seeded 1-minute bars from ``ata.quant.synthetic``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from ata.events import REGISTRY
from ata.marketdata.config import MarketDataSettings
from ata.marketdata.core import CleanBars, IntegrityChecker, SessionCalendar
from ata.marketdata.service import BATCH_ROWS
from ata.marketdata.sources import FileReplay, synthetic_symbols
from ata.marketdata.testing import run_to_end
from ata.marketdata.wire import clean_bar_payloads
from ata.quant.synthetic import SyntheticConfig, generate_bars
from ata.runtime.config import RuntimeSettings
from ata.runtime.heartbeat import HEARTBEAT_TOPIC
from ata.runtime.kafka import provision_topics
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


def batch_core(checker: IntegrityChecker, replay: FileReplay) -> int:
    """Outputs of the batch path over ``replay`` (clean bars encoded to wire bytes), without a broker."""
    batches = replay.batches(BATCH_ROWS)
    assert batches is not None
    outputs = 0
    for batch in batches:
        for item in checker.process_batch(batch, 0):
            outputs += len(clean_bar_payloads(item, source="bench/0", ts_init=0)) if isinstance(item, CleanBars) else 1
    return outputs


async def replay_into_broker(bootstrap: str, path: Path) -> tuple[float, int]:
    names = {t: f"b{uuid.uuid4().hex[:10]}.{t.split('.')[1]}.v1" for t in OUTPUT_TOPICS}
    await asyncio.to_thread(provision_topics, bootstrap, [dataclasses.replace(REGISTRY.get(t), name=n) for t, n in names.items()])
    runtime = RuntimeSettings(kafka_bootstrap=bootstrap, instance_id="bench-md", http_port=0, redis_url="redis://127.0.0.1:1/0")
    md = MarketDataSettings(source="replay", replay_paths=(path,), timeframe="1m", calendar="XNYS", calendar_start="2023-06-01")
    started = time.perf_counter()
    service = await run_to_end(runtime, md, names)
    return time.perf_counter() - started, service.bars_published


@benchmark(
    name="marketdata.replay",
    goal="replay into the broker from one process with the bulk producer: >= 50,000 bars/s",
    params={"symbols": 20, "minutes": 15_000},
    quick={"symbols": 10, "minutes": 2_000},
)
def bench_replay(ctx: Context) -> list[Metric]:
    calendar = SessionCalendar.from_exchange("XNYS", "2023-06-01")
    with tempfile.TemporaryDirectory(prefix="ata-bench-md-") as tmp:
        path = Path(tmp) / "bars.csv"
        ctx.status("writing the file")
        rows = write_csv(path, ctx.params["symbols"], ctx.params["minutes"], calendar)

        ctx.status("parse + checks only, record by record")
        checker = IntegrityChecker(MarketDataSettings().integrity(), calendar=calendar, source="bench/0")
        started = time.perf_counter()
        clean = sum(1 for item in FileReplay([path], timeframe="1m", calendar=calendar) for _ in checker.process(item, 0))
        core_s = time.perf_counter() - started

        ctx.status("parse + checks + wire bytes, batch path")
        checker = IntegrityChecker(MarketDataSettings().integrity(), calendar=calendar, source="bench/0")
        started = time.perf_counter()
        batch_outputs = batch_core(checker, FileReplay([path], timeframe="1m", calendar=calendar))
        batch_core_s = time.perf_counter() - started

        ctx.status("replaying into the broker")
        with broker() as bootstrap:
            elapsed, published = asyncio.run(replay_into_broker(bootstrap, path))
    ctx.record("rows", rows)
    # A fixed pure-Python loop, so a reader can tell a slow or contended machine from a slow service.
    ctx.record("python_reference_us", timeit(lambda: sum(range(1000)), repeat=200).best * 1e6)
    ctx.record("published_bars", published)
    ctx.record("core_outputs", clean)
    ctx.record("batch_core_outputs", batch_outputs)
    if published != rows or batch_outputs != clean:
        raise RuntimeError(f"published {published} bars of {rows} rows")
    return [
        Metric("replay_bars_per_s", published / elapsed, "bars/s", at_least=50_000.0),
        Metric("batch_core_only_bars_per_s", rows / batch_core_s, "bars/s"),
        Metric("core_only_bars_per_s", rows / core_s, "bars/s"),
        Metric("bars", float(published), "bars"),
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
