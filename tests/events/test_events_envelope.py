"""Envelope rules, deterministic ids, correlation inheritance, value types and numeric policy."""

from __future__ import annotations

import math
import uuid

import pytest
from pydantic import ValidationError

from ata.events import (
    BarClosed,
    HaltTrading,
    QuoteUpdated,
    RegimeLabel,
    RegimeStateUpdated,
    Side,
    SubmitOrder,
    TargetProposed,
    client_order_id_for,
    derived_id,
    origin_id,
    round_price,
    round_quantity,
)
from ata.events.values import CLIENT_ORDER_ID_MAX

TS = 1_700_000_000_000_000_000
BAR = {"symbol": "AAPL", "timeframe": "1m", "ts_open": TS - 60_000_000_000, "open": 100.0, "high": 101.0, "low": 99.0,
       "close": 100.5, "volume": 1_000.0}


def bar(**changes: object) -> BarClosed:
    fields = {**BAR, **changes}
    return BarClosed.origin(natural_key=("test", fields["symbol"], TS), ts_event=TS, ts_init=TS, source="marketdata/1",
                            **fields)


def test_messages_are_frozen() -> None:
    b = bar()
    with pytest.raises(ValidationError):
        b.close = 1.0  # type: ignore[misc]


def test_extra_fields_are_forbidden() -> None:
    with pytest.raises(ValidationError, match="extra"):
        bar(unexpected="x")


def test_event_type_is_filled_and_pinned() -> None:
    b = bar()
    assert b.event_type == "BarClosed"
    data = b.model_dump()
    data["event_type"] = "QuoteUpdated"
    with pytest.raises(ValidationError, match="does not match"):
        BarClosed.model_validate(data)
    assert BarClosed.model_json_schema()["properties"]["event_type"]["const"] == "BarClosed"


def test_origin_ids_are_deterministic_and_self_correlated() -> None:
    first, again, other = bar(), bar(), bar(symbol="MSFT")
    assert first.event_id == again.event_id
    assert first.event_id != other.event_id
    assert first.correlation_id == first.event_id
    assert first.causation_id is None
    assert origin_id("a", 1) == origin_id("a", 1) != origin_id("a", 2)
    # parts are separated, so ("ab", "c") and ("a", "bc") differ
    assert origin_id("ab", "c") != origin_id("a", "bc")


def _state(cause: BarClosed | RegimeStateUpdated, index: int = 0, source: str = "regime/1") -> RegimeStateUpdated:
    return RegimeStateUpdated.caused_by(cause, index=index, source=source, symbol="AAPL", label=RegimeLabel.BULL_QUIET,
                                        confirmed_label=RegimeLabel.BULL_QUIET, probabilities={"bull_quiet": 1.0},
                                        confidence=0.9)


def test_caused_by_ids_are_deterministic_per_cause_index_and_service() -> None:
    cause = bar()
    first = _state(cause)
    assert first.event_id == _state(cause).event_id
    assert first.event_id == _state(cause, source="regime/2").event_id, "instances of one service agree"
    assert first.event_id != _state(cause, index=1).event_id
    assert first.event_id != _state(cause, source="strategy/1").event_id
    assert first.causation_id == cause.event_id
    assert first.ts_event == cause.ts_event
    assert derived_id(cause.event_id, 0) == derived_id(cause.event_id, 0) != derived_id(cause.event_id, 1)


def test_correlation_is_inherited_along_the_chain() -> None:
    origin = bar()
    state = _state(origin)
    target = TargetProposed.caused_by(state, source="strategy/1", symbol="AAPL", target_weight=0.1, reference_price=100.5,
                                      method="ensemble")
    assert target.correlation_id == state.correlation_id == origin.event_id
    assert target.causation_id == state.event_id


def test_commands_follow_the_same_envelope() -> None:
    halt = HaltTrading.origin(natural_key=("operator", 1), ts_event=TS, ts_init=TS, source="gateway/1", reason="drill")
    assert halt.correlation_id == halt.event_id and halt.event_type == "HaltTrading"


def test_client_order_id_is_deterministic_and_fits_the_broker_limit() -> None:
    intent = uuid.uuid4()
    cid = client_order_id_for(intent)
    assert cid == client_order_id_for(intent)
    assert cid != client_order_id_for(uuid.uuid4())
    assert len(cid) <= CLIENT_ORDER_ID_MAX == 128
    order = SubmitOrder.origin(natural_key=(intent,), ts_event=TS, ts_init=TS, source="risk/1", intent_id=intent,
                               client_order_id=cid, symbol="AAPL", side=Side.BUY, quantity=10)
    assert order.client_order_id == cid
    with pytest.raises(ValidationError, match="128"):
        SubmitOrder.origin(natural_key=(intent,), ts_event=TS, ts_init=TS, source="risk/1", intent_id=intent,
                           client_order_id="x" * 129, symbol="AAPL", side=Side.BUY, quantity=10)


def test_order_type_and_prices_must_agree() -> None:
    common = {"natural_key": ("o",), "ts_event": TS, "ts_init": TS, "source": "risk/1", "intent_id": uuid.uuid4(),
              "client_order_id": "ata-x", "symbol": "AAPL", "side": Side.SELL, "quantity": 1.0}
    with pytest.raises(ValidationError, match="limit order needs limit_price"):
        SubmitOrder.origin(order_type="limit", **common)
    with pytest.raises(ValidationError, match="market order takes no"):
        SubmitOrder.origin(limit_price=10.0, **common)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"low": 100.8}, "invalid OHLC"),
        ({"high": 100.2}, "invalid OHLC"),
        ({"ts_open": TS + 1}, "ts_open"),
        ({"close": -1.0}, "greater than 0"),
        ({"volume": math.nan}, "finite"),
        ({"high": math.inf}, "finite"),
        ({"symbol": "aapl"}, "pattern"),
    ],
)
def test_invalid_bars_are_rejected(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        bar(**changes)


def test_crossed_quote_is_rejected() -> None:
    fields = {"natural_key": ("q",), "ts_event": TS, "ts_init": TS, "source": "marketdata/1", "symbol": "AAPL"}
    assert QuoteUpdated.origin(bid=100.0, ask=100.0, **fields).bid == 100.0  # locked is allowed
    with pytest.raises(ValidationError, match="crossed"):
        QuoteUpdated.origin(bid=100.2, ask=100.1, **fields)


@pytest.mark.parametrize(
    ("price", "tick", "expected"),
    [(100.125, 0.01, 100.12), (100.135, 0.01, 100.14), (0.1 + 0.2, 0.1, 0.3), (101.3, 0.25, 101.25), (7.0, 0.5, 7.0)],
)
def test_round_price_half_even_to_tick(price: float, tick: float, expected: float) -> None:
    assert round_price(price, tick) == expected


@pytest.mark.parametrize(
    ("quantity", "lot", "expected"),
    [(10.99, 1.0, 10.0), (-10.99, 1.0, -10.0), (0.3, 0.1, 0.3), (123.0, 100.0, 100.0), (0.05, 0.1, 0.0)],
)
def test_round_quantity_toward_zero(quantity: float, lot: float, expected: float) -> None:
    assert round_quantity(quantity, lot) == expected
    assert abs(round_quantity(quantity, lot)) <= abs(quantity)


def test_rounding_refuses_non_positive_increments() -> None:
    with pytest.raises(ValueError, match="tick"):
        round_price(1.0, 0.0)
    with pytest.raises(ValueError, match="lot"):
        round_quantity(1.0, -1.0)
