"""Journal recovery at execution start: an orphaned order in a SQLite journal, its fill held by the
broker; execution stays not ready while the journal is missing (required), then recovers before it
accepts orders and publishes the alignment events — each fact once — on the real broker."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

from ata.events import (
    FillReported,
    Message,
    OrderFilled,
    OrderReconciled,
    OrderStatus,
    PositionMismatchDetected,
    ReconcileAction,
    Side,
    SubmitOrder,
    client_order_id_for,
)
from ata.execution.brokers.simulated import SimulatedBroker
from ata.execution.config import ExecutionSettings
from ata.execution.core.ports import OrderRequest
from ata.execution.core.state_machine import BrokerReport, OrderStateMachine, TrackedOrder
from ata.execution.service import ExecutionService, namespaced, namespaced_registry
from ata.execution.testing import read_topic, until
from ata.journal.store import make_store
from ata.journal.testing import records_of
from ata.runtime.config import RuntimeSettings
from ata.runtime.kafka import provision_topics

T0 = 1_700_000_000_000_000_000


def journaled_orphan(run: str) -> tuple[SubmitOrder, list[Message]]:
    """A command and what execution published for it before it died: submitted and accepted, no fill."""
    intent = uuid.uuid5(uuid.NAMESPACE_URL, run)
    cmd = SubmitOrder.origin(natural_key=(run,), ts_event=T0, ts_init=T0, source="risk/test", intent_id=intent,
                             client_order_id=client_order_id_for(intent), symbol="AAPL", side=Side.BUY, quantity=10.0)
    order = TrackedOrder(client_order_id=cmd.client_order_id, symbol="AAPL", side=Side.BUY, quantity=10.0,
                         command_id=cmd.event_id, correlation_id=cmd.correlation_id, created_ts=T0, intent_id=str(intent))
    sm = OrderStateMachine("execution/old", lambda: T0)
    accepted = BrokerReport(cmd.client_order_id, "sim", OrderStatus.ACCEPTED, T0)
    lifecycle = sm.submitted(order, "sim", T0) + sm.apply(order, accepted)
    return cmd, lifecycle


def write_journal(path: Path, messages: list[tuple[str, list[Message]]]) -> None:
    """Build the journal aside and move it into place at once, so a reader never sees it half-written."""
    aside = path.with_suffix(".building")
    store = make_store(f"sqlite:///{aside}")
    store.open()
    try:
        offset = 0
        for topic, batch in messages:
            store.append(records_of(batch, topic=topic, first_offset=offset))
            offset += len(batch)
    finally:
        store.close()
    os.replace(aside, path)


async def test_execution_becomes_ready_only_after_journal_recovery(kafka_bootstrap: str, redis_url: str,
                                                                   tmp_path: Path) -> None:
    namespace = f"r{uuid.uuid4().hex[:10]}"
    registry = namespaced_registry(namespace)
    await asyncio.to_thread(provision_topics, kafka_bootstrap, registry)
    journal = tmp_path / "journal.db"
    runtime = RuntimeSettings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, http_port=0, state_dir=tmp_path,
                              journal_url=f"sqlite:///{journal}", instance_id="exec-recovery")
    settings = ExecutionSettings(brokers="sim", topic_namespace=namespace, redis_prefix=f"test:{namespace}",
                                 journal_recovery="resolve", journal_recovery_required=True)
    service = ExecutionService(runtime, settings)
    cmd, lifecycle = journaled_orphan(namespace)
    coid = cmd.client_order_id
    port = service.engine.routes["sim"].port
    assert isinstance(port, SimulatedBroker)
    # The broker filled the order after execution died: the journal never saw the fill.
    port.exchange.seed_order(OrderRequest(coid, "AAPL", Side.BUY, 10.0), T0, cum_qty=10.0, price=101.0)
    assert service.recovery is not None

    starting = asyncio.create_task(service.start())
    try:
        await until(lambda: service.recovery is not None and service.recovery.attempts >= 2,
                    "recovery was attempted against the missing journal", 30.0)
        assert not starting.done() and not service.ready, "ready without journal recovery (fail closed)"
        assert coid not in service.engine.orders

        await asyncio.to_thread(write_journal, journal, [("orders.commands.v1", [cmd]), ("orders.events.v1", lifecycle)])
        async with asyncio.timeout(60):
            await starting
        assert service.ready
        assert service.engine.orders[coid].status is OrderStatus.FILLED  # the engine starts from the journal's view

        alignment = await read_topic(kafka_bootstrap, namespaced("execution.alignment.v1", namespace),
                                     lambda ms: any(isinstance(m, OrderReconciled) for m in ms))
        fills = await read_topic(kafka_bootstrap, namespaced("orders.fills.v1", namespace),
                                 lambda ms: any(isinstance(m, FillReported) for m in ms))
        events = await read_topic(kafka_bootstrap, namespaced("orders.events.v1", namespace),
                                  lambda ms: any(isinstance(m, OrderFilled) for m in ms))
    finally:
        if not starting.done():
            starting.cancel()
        await service.stop()
    notes = [m for m in alignment if isinstance(m, OrderReconciled)]
    assert [(n.client_order_id, n.action, n.local_status, n.broker_status) for n in notes] == [
        (coid, ReconcileAction.UPDATED, OrderStatus.ACCEPTED, OrderStatus.FILLED)]
    assert not [m for m in alignment if isinstance(m, PositionMismatchDetected)], "the recovered fill moved the position"
    assert [(f.client_order_id, f.quantity, f.price) for f in fills if isinstance(f, FillReported)] == [(coid, 10.0, 101.0)]
    assert [e.client_order_id for e in events if isinstance(e, OrderFilled)] == [coid]
    assert port.exchange.submissions == 1  # recovery never resubmits


async def test_optional_journal_recovery_is_skipped_when_there_is_no_journal(kafka_bootstrap: str, redis_url: str,
                                                                            tmp_path: Path) -> None:
    namespace = f"r{uuid.uuid4().hex[:10]}"
    await asyncio.to_thread(provision_topics, kafka_bootstrap, namespaced_registry(namespace))
    runtime = RuntimeSettings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, http_port=0, state_dir=tmp_path,
                              instance_id="exec-recovery-optional")
    settings = ExecutionSettings(brokers="sim", topic_namespace=namespace, redis_prefix=f"test:{namespace}")
    service = ExecutionService(runtime, settings)
    try:
        async with asyncio.timeout(60):
            await service.start()
        assert service.ready and service.recovery is not None and service.recovery.attempts == 1
    finally:
        await service.stop()
