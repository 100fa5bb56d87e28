"""Journal throughput: append, replay, and recovery from snapshots.

- ``journal.append``: consumed records (bytes, as the service gets them from a fetch) turned into
  journal rows and written durably in batches of ``batch`` (one transaction, ``synchronous=FULL``,
  WAL), on SQLite; the store-only rate (rows prepared beforehand) and PostgreSQL (COPY) are
  reported next to it. Goal: >= 50,000 events/s on SQLite.
- ``journal.replay``: reading the journal back in order, raw rows and decoded typed messages.
- ``journal.recovery``: a journal of ``events`` market events with a snapshot every
  ``snapshot_every`` events (what the service's periodic snapshots leave behind); recovery is
  restoring the latest snapshot and folding the tail through the risk core and the order book.
  Goal: <= 5 s for 1,000,000 events.
"""

from __future__ import annotations

import contextlib
import math
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ata.journal.core.records import JournalRecord, to_record
from ata.journal.snapshots import rebuild, take_snapshots
from ata.journal.store import JournalStore, StoreUnavailableError, make_store
from ata.journal.testing import PAPER_SYMBOLS, T0, paper_risk_settings, unique_prefix
from ata.risk.testing import bar
from ata.runtime.codec import decode, encode
from ata.runtime.testing import POSTGRES_DEFAULT_URL
from bench.runner import Context, Metric, benchmark, timeit

TOPIC = "market.bars.v1"
PARTITIONS = 6
HEADERS = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}


def _consumed(count: int, seed: int = 1) -> list[tuple[str, int, int, bytes, bytes, dict[str, str]]]:
    """``count`` bar records as fetched from a keyed topic: (topic, partition, offset, key, value, headers)."""
    rnd = random.Random(seed)
    prices = dict.fromkeys(PAPER_SYMBOLS, 100.0)
    offsets = [0] * PARTITIONS
    out = []
    for n in range(count):
        symbol = PAPER_SYMBOLS[n % len(PAPER_SYMBOLS)]
        prices[symbol] *= math.exp(rnd.gauss(0, 0.001))
        message = bar(symbol, T0 + (n // len(PAPER_SYMBOLS)) * 60_000_000_000, round(prices[symbol], 4))
        partition = PAPER_SYMBOLS.index(symbol) % PARTITIONS
        out.append((TOPIC, partition, offsets[partition], symbol.encode(), encode(message), HEADERS))
        offsets[partition] += 1
    return out


def _rows(consumed: list[tuple[str, int, int, bytes, bytes, dict[str, str]]]) -> list[JournalRecord]:
    return [to_record(t, p, o, k, v, h) for t, p, o, k, v, h in consumed]


def _append_all(store: JournalStore, consumed: list[tuple[str, int, int, bytes, bytes, dict[str, str]]], batch: int,
                 *, convert: bool) -> float:
    """Seconds to write everything in batches (converting each batch first when ``convert``)."""
    prepared = None if convert else _rows(consumed)
    started = time.perf_counter()
    for first in range(0, len(consumed), batch):
        rows = _rows(consumed[first:first + batch]) if prepared is None else prepared[first:first + batch]
        store.append(rows)
    return time.perf_counter() - started


@contextlib.contextmanager
def _sqlite(directory: str) -> Iterator[JournalStore]:
    store = make_store(f"sqlite:///{Path(directory) / f'{unique_prefix()}journal.db'}")
    store.open()
    try:
        yield store
    finally:
        store.close()


@benchmark(
    name="journal.append",
    goal="consumed records -> durable journal rows on SQLite (WAL, synchronous=FULL): >= 50,000 events/s",
    params={"events": 300_000, "batch": 5_000, "postgres_events": 100_000},
    quick={"events": 30_000, "postgres_events": 10_000},
)
def bench_append(ctx: Context) -> Iterator[Metric]:
    count, batch = ctx.params["events"], ctx.params["batch"]
    consumed = _consumed(count)
    with tempfile.TemporaryDirectory() as directory:
        ctx.status(f"SQLite: {count:,} events")
        with _sqlite(directory) as store:
            elapsed = _append_all(store, consumed, batch, convert=True)
            assert store.count() == count
        # A fixed pure-Python loop, so a reader can tell a slow or contended machine from a slow journal.
        ctx.record("python_reference_us", timeit(lambda: sum(range(1000)), repeat=200).best * 1e6)
        yield Metric("sqlite_events_per_s", count / elapsed, "events/s", at_least=50_000)
        with _sqlite(directory) as store:
            yield Metric("sqlite_store_only_events_per_s", count / _append_all(store, consumed, batch, convert=False),
                         "events/s")
            ctx.status("SQLite: the same events again (redelivery, all duplicates)")
            yield Metric("sqlite_redelivery_events_per_s", count / _append_all(store, consumed, batch, convert=True),
                         "events/s")
    pg_count = ctx.params["postgres_events"]
    store = make_store(POSTGRES_DEFAULT_URL, prefix=unique_prefix())
    try:
        store.open()
    except StoreUnavailableError as exc:
        ctx.record("postgres_error", str(exc))
        return
    try:
        ctx.status(f"PostgreSQL: {pg_count:,} events")
        yield Metric("postgres_events_per_s", pg_count / _append_all(store, consumed[:pg_count], batch, convert=True),
                     "events/s")
    finally:
        store.drop()
        store.close()


@benchmark(
    name="journal.replay",
    goal="journal read back in order (informational): raw rows and decoded typed messages per second",
    params={"events": 200_000},
    quick={"events": 20_000},
)
def bench_replay(ctx: Context) -> Iterator[Metric]:
    count = ctx.params["events"]
    with tempfile.TemporaryDirectory() as directory, _sqlite(directory) as store:
        ctx.status(f"writing {count:,} events")
        _append_all(store, _consumed(count), 5_000, convert=True)
        ctx.status("reading raw rows")
        started = time.perf_counter()
        raw = sum(1 for _ in store.events())
        yield Metric("raw_rows_per_s", raw / (time.perf_counter() - started), "events/s")
        ctx.status("reading and decoding")
        started = time.perf_counter()
        decoded = sum(1 for e in store.events() if decode(e.payload_bytes()))
        yield Metric("decoded_per_s", decoded / (time.perf_counter() - started), "events/s")


@benchmark(
    name="journal.recovery",
    goal="state of a 1,000,000-event journal with periodic snapshots rebuilt (latest snapshot + tail): <= 5 s",
    params={"events": 1_000_000, "snapshot_every": 50_000, "tail": 40_000},
    quick={"events": 100_000, "snapshot_every": 20_000, "tail": 10_000},
)
def bench_recovery(ctx: Context) -> Iterator[Metric]:
    count, every, tail = ctx.params["events"], ctx.params["snapshot_every"], ctx.params["tail"]
    settings = paper_risk_settings()
    consumed = _consumed(count, seed=2)
    snapshots = 0
    with tempfile.TemporaryDirectory() as directory, _sqlite(directory) as store:
        # Snapshots as the service takes them, up to ``tail`` events before the end.
        for first in range(0, count, every):
            ctx.status(f"journal {first:,}/{count:,} events, {snapshots} snapshots")
            store.append(_rows(consumed[first:first + every]))
            if first + every <= count - tail:
                snapshots += len(take_snapshots(store, settings))
        ctx.status("recovering")
        started = time.perf_counter()
        folder = rebuild(store, settings)
        elapsed = time.perf_counter() - started
        ctx.record("tail_events_folded", folder.folded)
        ctx.record("snapshots", snapshots)
        assert folder.seq == count
        yield Metric("recovery_s", elapsed, "s", at_most=5.0)
        yield Metric("tail_events", folder.folded, "events")
