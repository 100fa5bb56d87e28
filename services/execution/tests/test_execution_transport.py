"""The batching underneath the per-order contracts, on real Redis and a real simulated broker server:
group-committed store writes, pipelined submissions, and the pushed execution-report stream."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from ata.events import OrderStatus, QuoteUpdated, Side
from ata.execution.brokers.sim_client import SimulatedHttpBroker
from ata.execution.brokers.sim_server import SimBrokerServer
from ata.execution.brokers.simulated import FaultKind, SimulatedExchange
from ata.execution.core.engine import BrokerRoute, EngineConfig, ExecutionEngine, MemoryOrderStore
from ata.execution.core.ports import AmbiguousOutcomeError, BrokerOrder, DuplicateClientOrderIdError, OrderRequest
from ata.execution.core.state_machine import TrackedOrder
from ata.execution.store import RedisOrderStore
from ata.execution.testing import until

T0 = 1_700_000_000_000_000_000


def order(index: int, status: OrderStatus = OrderStatus.NEW) -> TrackedOrder:
    command = uuid.uuid5(uuid.NAMESPACE_URL, f"transport/{index}")
    return TrackedOrder(client_order_id=f"ata-{index}", symbol="AAPL", side=Side.BUY, quantity=1.0, command_id=command,
                        correlation_id=command, created_ts=T0, status=status)


def request(coid: str) -> OrderRequest:
    return OrderRequest(client_order_id=coid, symbol="AAPL", side=Side.BUY, quantity=1.0)


# -- store -------------------------------------------------------------------------------------------
async def test_concurrent_saves_share_writes_and_the_record_holds_the_latest_state(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}"
    store = RedisOrderStore.from_url(redis_url, prefix)
    try:
        orders = [order(i) for i in range(200)]
        await asyncio.gather(*(store.save(o) for o in orders))
        assert store.writes < 10, "saves made together must travel together"
        orders[7].status = OrderStatus.ACCEPTED
        orders[7].extra["reason"] = "later"
        await asyncio.gather(store.save(orders[7]), store.save(orders[7]), store.save_positions("sim", {"AAPL": 3.0}))
        fresh = RedisOrderStore.from_url(redis_url, prefix)
        try:
            loaded = {o.client_order_id: o for o in map(TrackedOrder.restore, await fresh.load())}
            assert loaded.keys() == {o.client_order_id for o in orders}
            assert loaded["ata-7"] == orders[7] and loaded["ata-8"] == orders[8]
            assert await fresh.load_positions() == {"sim": {"AAPL": 3.0}}
        finally:
            await fresh.close()
    finally:
        await store.close()


async def test_a_failed_write_fails_every_save_it_carried() -> None:
    store = RedisOrderStore(aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5), "test:down")
    try:
        results = await asyncio.gather(store.save(order(1)), store.save(order(2)), return_exceptions=True)
        assert all(isinstance(r, Exception) for r in results), results
    finally:
        await store.close()


# -- simulated broker over HTTP ------------------------------------------------------------------------
@pytest.fixture
async def server() -> AsyncIterator[SimBrokerServer]:
    # A stalled answer comes after 5 s: well past the impatient client's 2 s timeout, however loaded the machine.
    sim = SimBrokerServer(SimulatedExchange(), timeout_delay_s=5.0)
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def client(server: SimBrokerServer) -> AsyncIterator[SimulatedHttpBroker]:
    """A client with a timeout no ordinary answer reaches, even on a loaded machine."""
    broker = SimulatedHttpBroker("sim", f"http://127.0.0.1:{server.port}", timeout_s=30.0)
    yield broker
    await broker.close()


@pytest.fixture
async def impatient(server: SimBrokerServer) -> AsyncIterator[SimulatedHttpBroker]:
    """A client that gives up on the server's stalled answers (2 s against their 5 s)."""
    broker = SimulatedHttpBroker("sim", f"http://127.0.0.1:{server.port}", timeout_s=2.0)
    yield broker
    await broker.close()


async def test_concurrent_submissions_are_pipelined_and_each_gets_its_own_answer(
        server: SimBrokerServer, client: SimulatedHttpBroker) -> None:
    server.exchange.submit(request("ata-dup"), T0)
    coids = [f"ata-{i}" for i in range(300)] + ["ata-dup"]
    results = await asyncio.gather(*(client.submit(request(c)) for c in coids), return_exceptions=True)
    assert client.submit_requests < 10
    placed = [r for r in results if isinstance(r, BrokerOrder)]
    assert [r.client_order_id for r in placed] == coids[:-1]
    assert isinstance(results[-1], DuplicateClientOrderIdError)
    assert server.exchange.submissions == 301  # the duplicate was refused, nothing else placed twice


async def test_a_stalled_answer_is_ambiguous_for_every_order_it_carried_and_the_lookup_finds_them(
        server: SimBrokerServer, client: SimulatedHttpBroker, impatient: SimulatedHttpBroker) -> None:
    server.exchange.inject(FaultKind.TIMEOUT)
    results = await asyncio.gather(*(impatient.submit(request(f"ata-t{i}")) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, AmbiguousOutcomeError) for r in results), results
    found = [await client.get_order(f"ata-t{i}") for i in range(3)]
    assert all(f is not None and f.status is OrderStatus.ACCEPTED for f in found)
    engine = ExecutionEngine([BrokerRoute(impatient)], MemoryOrderStore(), lambda: T0, EngineConfig(lookup_delay_s=0.01))
    server.exchange.inject(FaultKind.TIMEOUT)
    tracked = order(99)
    engine.orders[tracked.client_order_id] = tracked
    events = await engine._route_and_submit(tracked)
    assert tracked.status is OrderStatus.ACCEPTED and [e.event_type for e in events] == ["OrderSubmitted", "OrderAccepted"]
    assert server.exchange.submissions == 4  # never sent twice


async def test_execution_reports_are_pushed_and_resume_after_a_dropped_stream(
        server: SimBrokerServer, client: SimulatedHttpBroker) -> None:
    seen: list[BrokerOrder] = []

    async def follow() -> None:
        async for update in client.updates():
            seen.append(update)

    task = asyncio.create_task(follow())
    try:
        await until(lambda: server.open_streams == 1, "the update stream is open")  # it reports from now on
        await client.submit(request("ata-s1"))
        await until(lambda: any(u.client_order_id == "ata-s1" for u in seen), "the acceptance was pushed")
        await server.stop()  # drops the stream; the broker keeps its orders
        server.exchange.submit(request("ata-s2"), time.time_ns())
        now = time.time_ns() + 1_000_000_000  # after both orders were placed
        quote = QuoteUpdated.origin(natural_key=("q",), ts_event=now, ts_init=now, source="md/test", symbol="AAPL",
                                    bid=99.0, ask=101.0, bid_size=1000.0, ask_size=1000.0)
        server.exchange.on_quote(quote)
        restarted = SimBrokerServer(server.exchange, port=server.port)
        await restarted.start()
        try:
            await until(lambda: {u.client_order_id for u in seen if u.status is OrderStatus.FILLED} == {"ata-s1", "ata-s2"},
                        "what happened while the stream was down was delivered after it came back", timeout_s=15)
        finally:
            await restarted.stop()
    finally:
        await client.close()
        await task
