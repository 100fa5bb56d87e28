"""``ata journal`` commands over a SQLite journal of a paper-trading run (and the real broker and Redis)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import orjson
import pandas as pd
import pytest
from aiokafka import AIOKafkaConsumer
from redis import Redis
from typer.testing import CliRunner

from ata.events import OrderStatus
from ata.journal.cli import app
from ata.journal.core.records import COLUMNS
from ata.journal.snapshots import SNAPSHOT_SERVICE
from ata.journal.store import SchemaVersionError, SqliteStore
from ata.journal.testing import PaperRun, paper_risk_env, paper_run, sqlite_url

runner = CliRunner()


@pytest.fixture(scope="module")
def run() -> PaperRun:
    return asyncio.run(paper_run(seed=5, bars=100))


@pytest.fixture
def journal(run: PaperRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SqliteStore:
    url = sqlite_url(tmp_path)
    store = SqliteStore(url)
    store.open()
    store.append(run.records)
    monkeypatch.setenv("ATA_JOURNAL_URL", url)
    for key, value in paper_risk_env().items():
        monkeypatch.setenv(key, value)
    return store


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_journal_cli_chain_prints_every_link_of_a_filled_order(run: PaperRun, journal: SqliteStore) -> None:
    order = next(o for o in run.live_orders().values() if o.status is OrderStatus.FILLED)
    out = invoke("chain", str(order.correlation_id))
    for link in ("BarClosed", "SignalGenerated", "TargetProposed", "OversightReviewed", "SubmitOrder", "OrderAccepted",
                 "FillReported", "OrderFilled"):
        assert link in out
    assert order.client_order_id in out


def test_journal_cli_events_by_symbol_and_time(run: PaperRun, journal: SqliteStore) -> None:
    bars = [r for r in run.records if r.event_type == "BarClosed" and r.symbol == "BBB"][10:15]
    out = invoke("events", "--symbol", "BBB", "--from", str(bars[0].ts_event), "--to", str(bars[-1].ts_event + 1))
    assert all(b.event_id in out for b in bars)
    assert "AAA" not in out


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_journal_cli_export_reads_back_with_pandas(run: PaperRun, journal: SqliteStore, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"fills.{fmt}"
    invoke("export", "--format", fmt, "--out", str(out), "--topics", "orders.fills.v1")
    frame = pd.read_parquet(out) if fmt == "parquet" else pd.read_csv(out)
    fills = [r for r in run.records if r.topic == "orders.fills.v1"]
    assert list(frame["event_id"]) == [r.event_id for r in fills]
    assert [orjson.loads(p)["price"] for p in frame["payload"]] == [orjson.loads(r.payload)["price"] for r in fills]


def test_journal_cli_replay_stdout_reproduces_payloads(run: PaperRun, journal: SqliteStore) -> None:
    out = invoke("replay", "--stdout", "--topics", "strategy.targets.v1")
    assert out.splitlines() == [r.payload for r in run.records if r.topic == "strategy.targets.v1"]


def test_journal_cli_snapshot_stores_the_live_state(run: PaperRun, journal: SqliteStore) -> None:
    out = invoke("snapshot")
    assert "snapshot stored" in out and "Open orders" in out
    latest = journal.latest_snapshot(SNAPSHOT_SERVICE)
    assert latest is not None and latest.seq == len(run.records)
    assert latest.state["risk"] == orjson.loads(orjson.dumps(run.risk.snapshot()))
    assert "nothing new" in invoke("snapshot")


def test_journal_cli_replay_into_risk_writes_its_restorable_state(run: PaperRun, journal: SqliteStore, redis_url: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    key = f"test:risk:{id(journal)}"
    monkeypatch.setenv("ATA_REDIS_URL", redis_url)
    monkeypatch.setenv("ATA_RISK_STATE_KEY", key)
    invoke("replay", "--into", "risk")
    client = Redis.from_url(redis_url)
    try:
        assert orjson.loads(client.get(key) or b"null") == orjson.loads(orjson.dumps(run.risk.snapshot()))
    finally:
        client.delete(key)
        client.close()


async def test_journal_cli_replay_to_prefix_publishes_every_event(run: PaperRun, journal: SqliteStore, kafka_bootstrap: str,
                                                                  unique_name: Callable[[str], str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox = unique_name("sandbox").split(".")[0]
    monkeypatch.setenv("ATA_KAFKA_BOOTSTRAP", kafka_bootstrap)
    await asyncio.to_thread(invoke, "replay", "--to-prefix", sandbox, "--topics", "orders.fills.v1")
    expected = [r.event_id for r in run.records if r.topic == "orders.fills.v1"]
    consumer = AIOKafkaConsumer(f"{sandbox}.orders.fills.v1", bootstrap_servers=kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen: list[str] = []
    try:
        async with asyncio.timeout(60):
            while len(seen) < len(expected):
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    seen += [orjson.loads(r.value)["event_id"] for r in records]
    finally:
        await consumer.stop()
    assert sorted(seen) == sorted(expected)


def test_journal_cli_recover_reports_orphans_against_a_fresh_broker(run: PaperRun, journal: SqliteStore) -> None:
    open_orders = [coid for coid, o in run.live_orders().items() if not o.status.terminal]
    out = invoke("recover", "--policy", "resolve", "--no-publish")
    assert f"{len(open_orders)} orphaned orders" in out
    assert out.count("closed_phantom") == len(open_orders)  # the fresh in-process broker knows none of them


def test_journal_cli_gaps_is_clean_for_a_contiguous_journal(journal: SqliteStore) -> None:
    assert "0 gaps" in invoke("gaps")


#: What schema version 1 created on SQLite: ids as text, a Kafka-position index, no version table.
V1_SCHEMA = """
CREATE TABLE events (
    seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, topic TEXT NOT NULL, "partition" INTEGER NOT NULL,
    "offset" INTEGER NOT NULL, key TEXT, event_type TEXT NOT NULL, ts_event INTEGER NOT NULL, ts_init INTEGER NOT NULL,
    correlation_id TEXT, causation_id TEXT, symbol TEXT, headers TEXT NOT NULL, payload TEXT NOT NULL);
CREATE INDEX events_correlation ON events (correlation_id) WHERE correlation_id <> event_id;
CREATE INDEX events_symbol_ts ON events (symbol, ts_event);
CREATE INDEX events_position ON events (topic, "partition", "offset");
CREATE TABLE ranges (topic TEXT NOT NULL, "partition" INTEGER NOT NULL, first_offset INTEGER NOT NULL,
    last_offset INTEGER NOT NULL);
CREATE INDEX ranges_tp ON ranges (topic, "partition", first_offset);
CREATE TABLE snapshots (snapshot_id INTEGER PRIMARY KEY, service TEXT NOT NULL, ts_ns INTEGER NOT NULL,
    seq INTEGER NOT NULL, offsets TEXT NOT NULL, state TEXT NOT NULL, created_ns INTEGER NOT NULL);
CREATE INDEX snapshots_service ON snapshots (service, seq);
"""


def test_journal_migrate_converts_a_version_1_sqlite_journal_in_place(run: PaperRun, journal: SqliteStore,
                                                                       tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(V1_SCHEMA)
        columns = ", ".join(f'"{c}"' for c in COLUMNS)
        conn.executemany(f"INSERT INTO events ({columns}) VALUES ({', '.join('?' * len(COLUMNS))})", run.records)
        conn.execute("INSERT INTO ranges VALUES ('orders.events.v1', 0, 0, 41)")
    old = SqliteStore(f"sqlite:///{path}")
    with pytest.raises(SchemaVersionError, match="ata journal migrate"):
        old.open()
    result = runner.invoke(app, ["migrate", "--url", f"sqlite:///{path}"])
    assert result.exit_code == 0, result.output
    assert f"{len(run.records)} events converted" in result.output
    old.open()
    try:
        assert list(old.events()) == list(journal.events())  # same seq, ids, columns as a journal written by v2
        fill = next(e.record for e in old.events() if e.record.event_type == "OrderFilled")
        assert fill.correlation_id is not None and old.chain(fill.correlation_id) == journal.chain(fill.correlation_id)
        assert old.gaps() == [] and old.positions() == {"orders.events.v1:0": 42}
        assert old.append(run.records[:10]) == 0  # dedup works on the converted ids
    finally:
        old.close()
    again = runner.invoke(app, ["migrate", "--url", f"sqlite:///{path}"])
    assert again.exit_code == 0 and "nothing to convert" in again.output
