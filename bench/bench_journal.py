"""Journal throughput: append, replay, and recovery from snapshots.

The machine is shared (2 cores, often a load far above 2), so each timing is reported twice: the
CPU time of this process (what the journal's code costs; fsync waits excluded) and the wall time
(what a quiet machine would come close to, plus the fsyncs). Goals are judged on CPU time; the
same-run raw reference tells a slow journal from a contended machine.

- ``journal.append``: the service's own per-batch path: fetched ``aiokafka`` records grouped as
  ``getmany`` returns them -> :meth:`JournalService._convert` -> :meth:`JournalStore.append`
  (one transaction, WAL, ``synchronous=FULL`` as configured by default), on SQLite. Reference:
  plain ``sqlite3`` ``executemany`` of the same rows, converted beforehand, into the same schema
  with the same settings (the ceiling for this schema). Also: ``synchronous=NORMAL``, a full
  redelivery (all duplicates) and PostgreSQL (COPY). Goal: >= 50,000 events per CPU second on SQLite.
- ``journal.replay``: reading the journal back in order, raw rows and decoded typed messages.
- ``journal.recovery``: a journal of ``events`` market events with a snapshot every
  ``snapshot_every`` events (what the service's periodic snapshots leave behind: one every 60 s by
  default, so 50,000 events stand for a steady ~830 events/s); recovery is
  restoring the latest snapshot and folding the tail through the risk core and the order book.
  Goal: <= 5 s of CPU for 1,000,000 events.
"""

from __future__ import annotations

import contextlib
import math
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from aiokafka import ConsumerRecord, TopicPartition

from ata.journal.config import JournalSettings
from ata.journal.core.fold import StateFolder
from ata.journal.core.records import JournalRecord
from ata.journal.service import JournalService
from ata.journal.snapshots import rebuild, take_snapshots
from ata.journal.store import JournalStore, SqliteStore, StoreUnavailableError, Synchronous, make_store
from ata.journal.store.sqlite import configure, parameter_rows
from ata.journal.testing import PAPER_SYMBOLS, T0, paper_risk_settings, unique_prefix
from ata.risk.testing import bar
from ata.runtime.codec import decode, encode
from ata.runtime.testing import POSTGRES_DEFAULT_URL
from bench.runner import Context, Metric, benchmark, timeit

TOPIC = "market.bars.v1"
PARTITIONS = 6
HEADERS = [("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]
#: Records per fetch, as the service fetches them.
BATCH = JournalSettings.model_fields["max_batch_records"].default

Fetch = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]


def _consumed(count: int, seed: int = 1) -> list[ConsumerRecord[bytes, bytes]]:
    """``count`` bar records as the consumer receives them from a keyed topic."""
    rnd = random.Random(seed)
    prices = dict.fromkeys(PAPER_SYMBOLS, 100.0)
    offsets = [0] * PARTITIONS
    out = []
    for n in range(count):
        symbol = PAPER_SYMBOLS[n % len(PAPER_SYMBOLS)]
        prices[symbol] *= math.exp(rnd.gauss(0, 0.001))
        ts = T0 + (n // len(PAPER_SYMBOLS)) * 60_000_000_000
        value = encode(bar(symbol, ts, round(prices[symbol], 4)))
        partition = PAPER_SYMBOLS.index(symbol) % PARTITIONS
        out.append(ConsumerRecord(TOPIC, partition, offsets[partition], ts // 1_000_000, 0, symbol.encode(), value, None,
                                  len(symbol), len(value), HEADERS))
        offsets[partition] += 1
    return out


def _fetches(consumed: list[ConsumerRecord[bytes, bytes]], batch: int = BATCH) -> list[Fetch]:
    """The records cut into fetches of ``batch``, each grouped per partition like ``getmany``'s answer."""
    fetches = []
    for first in range(0, len(consumed), batch):
        fetch: Fetch = {}
        for record in consumed[first:first + batch]:
            fetch.setdefault(TopicPartition(record.topic, record.partition), []).append(record)
        fetches.append(fetch)
    return fetches


def _records(fetch: Fetch) -> list[JournalRecord]:
    return JournalService.convert(fetch)[0]  # the service's own conversion, not a copy of it


def _timed(work: Callable[[], object]) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) of ``work()``."""
    cpu, wall = time.process_time(), time.perf_counter()
    work()
    return time.process_time() - cpu, time.perf_counter() - wall


def _append_all(store: JournalStore, fetches: list[Fetch]) -> None:
    """What the service does per fetched batch, short of the Kafka commit."""
    for fetch in fetches:
        store.append(_records(fetch))


def _reference(path: Path, fetches: list[Fetch]) -> tuple[float, float]:
    """(CPU s, wall s) of plain ``executemany`` of the same rows, converted beforehand, into the same schema."""
    store = SqliteStore(f"sqlite:///{path}")
    store.open()  # creates the schema
    insert = store.insert_statement()
    store.close()
    batches = [list(parameter_rows(_records(fetch))) for fetch in fetches]
    conn = sqlite3.connect(path, isolation_level=None)
    configure(conn, "FULL")

    def run() -> None:
        for rows in batches:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(insert, rows)
            conn.execute("COMMIT")

    try:
        return _timed(run)
    finally:
        conn.close()


@contextlib.contextmanager
def _sqlite(directory: str, synchronous: Synchronous = "FULL") -> Iterator[JournalStore]:
    store = make_store(f"sqlite:///{Path(directory) / f'{unique_prefix()}journal.db'}", synchronous=synchronous)
    store.open()
    try:
        yield store
    finally:
        store.close()


def _rates(name: str, count: int, timing: tuple[float, float], *, goal: float | None = None) -> Iterator[Metric]:
    cpu, wall = timing
    yield Metric(f"{name}_events_per_cpu_s", count / cpu, "events/s", at_least=goal)
    yield Metric(f"{name}_events_per_s", count / wall, "events/s")


@benchmark(
    name="journal.append",
    goal="fetched records -> durable journal rows on SQLite (WAL, synchronous=FULL), the service's path: "
         ">= 50,000 events per CPU second",
    params={"events": 300_000, "postgres_events": 100_000},
    quick={"events": 30_000, "postgres_events": 10_000},
)
def bench_append(ctx: Context) -> Iterator[Metric]:
    count = ctx.params["events"]
    fetches = _fetches(_consumed(count))
    ctx.record("batch", BATCH)
    with tempfile.TemporaryDirectory() as directory:
        ctx.status(f"SQLite: {count:,} events")
        with _sqlite(directory) as store:
            timing = _timed(lambda: _append_all(store, fetches))
            assert store.count() == count
            yield from _rates("sqlite", count, timing, goal=50_000)
            ctx.status("SQLite: the same events again (redelivery, all duplicates)")
            yield from _rates("sqlite_redelivery", count, _timed(lambda: _append_all(store, fetches)))
        ctx.status("SQLite: raw executemany reference")
        reference = _reference(Path(directory) / "reference.db", fetches)
        yield from _rates("reference", count, reference)
        ctx.record("cpu_share_of_reference", reference[0] / timing[0])
        ctx.status("SQLite: synchronous=NORMAL")
        with _sqlite(directory, "NORMAL") as store:
            yield from _rates("sqlite_normal", count, _timed(lambda: _append_all(store, fetches)))
    # A fixed pure-Python loop, so a reader can tell a slow or contended machine from a slow journal.
    ctx.record("python_reference_us", timeit(lambda: sum(range(1000)), repeat=200).best * 1e6)
    pg_count = ctx.params["postgres_events"]
    store = make_store(POSTGRES_DEFAULT_URL, prefix=unique_prefix())
    try:
        store.open()
    except StoreUnavailableError as exc:
        ctx.record("postgres_error", str(exc))
        return
    try:
        ctx.status(f"PostgreSQL: {pg_count:,} events")
        yield from _rates("postgres", pg_count, _timed(lambda: _append_all(store, _fetches(_consumed(pg_count)))))
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
        _append_all(store, _fetches(_consumed(count)))
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
    goal="state of a 1,000,000-event journal with periodic snapshots rebuilt (latest snapshot + tail): <= 5 CPU s",
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
            _append_all(store, _fetches(consumed[first:first + every]))
            if first + every <= count - tail:
                snapshots += len(take_snapshots(store, settings))
        ctx.status("recovering")
        rebuilt: list[StateFolder] = []
        cpu, wall = _timed(lambda: rebuilt.append(rebuild(store, settings)))
        folder = rebuilt[0]
        ctx.record("snapshots", snapshots)
        assert folder.seq == count
        yield Metric("recovery_cpu_s", cpu, "s", at_most=5.0)
        yield Metric("recovery_s", wall, "s")
        yield Metric("tail_events", folder.folded, "events")
