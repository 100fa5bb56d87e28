"""The store on SQLite and PostgreSQL: dedup by event id, coverage and gaps, queries, snapshots, failures."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from ata.events import BarClosed, FillReported, SubmitOrder, TargetProposed
from ata.journal.core.records import UNDECODABLE, Gap, to_record
from ata.journal.store import (
    SCHEMA_VERSION,
    EventFilter,
    JournalStore,
    SchemaVersionError,
    Snapshot,
    StoreUnavailableError,
    make_store,
)
from ata.journal.testing import records_of
from ata.risk.testing import T0, bar, fill_for, target

MINUTE = 60_000_000_000


def bars(n: int, symbol: str = "AAA", start: int = 0) -> list[BarClosed]:
    return [bar(symbol, T0 + (start + i) * MINUTE, 100.0 + i) for i in range(n)]


def test_journal_store_keeps_each_event_id_once_and_covers_duplicate_offsets(store: JournalStore) -> None:
    first = bars(50)
    assert store.append(records_of(first, first_offset=0)) == 50
    # A duplicate publish: the same events again at later offsets, plus 10 new ones.
    again = first[:20] + bars(10, start=50)
    assert store.append(records_of(again, first_offset=50)) == 10
    # A redelivery of an already stored batch (consumer restart before its commit).
    assert store.append(records_of(first, first_offset=0)) == 0
    stored = list(store.events())
    assert [e.record.event_id for e in stored] == [str(m.event_id) for m in first + bars(10, start=50)]
    assert [e.seq for e in stored] == sorted({e.seq for e in stored})
    assert store.gaps() == []
    assert store.positions() == {"t.events.v1:0": 80}


def test_journal_store_reports_gaps_per_partition(store: JournalStore) -> None:
    data = bars(30)
    store.append(records_of(data[:10], partition=0, first_offset=0))
    store.append(records_of(data[10:20], partition=0, first_offset=15))
    store.append(records_of(data[20:], partition=1, first_offset=3))
    assert store.gaps() == [Gap("t.events.v1", 0, 10, 14)]
    assert store.gaps(log_start={}) == [Gap("t.events.v1", 0, 10, 14), Gap("t.events.v1", 1, 0, 2)]
    store.append(records_of(data[5:10] + data[:5], partition=0, first_offset=10))  # the hole, filled by repeats
    assert store.gaps() == []


def test_journal_store_filters_by_symbol_time_topic_and_type(store: JournalStore) -> None:
    aaa, bbb = bars(20, "AAA"), bars(20, "BBB")
    store.append(records_of(aaa + bbb, topic="market.bars.v1"))
    proposal = target("AAA", T0 + 5 * MINUTE, 0.1, 100.0)
    store.append(records_of([proposal], topic="strategy.targets.v1"))
    window = EventFilter(symbol="AAA", start_ns=T0 + 5 * MINUTE, end_ns=T0 + 10 * MINUTE)
    found = list(store.events(window))
    assert [e.record.ts_event for e in found] == [*(T0 + i * MINUTE for i in range(5, 10)), T0 + 5 * MINUTE]
    assert {e.record.event_type for e in found} == {"BarClosed", "TargetProposed"}
    assert store.count(EventFilter(topics=("strategy.targets.v1",))) == 1
    assert store.count(EventFilter(event_types=("BarClosed",), symbol="BBB")) == 20
    assert len(list(store.events(EventFilter(), chunk=7))) == 41  # pagination over several chunks


def test_journal_store_chain_returns_origin_and_every_derived_event(store: JournalStore) -> None:
    origin = bar("AAA", T0, 100.0)
    proposal = TargetProposed.caused_by(origin, source="strategy/t", symbol="AAA", target_weight=0.1, reference_price=100.0,
                                        method="t")
    order = SubmitOrder.caused_by(proposal, source="risk/t", intent_id=proposal.event_id, client_order_id="ata-x",
                                  symbol="AAA", side="buy", quantity=10.0)
    fill = FillReported.caused_by(order, source="execution/t", fill_id="f1", client_order_id="ata-x", broker="sim",
                                  symbol="AAA", side="buy", quantity=10.0, price=100.0)
    unrelated = bars(5, start=1)
    store.append(records_of([origin, *unrelated, proposal, order, fill]))
    chain = store.chain(str(origin.event_id))
    assert [e.record.event_type for e in chain] == ["BarClosed", "TargetProposed", "SubmitOrder", "FillReported"]
    assert [e.record.causation_id for e in chain[1:]] == [str(origin.event_id), str(proposal.event_id), str(order.event_id)]


def test_journal_store_keeps_undecodable_records_and_headers(store: JournalStore) -> None:
    records = [to_record("t.x.v1", 0, 0, b"k", b"\xff not json", {"traceparent": "00-abc"}),
               to_record("t.x.v1", 0, 1, None, b'{"no_event_id": 1}', {})]
    assert store.append(records) == 2
    assert store.append(records) == 0  # their ids derive from the position, so a redelivery is a repeat
    stored = list(store.events())
    assert [e.record.event_type for e in stored] == [UNDECODABLE, UNDECODABLE]
    assert orjson.loads(stored[0].record.headers) == {"traceparent": "00-abc"}
    assert "raw_b64" in orjson.loads(stored[0].record.payload)


def test_journal_store_snapshots_latest_and_bounded_by_seq(store: JournalStore) -> None:
    store.append(records_of(bars(3)))
    for seq in (1, 3, 2):
        store.save_snapshot(Snapshot(service="state", ts_ns=T0 + seq, seq=seq, state={"n": seq}, offsets={"a:0": seq}))
    store.save_snapshot(Snapshot(service="other", ts_ns=T0, seq=9, state={}))
    latest = store.latest_snapshot("state")
    assert latest is not None and (latest.seq, latest.state, latest.offsets) == (3, {"n": 3}, {"a:0": 3})
    bounded = store.latest_snapshot("state", at_or_before_seq=2)
    assert bounded is not None and bounded.state == {"n": 2}
    assert store.latest_snapshot("missing") is None


def test_journal_store_fill_payload_round_trips_exactly(store: JournalStore) -> None:
    order = SubmitOrder.origin(natural_key=("t",), ts_event=T0, ts_init=T0, source="risk/t", intent_id=bar("A", T0, 1.0).event_id,
                               client_order_id="ata-y", symbol="AAA", side="sell", quantity=3.0)
    fill = fill_for(order, T0 + 1, 101.25, fee=0.125)
    (record,) = records_of([fill])
    store.append([record])
    (stored,) = list(store.events())
    assert stored.record == record


def test_journal_store_unwritable_sqlite_path_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    store = make_store(f"sqlite:///{blocker / 'journal.db'}")
    with pytest.raises(StoreUnavailableError):
        store.open()
    with pytest.raises(StoreUnavailableError):
        store.append(records_of(bars(1)))


def test_journal_store_unreachable_postgres_is_unavailable() -> None:
    store = make_store("postgresql://postgres@127.0.0.1:1/test")
    with pytest.raises(StoreUnavailableError):
        store.append(records_of(bars(1)))


def test_journal_store_stamps_its_schema_version_and_reopens(store: JournalStore) -> None:
    store.append(records_of(bars(3)))
    assert store._fetch(f"SELECT version FROM {store.version_table}", []) == [(SCHEMA_VERSION,)]
    store.close()
    store.open()  # a journal of the current version opens again, stamped once
    assert store._fetch(f"SELECT version FROM {store.version_table}", []) == [(SCHEMA_VERSION,)]
    assert store.count() == 3


def test_journal_store_refuses_a_sqlite_journal_with_text_ids(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # what version 1 wrote: text ids, no version table
        conn.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, payload TEXT)")
        conn.execute("INSERT INTO events (event_id, payload) VALUES ('6f0b3c1e-6a53-5d7e-9b1c-2f2f8a7d4e10', '{}')")
    store = make_store(f"sqlite:///{path}")
    with pytest.raises(SchemaVersionError, match="schema version 1"):
        store.open()
    with sqlite3.connect(path) as conn:  # refused without touching the file
        assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall() == [("events",)]


def test_journal_store_repeats_within_a_batch_keep_the_first_arrival_in_order(store: JournalStore) -> None:
    data = bars(6)
    batch = records_of([data[3], data[0], data[3], data[5], data[0], data[1]])
    assert store.append(batch) == 4
    stored = list(store.events())
    assert [e.record.event_id for e in stored] == [str(data[i].event_id) for i in (3, 0, 5, 1)]
    assert [e.record.offset for e in stored] == [0, 1, 3, 5]
    assert store.get(str(data[5].event_id)) == stored[2]
