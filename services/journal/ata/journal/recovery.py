"""The I/O side of ``ata journal recover``: rebuild from the journal, ask the brokers, publish the alignment.

The decisions are made by :mod:`ata.journal.core.recovery`; this module only talks to the
store (in a worker thread), to the broker ports (execution's adapters) and to the bus. It is
also what execution can call at start-up, before accepting orders, with its own ports.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from ata.execution.core.ports import BrokerOrder, BrokerPort
from ata.journal.core.fold import StateFolder
from ata.journal.core.recovery import Finding, Policy, RecoveryReport, orphans, reconcile, should_cancel
from ata.journal.snapshots import rebuild
from ata.journal.store import JournalStore
from ata.risk.config import RiskSettings
from ata.runtime.bus import Publisher


async def recover(store: JournalStore, ports: Sequence[BrokerPort], policy: Policy, *,
                  risk_settings: RiskSettings | None = None, publisher: Publisher | None = None,
                  source: str = "journal", now_ns: int | None = None) -> tuple[StateFolder, RecoveryReport]:
    """Rebuild portfolio and orders (latest snapshot + tail), reconcile every orphan with its broker per
    ``policy``, publish the alignment events through ``publisher`` (when given); return state and report."""
    folder = await asyncio.to_thread(rebuild, store, risk_settings)
    book = folder.orders
    now = time.time_ns() if now_ns is None else now_ns
    pending = orphans(book)
    report = RecoveryReport()
    by_name = {port.name: port for port in ports}
    for order in pending:
        if order.broker not in by_name:
            report.orphans.append(order.client_order_id)
            report.findings.append(Finding(order.client_order_id, order.broker, order.status, None, None,
                                           "no port for this broker; left open"))
    for name, port in by_name.items():
        open_at_broker = {o.client_order_id: o for o in await port.open_orders()}
        views: dict[str, BrokerOrder | None] = {}
        for order in (o for o in pending if o.broker == name):
            view = open_at_broker.pop(order.client_order_id, None) or await port.get_order(order.client_order_id)
            if should_cancel(policy, view):
                view = await port.cancel(order.client_order_id) or view
            views[order.client_order_id] = view
        extras = [o for coid, o in open_at_broker.items() if coid not in book.orders]
        if policy is Policy.CANCEL:
            extras = [await port.cancel(o.client_order_id) or o for o in extras]
        report.extend(reconcile(book, name, views, extras, policy, now_ns=now, source=source))
    if publisher is not None and report.events:
        await publisher.publish(report.events)
    return folder, report
