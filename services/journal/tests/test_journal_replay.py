"""Replay equivalence: state rebuilt from the journal equals the live state of risk and execution after a
paper-trading run (full fold, and snapshot + tail); the chain of a filled order is complete."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ata.events import OrderStatus
from ata.journal.core.fold import order_view
from ata.journal.snapshots import SNAPSHOT_SERVICE, rebuild, take_snapshots
from ata.journal.store import JournalStore, Snapshot
from ata.journal.testing import PaperRun, paper_risk_settings, paper_run

FLOAT_FIELDS = ("cum_fee", "avg_fill_price")


@pytest.fixture(scope="module")
def run() -> PaperRun:
    return asyncio.run(paper_run(seed=11, bars=150))


def comparable(view: dict[str, Any]) -> dict[str, Any]:
    """Exact fields as they are; fee and average price (sums of float increments) within 1e-12 relative."""
    return {k: pytest.approx(v, rel=1e-12) if k in FLOAT_FIELDS and v is not None else v for k, v in view.items()}


def assert_equivalent(run: PaperRun, store: JournalStore, **rebuild_options: Any) -> None:
    folder = rebuild(store, paper_risk_settings(), **rebuild_options)
    assert folder.risk.snapshot() == run.risk.snapshot()
    live = {coid: order_view(o) for coid, o in run.live_orders().items()}
    rebuilt = {coid: order_view(o) for coid, o in folder.orders.orders.items()}
    assert set(rebuilt) == set(live)
    for coid, view in live.items():
        assert rebuilt[coid] == comparable(view), coid
    assert folder.orders.anomalies == []


def test_journal_paper_run_is_not_trivial(run: PaperRun) -> None:
    statuses = {o.status for o in run.live_orders().values()}
    assert OrderStatus.FILLED in statuses and any(not s.terminal for s in statuses)
    assert run.risk.portfolio.open_positions() and run.risk.portfolio.fees > 0


def test_journal_full_replay_equals_live_risk_and_order_book(run: PaperRun, store: JournalStore) -> None:
    assert store.append(run.records) == len(run.records)
    assert_equivalent(run, store, from_snapshot=False)


def test_journal_snapshot_plus_tail_equals_live_state(run: PaperRun, store: JournalStore) -> None:
    half = len(run.records) // 2
    store.append(run.records[:half])
    (taken,) = take_snapshots(store, paper_risk_settings())
    assert taken.seq == store.last_seq()
    store.append(run.records[half:])
    latest = store.latest_snapshot(SNAPSHOT_SERVICE)
    assert latest is not None and latest.seq == taken.seq
    assert_equivalent(run, store)
    # And a snapshot mid-way of a larger journal is consistent with folding everything.
    assert rebuild(store, paper_risk_settings()).risk.snapshot() == rebuild(store, paper_risk_settings(),
                                                                          from_snapshot=False).risk.snapshot()


def test_journal_rebuild_uses_the_snapshot_not_the_prefix(run: PaperRun, store: JournalStore) -> None:
    store.append(run.records)
    folded = rebuild(store, paper_risk_settings(), from_snapshot=False)
    # A snapshot claiming to cover everything: rebuilding from it folds no tail at all.
    store.save_snapshot(Snapshot(service=SNAPSHOT_SERVICE, ts_ns=folded.ts_ns, seq=folded.seq, state=folded.snapshot()))
    again = rebuild(store, paper_risk_settings())
    assert again.folded == 0
    assert again.risk.snapshot() == run.risk.snapshot()


def test_journal_chain_of_a_filled_order_has_every_link(run: PaperRun, store: JournalStore) -> None:
    store.append(run.records)
    filled = next(o for o in run.live_orders().values() if o.status is OrderStatus.FILLED)
    chain = store.chain(str(filled.correlation_id))
    types = [e.record.event_type for e in chain]
    for link in ("BarClosed", "SignalGenerated", "TargetProposed", "OversightReviewed", "SubmitOrder", "OrderSubmitted",
                 "OrderAccepted", "FillReported", "OrderFilled"):
        assert link in types, link
    by_id = {e.record.event_id: e.record for e in chain}
    origin = chain[0].record
    assert origin.event_type == "BarClosed" and origin.causation_id is None
    for record in by_id.values():  # every link's cause is in the chain, back to the bar
        assert record.causation_id is None or record.causation_id in by_id
    submit = next(r for r in by_id.values() if r.event_type == "SubmitOrder" and filled.client_order_id in r.payload)
    assert by_id[submit.causation_id or ""].event_type == "TargetProposed"
