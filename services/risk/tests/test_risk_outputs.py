"""The hot-path output builders equal the generic constructors: same ids, same models, same bytes on the wire."""

from __future__ import annotations

import pickle
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from ata.events import DenialReason, Message, OrderDenied, Side, SubmitOrder
from ata.events import derived_id as reference_derived_id
from ata.events.envelope import MAX_TS_NS
from ata.events.values import SYMBOL_PATTERN
from ata.risk.core.outputs import OrderOutputs, derived_id
from ata.risk.testing import T0, target
from ata.runtime.codec import encode

uuids = st.builds(uuid.UUID, int=st.integers(0, 2**128 - 1))
symbols = st.from_regex(SYMBOL_PATTERN, fullmatch=True)
sources = st.one_of(st.text(min_size=1, max_size=200), st.sampled_from(["risk", "risk/paper", "risk/a/b", "/x"]))
timestamps = st.integers(0, MAX_TS_NS)
quantities = st.floats(min_value=0.0, exclude_min=True, allow_nan=False, allow_infinity=False)
causes = st.builds(lambda sym, ts, w: target(sym, ts, w, 100.0), symbols, st.integers(T0, T0 + 10**15), st.floats(-10, 10))


def same(fast: BaseModel, reference: BaseModel) -> None:
    assert type(fast) is type(reference)
    assert fast == reference
    assert fast.model_fields_set == reference.model_fields_set
    assert list(vars(fast)) == list(vars(reference))
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
    same(OrderOutputs(source).submit_order(cause, index, ts, **fields),
         SubmitOrder.caused_by(cause, index=index, source=source, ts_event=ts, **fields))


@settings(max_examples=300, deadline=None)
@given(envelopes, denials)
def test_risk_order_denied_equals_caused_by(envelope: tuple[Message, str, int, int], fields: dict[str, Any]) -> None:
    cause, source, index, ts = envelope
    same(OrderOutputs(source).order_denied(cause, index, ts, **fields),
         OrderDenied.caused_by(cause, index=index, source=source, ts_event=ts, **fields))


ORDER = {"intent_id": uuid.UUID(int=7), "client_order_id": f"ata-{uuid.UUID(int=7)}", "symbol": "AAA", "side": Side.BUY,
         "quantity": 1.0, "reason": ""}
INVALID: list[tuple[str, str, int, dict[str, Any]]] = [
    ("empty source", "", T0, {}),
    ("long source", "r" * 201, T0, {}),
    ("negative time", "risk", -1, {}),
    ("time beyond int64", "risk", MAX_TS_NS + 1, {}),
    ("zero quantity", "risk", T0, {"quantity": 0.0}),
    ("nan quantity", "risk", T0, {"quantity": float("nan")}),
    ("lower-case symbol", "risk", T0, {"symbol": "aaa"}),
    ("long reason", "risk", T0, {"reason": "x" * 501}),
]


@pytest.mark.parametrize("case", INVALID, ids=[c[0] for c in INVALID])
def test_risk_outputs_refuse_what_caused_by_refuses(case: tuple[str, str, int, dict[str, Any]]) -> None:
    _, source, ts, changes = case
    cause = target("AAA", T0, 0.1, 100.0)
    fields = {**ORDER, **changes}
    with pytest.raises(ValidationError):
        SubmitOrder.caused_by(cause, index=0, source=source, ts_event=ts, **fields)
    with pytest.raises(ValidationError):
        OrderOutputs(source).submit_order(cause, 0, ts, **fields)
