"""The Alpaca adapter against a fake Alpaca server on 127.0.0.1, alone and under the execution engine.

The engine is driven as the service drives it: commands through ``handle_submit`` and the
adapter's update stream through ``on_broker_update``; every published event is collected.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from alpaca.trading.models import Order, TradeUpdate

from ata.events import (
    FillReported,
    Message,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderPartiallyFilled,
    OrderStatus,
    Side,
    SubmitOrder,
    client_order_id_for,
)
from ata.execution.brokers.alpaca import AlpacaBroker, AlpacaCredentialsError, order_from_trade_update, parse_ts
from ata.execution.core.engine import BrokerRoute, EngineConfig, ExecutionEngine, MemoryOrderStore
from ata.execution.core.ports import (
    AmbiguousOutcomeError,
    BrokerUnavailableError,
    DuplicateClientOrderIdError,
    OrderRejectedError,
    OrderRequest,
)
from ata.execution.testing import until
from ata.execution.testing.fake_alpaca import FakeAlpaca
from ata.runtime.resilience import Backoff

WAIT_S = 20.0
S = OrderStatus


@pytest.fixture
async def fake() -> AsyncIterator[FakeAlpaca]:
    async with FakeAlpaca() as server:
        yield server


def make_broker(fake: FakeAlpaca, *, secret: str | None = None, timeout_s: float = 2.0,
                silence_timeout_s: float = 5.0) -> AlpacaBroker:
    return AlpacaBroker(api_key=fake.key, secret_key=secret or fake.secret, base_url=fake.url, timeout_s=timeout_s,
                        silence_timeout_s=silence_timeout_s, backoff=Backoff(initial_s=0.05, cap_s=0.5, max_attempts=None))


def command(symbol: str = "AAPL", quantity: float = 10.0) -> SubmitOrder:
    intent = uuid.uuid4()
    return SubmitOrder.origin(natural_key=(str(intent),), ts_event=time.time_ns(), ts_init=time.time_ns(), source="risk/test",
                              intent_id=intent, client_order_id=client_order_id_for(intent), symbol=symbol, side=Side.BUY,
                              quantity=quantity)


@dataclass
class Harness:
    """An engine on one Alpaca port, following its update stream like the service does."""

    broker: AlpacaBroker
    engine: ExecutionEngine
    published: list[Message] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    async def follow(self) -> None:
        async for update in self.broker.updates():
            self.published += await self.engine.on_broker_update(self.broker.name, update)

    def of(self, kind: type[Message], coid: str) -> list[Message]:
        return [e for e in self.published if isinstance(e, kind) and getattr(e, "client_order_id", None) == coid]

    def fills(self, coid: str) -> list[FillReported]:
        return [e for e in self.published if isinstance(e, FillReported) and e.client_order_id == coid]


#: The harness client's HTTP timeout: far above an ordinary answer's time on a loaded machine, far below a stall's.
HARNESS_TIMEOUT_S = 2.0


@pytest.fixture
async def harness(fake: FakeAlpaca, request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    silence_s = getattr(request, "param", 5.0)
    broker = make_broker(fake, timeout_s=HARNESS_TIMEOUT_S, silence_timeout_s=silence_s)
    engine = ExecutionEngine([BrokerRoute(broker)], MemoryOrderStore(), time.time_ns,
                             EngineConfig(source="execution/test", lookup_delay_s=0.01))
    h = Harness(broker, engine)
    h.published += await engine.start()
    h.task = asyncio.create_task(h.follow())
    await until(lambda: broker.connects >= 1, "the trade-update stream connected")
    try:
        yield h
    finally:
        await broker.close()
        async with asyncio.timeout(WAIT_S):
            await h.task


def assert_no_duplicate_fills(h: Harness, coid: str, quantity: float) -> None:
    fills = h.fills(coid)
    assert len({f.event_id for f in fills}) == len(fills), "a fill event was published twice"
    assert len({f.fill_id for f in fills}) == len(fills), "one execution was reported as two fills"
    assert sum(f.quantity for f in fills) == pytest.approx(quantity)


# -- JSON shapes ---------------------------------------------------------------------------------
async def test_fake_alpaca_answers_in_alpaca_py_model_shapes(fake: FakeAlpaca) -> None:
    fake.seed("ata-shape", "AAPL", "buy", 10)
    await fake.fill("ata-shape", 4, 100.25)
    raw = fake.order("ata-shape")
    model = Order(**raw)  # alpaca-py's own model accepts what the fake serves
    assert model.client_order_id == "ata-shape" and float(model.filled_qty or 0) == 4.0
    update = {"event": "partial_fill", "execution_id": str(uuid.uuid4()), "order": raw, "timestamp": raw["updated_at"],
              "price": "100.25", "qty": "4", "position_qty": "4"}
    assert TradeUpdate(**update).qty == 4.0
    view = order_from_trade_update(update)
    assert (view.status, view.cum_filled_qty, view.last_fill_qty, view.last_fill_price) == (S.PARTIALLY_FILLED, 4.0, 4.0, 100.25)
    assert view.fill_id == update["execution_id"]
    assert parse_ts("2024-01-02T15:04:05.123456789Z") == 1_704_207_845_123_456_789
    assert parse_ts("2024-01-02T10:04:05-05:00") == 1_704_207_845_000_000_000


# -- the lifecycle through the stream ----------------------------------------------------------------
async def test_alpaca_submit_accepted_partial_then_filled_via_stream(fake: FakeAlpaca, harness: Harness) -> None:
    cmd = command(quantity=10)
    coid = cmd.client_order_id
    harness.published += await harness.engine.handle_submit(cmd)
    assert harness.of(OrderAccepted, coid), "the submission's answer is an acceptance"
    assert fake.submissions == [coid] and fake.order(coid)["client_order_id"] == coid  # our id is the broker's client id

    await fake.fill(coid, 4, 100.0)
    await until(lambda: bool(harness.of(OrderPartiallyFilled, coid)), "the partial fill arrived")
    await fake.fill(coid, 6, 101.0)
    await until(lambda: bool(harness.of(OrderFilled, coid)), "the fill arrived")

    fills = harness.fills(coid)
    assert [(f.quantity, f.price) for f in fills] == [(4.0, 100.0), (6.0, 101.0)]  # cumulative -> incremental
    assert {f.fill_id for f in fills} == {a["id"].split("::")[1] for a in fake.activities}  # Alpaca's execution ids
    assert harness.engine.orders[coid].status is S.FILLED
    assert harness.engine.orders[coid].avg_fill_price == pytest.approx(100.6)
    assert fake.posts == 1
    page = await harness.broker.fills_since(None)
    assert [(f.client_order_id, f.quantity) for f in page.fills] == [(coid, 4.0), (coid, 6.0)]
    assert (await harness.broker.fills_since(page.cursor)).fills == ()
    assert [(p.symbol, p.quantity) for p in await harness.broker.positions()] == [("AAPL", 10.0)]


async def test_alpaca_cancel_by_client_order_id(fake: FakeAlpaca, harness: Harness) -> None:
    cmd = command(quantity=5)
    harness.published += await harness.engine.handle_submit(cmd)
    canceled = await harness.broker.cancel(cmd.client_order_id)
    assert canceled is not None and canceled.status is S.CANCELED
    assert fake.order(cmd.client_order_id)["status"] == "canceled"
    assert await harness.broker.cancel("ata-unknown") is None
    await until(lambda: bool(harness.of(OrderCanceled, cmd.client_order_id)), "the cancel reached the engine")


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("answer", [(401, 40110000, "request is not authorized"), (403, None, "forbidden.")])
async def test_alpaca_bad_credentials_raise_a_clear_error(fake: FakeAlpaca, answer: tuple[int, int | None, str]) -> None:
    fake.auth_failure = answer
    broker = make_broker(fake, secret="wrong")
    try:
        with pytest.raises(AlpacaCredentialsError) as raised:
            await broker.check_credentials()
        message = str(raised.value)
        assert str(answer[0]) in message and "ATA_EXECUTION_ALPACA_API_KEY" in message and "wrong" not in message
        with pytest.raises(AlpacaCredentialsError):
            await broker.submit(OrderRequest("ata-denied", "AAPL", Side.BUY, 1))
        # Refused credentials mean nothing was applied: the engine may route elsewhere.
        assert issubclass(AlpacaCredentialsError, BrokerUnavailableError)
        assert fake.submissions == []
    finally:
        await broker.close()


async def test_alpaca_order_refusal_is_a_rejection_not_a_credentials_error(fake: FakeAlpaca) -> None:
    fake.refuse_orders_message = "insufficient buying power"
    broker = make_broker(fake)
    try:
        with pytest.raises(OrderRejectedError, match="insufficient buying power"):
            await broker.submit(OrderRequest("ata-poor", "AAPL", Side.BUY, 1_000_000))
    finally:
        await broker.close()


async def test_alpaca_unreachable_is_unavailable() -> None:
    async with FakeAlpaca() as gone:
        url = gone.url
    broker = AlpacaBroker(api_key="PK", secret_key="sk", base_url=url, timeout_s=2.0)
    try:
        with pytest.raises(BrokerUnavailableError):
            await broker.submit(OrderRequest("ata-nowhere", "AAPL", Side.BUY, 1))
    finally:
        await broker.close()


async def test_alpaca_http_timeout_is_ambiguous_and_the_lookup_finds_the_order(fake: FakeAlpaca, harness: Harness) -> None:
    fake.submit_delay_s = 4 * HARNESS_TIMEOUT_S  # the order is created, the answer comes well after the client's timeout
    with pytest.raises(AmbiguousOutcomeError):
        await harness.broker.submit(OrderRequest("ata-slow", "AAPL", Side.BUY, 1))
    assert fake.submissions == ["ata-slow"]

    cmd = command(quantity=3)
    harness.published += await harness.engine.handle_submit(cmd)
    order = harness.engine.orders[cmd.client_order_id]
    assert order.status is S.ACCEPTED, "resolved by looking the order up"
    assert order.broker_order_id == fake.order(cmd.client_order_id)["id"]
    assert fake.submissions == ["ata-slow", cmd.client_order_id]  # no second order
    assert fake.posts == 2  # and no resubmission of the engine's order


async def test_alpaca_duplicate_client_order_id_means_the_order_exists(fake: FakeAlpaca, harness: Harness) -> None:
    cmd = command(quantity=2)
    existing = fake.seed(cmd.client_order_id, "AAPL", "buy", 2)  # e.g. sent before a crash
    with pytest.raises(DuplicateClientOrderIdError):
        await harness.broker.submit(OrderRequest(cmd.client_order_id, "AAPL", Side.BUY, 2))

    harness.published += await harness.engine.handle_submit(cmd)
    order = harness.engine.orders[cmd.client_order_id]
    assert order.status is S.ACCEPTED and order.broker_order_id == existing["id"]
    assert fake.submissions == [cmd.client_order_id]
    assert harness.of(OrderAccepted, cmd.client_order_id)


# -- the stream watchdog ---------------------------------------------------------------------------
@pytest.mark.parametrize("harness", [1.0], indirect=True)
async def test_alpaca_silent_stream_is_restarted_and_missed_updates_are_polled(fake: FakeAlpaca, harness: Harness) -> None:
    filled, canceled = command(quantity=10), command(quantity=4)
    for cmd in (filled, canceled):
        harness.published += await harness.engine.handle_submit(cmd)
    await fake.fill(filled.client_order_id, 4, 50.0)
    await until(lambda: bool(harness.fills(filled.client_order_id)), "the first fill arrived")

    fake.silence_streams()  # connected, but no messages and no pongs any more
    await fake.fill(filled.client_order_id, 6, 51.0)
    await fake.close_order(canceled.client_order_id)  # canceled at the broker, not by us
    assert not harness.of(OrderFilled, filled.client_order_id)

    await until(lambda: bool(harness.of(OrderFilled, filled.client_order_id)), "the missed fill was recovered")
    await until(lambda: bool(harness.of(OrderCanceled, canceled.client_order_id)), "the missed cancel was recovered")
    assert harness.broker.silences >= 1 and harness.broker.restarts >= 1
    assert fake.stream_connections >= 2
    assert_no_duplicate_fills(harness, filled.client_order_id, 10.0)
    assert fake.posts == 2


async def test_alpaca_dropped_stream_reconnects_without_duplicate_fills(fake: FakeAlpaca, harness: Harness) -> None:
    cmd = command(quantity=8)
    harness.published += await harness.engine.handle_submit(cmd)
    coid = cmd.client_order_id
    await fake.fill(coid, 3, 20.0)
    await until(lambda: len(harness.fills(coid)) == 1, "the first fill arrived")

    fake.replay_last_on_connect = True  # the new connection also delivers the last update again
    connects = harness.broker.connects
    await fake.drop_streams()
    await fake.fill(coid, 5, 21.0)  # while no stream is connected
    await until(lambda: harness.broker.connects > connects, "the stream reconnected")
    await until(lambda: bool(harness.of(OrderFilled, coid)), "the fill made during the gap arrived")

    assert_no_duplicate_fills(harness, coid, 8.0)
    counts = Counter(type(e).__name__ for e in harness.published if getattr(e, "client_order_id", None) == coid)
    assert counts["OrderFilled"] == 1 and counts["FillReported"] == 2
    # The replayed or polled repeat is dropped; it may arrive after the fill it repeats was applied.
    await until(lambda: harness.broker.repeats_dropped >= 1, "the repeated update was dropped")
    assert_no_duplicate_fills(harness, coid, 8.0)
    assert fake.stream_connections >= 2
