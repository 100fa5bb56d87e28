"""``recover``: orphaned orders found in the journal and reconciled with the (simulated) broker per policy."""

from __future__ import annotations

import pytest

from ata.events import OrderAccepted, OrderReconciled, OrderStatus, OrderSubmitted, ReconcileAction, Side
from ata.execution.brokers.simulated import SimulatedBroker
from ata.execution.core.ports import OrderRequest
from ata.journal.core.recovery import Policy
from ata.journal.recovery import recover
from ata.journal.store import JournalStore
from ata.journal.testing import T0, paper_risk_settings, paper_run, records_of
from ata.runtime.bus import InMemoryBus

S = OrderStatus
A = ReconcileAction


def phantom_events() -> list[OrderSubmitted | OrderAccepted]:
    """An order the journal saw sent and accepted, which the broker does not know."""
    common = {"ts_event": T0, "ts_init": T0, "source": "execution/old", "client_order_id": "ata-phantom", "broker": "sim",
              "symbol": "AAA", "side": Side.BUY, "quantity": 5.0}
    return [OrderSubmitted.origin(natural_key=("phantom", 0), **common),
            OrderAccepted.origin(natural_key=("phantom", 1), **common)]


@pytest.mark.parametrize("policy", list(Policy))
async def test_journal_recover_reconciles_orphans_per_policy(store: JournalStore, policy: Policy) -> None:
    run = await paper_run(seed=11, bars=150)
    store.append(run.records)
    store.append(records_of(phantom_events(), topic="orders.events.v1", first_offset=10_000))
    port = run.execution.routes["sim"].port
    assert isinstance(port, SimulatedBroker)
    exchange = port.exchange
    live_open = sorted(coid for coid, o in run.live_orders().items() if not o.status.terminal)
    assert len(live_open) >= 2
    # Divergences the journal never saw: one order canceled at the broker, one order placed there by hand.
    exchange.cancel(live_open[0], T0)
    exchange.seed_order(OrderRequest("ata-extra", "BBB", Side.SELL, 7.0), T0)
    bus = InMemoryBus()

    folder, report = await recover(store, [port], policy, risk_settings=paper_risk_settings(), publisher=bus,
                                   now_ns=T0 + 10**12)

    book = folder.orders.orders
    actions = {f.client_order_id: f.action for f in report.findings}
    assert set(report.orphans) == {*live_open, "ata-phantom"}
    assert actions[live_open[0]] is A.UPDATED and book[live_open[0]].status is S.CANCELED
    assert actions["ata-phantom"] is A.CLOSED_PHANTOM and book["ata-phantom"].status is S.CANCELED
    still_open = live_open[1:]
    if policy is Policy.RESOLVE:
        assert actions["ata-extra"] is None and "ata-extra" not in book
        assert all(actions[c] is None and not book[c].status.terminal for c in still_open)
        assert all(not exchange.get(c).status.terminal for c in [*still_open, "ata-extra"])  # type: ignore[union-attr]
    elif policy is Policy.CANCEL:
        assert actions["ata-extra"] is A.CANCELED_EXTRA
        assert all(actions[c] is A.UPDATED and book[c].status is S.CANCELED for c in still_open)
        assert all(exchange.get(c).status is S.CANCELED for c in [*still_open, "ata-extra"])  # type: ignore[union-attr]
    else:
        assert actions["ata-extra"] is A.ADOPTED and book["ata-extra"].status is S.ACCEPTED
        assert all(actions[c] is None and not book[c].status.terminal for c in still_open)
    # Every alignment was published, reconciliation notes on the alignment topic, the implied lifecycle on orders.
    notes = [e for e in report.events if isinstance(e, OrderReconciled)]
    assert bus.messages("execution.alignment.v1") == notes
    assert len(notes) == sum(1 for f in report.findings if f.action is not None)
    assert all(m in report.events for m in bus.messages("orders.events.v1"))
    assert len({e.event_id for e in report.events}) == len(report.events)
