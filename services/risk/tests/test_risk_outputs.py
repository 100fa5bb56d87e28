"""The hot-path output builders equal the generic constructors: same ids, same models, same bytes on the wire,
and the same ``ValidationError`` for an invalid value (assembled and validated paths alike)."""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from ata.events import (
    DenialReason,
    Message,
    OrderDenied,
    OrderType,
    PortfolioSnapshotTaken,
    PositionView,
    Side,
    SubmitOrder,
    TimeInForce,
    TradingState,
)
from ata.events import derived_id as reference_derived_id
from ata.events.envelope import MAX_TS_NS
from ata.events.values import SYMBOL_PATTERN
from ata.risk.core import outputs
from ata.risk.core.outputs import OrderOutputs, PositionRow, derived_id
from ata.risk.testing import T0, target
from ata.runtime.codec import encode

uuids = st.builds(uuid.UUID, int=st.integers(0, 2**128 - 1))
symbols = st.from_regex(SYMBOL_PATTERN, fullmatch=True)
sources = st.one_of(st.text(min_size=1, max_size=200), st.sampled_from(["risk", "risk/paper", "risk/a/b", "/x"]))
timestamps = st.integers(0, MAX_TS_NS)
quantities = st.floats(min_value=0.0, exclude_min=True, allow_nan=False, allow_infinity=False)
causes = st.builds(lambda sym, ts, w: target(sym, ts, w, 100.0), symbols, st.integers(T0, T0 + 10**15), st.floats(-10, 10))


#: What risk's market orders state explicitly (so both build paths set every field).
MARKET_ORDER = {"order_type": OrderType.MARKET, "limit_price": None, "stop_price": None, "time_in_force": TimeInForce.DAY}


def same(fast: BaseModel, reference: BaseModel) -> None:
    assert type(fast) is type(reference)
    assert fast == reference
    assert fast.model_fields_set == reference.model_fields_set
    assert list(vars(fast)) == list(vars(reference))
    assert [type(v) for v in vars(fast).values()] == [type(v) for v in vars(reference).values()]
    assert hash(fast) == hash(reference)
    assert fast.model_dump_json() == reference.model_dump_json()
    assert isinstance(fast, Message) and isinstance(reference, Message)
    assert encode(fast) == encode(reference)


@settings(max_examples=500, deadline=None)
@given(uuids, st.integers(0, 2**63), st.text())
def test_risk_derived_id_equals_uuid5(cause: uuid.UUID, index: int, salt: str) -> None:
    fast, reference = derived_id(cause, index, salt), reference_derived_id(cause, index, salt)
    assert fast == reference and fast.int == reference.int and str(fast) == str(reference) and hash(fast) == hash(reference)
    assert fast.version == reference.version == 5 and fast.variant == reference.variant and fast.is_safe is reference.is_safe
    assert pickle.loads(pickle.dumps(fast)) == reference


envelopes = st.tuples(causes, sources, st.integers(0, 1000), timestamps)
orders = st.builds(lambda intent, **f: {"intent_id": intent, "client_order_id": f"ata-{intent}", **f}, uuids, symbol=symbols,
                   side=st.sampled_from(Side), quantity=quantities, reason=st.text(max_size=500))
denials = st.fixed_dictionaries({"intent_id": uuids, "symbol": symbols, "reason": st.sampled_from(DenialReason),
                                 "detail": st.text(max_size=1000)})


@settings(max_examples=300, deadline=None)
@given(envelopes, orders)
def test_risk_submit_order_equals_caused_by(envelope: tuple[Message, str, int, int], fields: dict[str, Any]) -> None:
    cause, source, index, ts = envelope
    fast = OrderOutputs(source).submit_order(cause, index, ts, **fields)
    same(fast, SubmitOrder.caused_by(cause, index=index, source=source, ts_event=ts, **fields, **MARKET_ORDER))
    # The wire bytes are those of the order built with the defaults left implicit.
    assert encode(fast) == encode(SubmitOrder.caused_by(cause, index=index, source=source, ts_event=ts, **fields))


@settings(max_examples=300, deadline=None)
@given(envelopes, denials)
def test_risk_order_denied_equals_caused_by(envelope: tuple[Message, str, int, int], fields: dict[str, Any]) -> None:
    cause, source, index, ts = envelope
    same(OrderOutputs(source).order_denied(cause, index, ts, **fields),
         OrderDenied.caused_by(cause, index=index, source=source, ts_event=ts, **fields))


ORDER = {"intent_id": uuid.UUID(int=7), "client_order_id": f"ata-{uuid.UUID(int=7)}", "symbol": "AAA", "side": Side.BUY,
         "quantity": 1.0, "reason": ""}
DENIAL = {"intent_id": uuid.UUID(int=7), "symbol": "AAA", "reason": DenialReason.PRICE_COLLAR, "detail": ""}


def built(kind: str, source: str, ts: int, changes: dict[str, Any]) -> tuple[Callable[[], BaseModel], Callable[[], BaseModel]]:
    """(fast builder, validated reference) of a ``kind`` output caused by one target, with ``changes`` to its fields."""
    cause = target("AAA", T0, 0.1, 100.0)
    if kind == "order":
        order = {**ORDER, **changes}
        return (lambda: OrderOutputs(source).submit_order(cause, 0, ts, **order),
                lambda: SubmitOrder.caused_by(cause, index=0, source=source, ts_event=ts, **order, **MARKET_ORDER))
    denial = {**DENIAL, **changes}
    return (lambda: OrderOutputs(source).order_denied(cause, 0, ts, **denial),
            lambda: OrderDenied.caused_by(cause, index=0, source=source, ts_event=ts, **denial))


# kind, case, source, ts, field changes
INVALID: list[tuple[str, str, str, int, dict[str, Any]]] = [
    ("order", "empty source", "", T0, {}),
    ("order", "long source", "r" * 201, T0, {}),
    ("order", "negative time", "risk", -1, {}),
    ("order", "time beyond int64", "risk", MAX_TS_NS + 1, {}),
    ("order", "zero quantity", "risk", T0, {"quantity": 0.0}),
    ("order", "nan quantity", "risk", T0, {"quantity": float("nan")}),
    ("order", "infinite quantity", "risk", T0, {"quantity": float("inf")}),
    ("order", "lower-case symbol", "risk", T0, {"symbol": "aaa"}),
    ("order", "symbol with newline", "risk", T0, {"symbol": "AAA\n"}),
    ("order", "long reason", "risk", T0, {"reason": "x" * 501}),
    ("order", "long client order id", "risk", T0, {"client_order_id": "c" * 129}),
    ("order", "client order id with space", "risk", T0, {"client_order_id": "ata 1"}),
    ("denial", "empty source", "", T0, {}),
    ("denial", "negative time", "risk", -1, {}),
    ("denial", "lower-case symbol", "risk", T0, {"symbol": "aaa"}),
    ("denial", "unknown reason", "risk", T0, {"reason": "NO_SUCH_REASON"}),
    ("denial", "long detail", "risk", T0, {"detail": "x" * 1001}),
]


@pytest.mark.parametrize("case", INVALID, ids=[f"{c[0]}: {c[1]}" for c in INVALID])
def test_risk_outputs_refuse_what_caused_by_refuses(case: tuple[str, str, str, int, dict[str, Any]]) -> None:
    kind, _, source, ts, changes = case
    fast, reference = built(kind, source, ts, changes)
    with pytest.raises(ValidationError):
        reference()
    with pytest.raises(ValidationError):
        fast()


# Values at the bounds validation accepts, and values it accepts only after converting them (an int
# quantity, text for an enum or a UUID): the fast builders return exactly what the validated
# constructor returns, converted the same way.
ACCEPTED: list[tuple[str, str, str, int, dict[str, Any]]] = [
    ("order", "longest source", "r" * 200, T0, {}),
    ("order", "time zero", "risk", 0, {}),
    ("order", "time at int64 max", "risk", MAX_TS_NS, {}),
    ("order", "smallest quantity", "risk", T0, {"quantity": 5e-324}),
    ("order", "largest quantity", "risk", T0, {"quantity": 1.7976931348623157e308}),
    ("order", "int quantity", "risk", T0, {"quantity": 3}),
    ("order", "side as text", "risk", T0, {"side": "sell"}),
    ("order", "intent as text", "risk", T0, {"intent_id": str(uuid.UUID(int=9))}),
    ("order", "longest reason", "risk", T0, {"reason": "x" * 500}),
    ("order", "longest symbol", "risk", T0, {"symbol": "A" * 32}),
    ("order", "market key", "risk", T0, {"symbol": "_market"}),
    ("order", "longest client order id", "risk", T0, {"client_order_id": "c" * 128}),
    ("denial", "reason as text", "risk", T0, {"reason": "PRICE_COLLAR"}),
    ("denial", "longest detail", "risk", T0, {"detail": "x" * 1000}),
    ("denial", "symbol with a dot", "risk", T0, {"symbol": "BRK.B"}),
    ("denial", "intent as text", "risk", T0, {"intent_id": str(uuid.UUID(int=9))}),
]


@pytest.mark.parametrize("case", ACCEPTED, ids=[f"{c[0]}: {c[1]}" for c in ACCEPTED])
def test_risk_outputs_at_bounds_equal_caused_by(case: tuple[str, str, str, int, dict[str, Any]]) -> None:
    kind, _, source, ts, changes = case
    fast, reference = built(kind, source, ts, changes)
    same(fast(), reference())


finite = st.floats(allow_nan=False, allow_infinity=False)
non_negative = st.floats(min_value=0.0, allow_nan=False, allow_infinity=False)
position_rows = st.tuples(symbols, finite, non_negative, st.none() | st.floats(min_value=0.0, exclude_min=True,
                                                                                allow_nan=False, allow_infinity=False),
                          finite, finite)
snapshot_fields = st.fixed_dictionaries({
    "positions": st.lists(position_rows, max_size=4), "cash": finite, "equity": finite, "realized_pnl": finite,
    "unrealized_pnl": finite, "fees": non_negative, "gross_exposure": non_negative, "net_exposure": finite,
    "drawdown": st.floats(0.0, 1.0), "trading_state": st.sampled_from(TradingState)})


def reference_snapshot(cause: Message, index: int, source: str, fields: dict[str, Any]) -> PortfolioSnapshotTaken:
    views = tuple(PositionView(symbol=s, quantity=q, avg_price=a, mark_price=m, realized_pnl=r, unrealized_pnl=u)
                  for s, q, a, m, r, u in fields["positions"])
    return PortfolioSnapshotTaken.caused_by(cause, index=index, source=source, **{**fields, "positions": views})


@settings(max_examples=300, deadline=None)
@given(causes, sources, st.integers(0, 1000), snapshot_fields)
def test_risk_portfolio_snapshot_equals_caused_by(cause: Message, source: str, index: int, fields: dict[str, Any]) -> None:
    fast = OrderOutputs(source).portfolio_snapshot(cause, index, **fields)
    reference = reference_snapshot(cause, index, source, fields)
    same(fast, reference)
    for fast_view, view in zip(fast.positions, reference.positions, strict=True):
        assert fast_view.model_fields_set == view.model_fields_set and list(vars(fast_view)) == list(vars(view))


SNAPSHOT: dict[str, Any] = {"positions": [("AAA", 10.0, 100.0, 101.0, 0.0, 10.0)], "cash": 0.0, "equity": 1010.0,
                            "realized_pnl": 0.0, "unrealized_pnl": 10.0, "fees": 0.0, "gross_exposure": 1010.0,
                            "net_exposure": 1010.0, "drawdown": 0.0, "trading_state": TradingState.ACTIVE}
ROW: PositionRow = SNAPSHOT["positions"][0]
# case, field changes: values validation refuses, then values it accepts only after converting them
SNAPSHOT_INVALID: list[tuple[str, dict[str, Any]]] = [
    ("nan cash", {"cash": float("nan")}), ("infinite equity", {"equity": float("inf")}), ("negative fees", {"fees": -1.0}),
    ("negative gross", {"gross_exposure": -1.0}), ("drawdown above one", {"drawdown": 1.5}),
    ("negative drawdown", {"drawdown": -0.1}), ("unknown state", {"trading_state": "PAUSED"}),
    ("lower-case symbol", {"positions": [("aaa", *ROW[1:])]}), ("zero mark", {"positions": [(*ROW[:3], 0.0, *ROW[4:])]}),
    ("negative average price", {"positions": [(*ROW[:2], -1.0, *ROW[3:])]}),
    ("nan quantity", {"positions": [(ROW[0], float("nan"), *ROW[2:])]}),
]
SNAPSHOT_CONVERTED: list[tuple[str, dict[str, Any]]] = [
    ("int cash", {"cash": 5}), ("state as text", {"trading_state": "HALTED"}),
    ("int quantity", {"positions": [(ROW[0], 3, *ROW[2:])]}),
    ("no mark", {"positions": [(*ROW[:3], None, *ROW[4:])]}), ("no positions", {"positions": []}),
]


@pytest.mark.parametrize("case", SNAPSHOT_INVALID, ids=[c[0] for c in SNAPSHOT_INVALID])
def test_risk_portfolio_snapshot_refuses_what_caused_by_refuses(case: tuple[str, dict[str, Any]]) -> None:
    cause, fields = target("AAA", T0, 0.1, 100.0), {**SNAPSHOT, **case[1]}
    with pytest.raises(ValidationError):
        reference_snapshot(cause, 0, "risk", fields)
    with pytest.raises(ValidationError):
        OrderOutputs("risk").portfolio_snapshot(cause, 0, **fields)


@pytest.mark.parametrize("case", SNAPSHOT_CONVERTED, ids=[c[0] for c in SNAPSHOT_CONVERTED])
def test_risk_portfolio_snapshot_converts_as_caused_by(case: tuple[str, dict[str, Any]]) -> None:
    cause, fields = target("AAA", T0, 0.1, 100.0), {**SNAPSHOT, **case[1]}
    same(OrderOutputs("risk").portfolio_snapshot(cause, 0, **fields), reference_snapshot(cause, 0, "risk", fields))


def test_risk_output_models_still_assemblable() -> None:
    """The fast path is in use: the models still have exactly the fields the builders fill and no hook."""
    assert outputs._FAST
