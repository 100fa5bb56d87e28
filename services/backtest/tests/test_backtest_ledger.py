"""OrderLedger: a clean run has no problems; each kind of broken ledger is named."""

from __future__ import annotations

import uuid

import pytest

from ata.backtest.ledger import OrderLedger
from ata.events import FillReported, Message, OrderAccepted, OrderSubmitted, Side, SubmitOrder, client_order_id_for

T0 = 1_700_000_000_000_000_000


def command(intent: uuid.UUID, coid: str | None = None, n: int = 0) -> SubmitOrder:
    return SubmitOrder.origin(natural_key=(intent, n), ts_event=T0, ts_init=T0, source="risk", intent_id=intent,
                              client_order_id=coid or client_order_id_for(intent), symbol="AAPL", side=Side.BUY, quantity=10)


def submitted(order: SubmitOrder, broker_order_id: str = "b-1", n: int = 0) -> OrderSubmitted:
    return OrderSubmitted.caused_by(order, index=n, source="execution", client_order_id=order.client_order_id, broker="sim",
                                    broker_order_id=broker_order_id, symbol="AAPL", side=Side.BUY, quantity=10)


def accepted(order: SubmitOrder) -> OrderAccepted:
    return OrderAccepted.caused_by(order, index=9, source="execution", client_order_id=order.client_order_id, broker="sim",
                                   broker_order_id="b-1", symbol="AAPL", side=Side.BUY, quantity=10)


def fill(order: SubmitOrder, fill_id: str = "f-1", quantity: float = 10, n: int = 20, coid: str | None = None) -> FillReported:
    return FillReported.caused_by(order, index=n, source="execution", fill_id=fill_id,
                                  client_order_id=coid or order.client_order_id, broker="sim", symbol="AAPL", side=Side.BUY,
                                  quantity=quantity, price=100.0)


INTENT = uuid.uuid4()
ORDER = command(INTENT)
CLEAN: list[Message] = [ORDER, submitted(ORDER), accepted(ORDER), fill(ORDER, "f-1", 4), fill(ORDER, "f-2", 6, n=21)]


def test_a_clean_ledger_even_with_redelivered_messages_has_no_problems() -> None:
    ledger = OrderLedger.of(CLEAN + CLEAN)  # redelivery repeats event ids
    assert ledger.problems() == []
    assert ledger.order_rows() == [(ORDER.client_order_id, "AAPL", "buy", 10.0, T0)]
    assert [row[0] for row in ledger.fill_rows()] == ["f-1", "f-2"]


def test_a_fill_is_its_order_and_fill_id_together() -> None:
    other = command(uuid.uuid4())
    ledger = OrderLedger.of([*CLEAN, other, submitted(other), fill(other, "f-1", 10)])  # fill ids restart per order
    assert ledger.problems() == []
    assert len(ledger.fills) == 3


@pytest.mark.parametrize(("extra", "problem"), [
    ([command(INTENT, n=1)], "commanded 2 times"),
    ([command(INTENT, coid="ata-other")], "2 client order ids"),
    ([submitted(ORDER, n=1)], "submitted to a broker 2 times"),
    ([accepted(ORDER).model_copy(update={"broker_order_id": "b-2"})], "2 broker orders"),
    ([fill(ORDER, "f-1", 4, n=30)], "/f-1 was reported 2 times"),
    ([fill(ORDER, "f-3", 1, n=31, coid="ata-unknown")], "belongs to no known order"),
    ([fill(ORDER, "f-3", 1, n=32)], "filled 11.0 > ordered 10.0"),
])
def test_each_broken_ledger_is_named(extra: list[Message], problem: str) -> None:
    found = OrderLedger.of(CLEAN + extra).problems()
    assert found and problem in found[0], found  # the first problem found is the one added


def test_an_unanswered_command_is_lost_and_the_check_can_be_limited_to_known_orders() -> None:
    late = command(uuid.uuid4())
    ledger = OrderLedger.of([*CLEAN, late])
    assert ledger.problems() == [f"order {late.client_order_id} was never answered (lost)"]
    assert ledger.problems([ORDER.client_order_id]) == []
    assert ledger.problems(["ata-missing"]) == ["order ata-missing has no SubmitOrder"]
