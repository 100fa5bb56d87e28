"""Lifecycle events built on the fast path equal validated construction: same model, same fields
set, same wire bytes, and the same ValidationError for a value validation refuses or would change."""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ata.events import OrderAccepted, OrderFilled, OrderRejected, Side, derived_id
from ata.execution.core import lifecycle
from ata.execution.core.lifecycle import EXTRA_FIELD, ORDER_FIELDS, event_id, lifecycle_event
from ata.runtime.codec import encode

TS = 1_700_000_000_000_000_000

quantities = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5), st.just(1.0))
texts = st.one_of(st.text(max_size=3), st.text(min_size=60, max_size=70), st.just("x" * 501), st.just(""))


@st.composite
def lifecycle_values(draw: st.DrawFn) -> tuple[type[Any], dict[str, Any]]:
    cls = draw(st.sampled_from(sorted(EXTRA_FIELD, key=lambda c: c.__name__)))
    command = uuid.uuid4()
    values: dict[str, Any] = {
        "event_id": event_id(command, "execution:test"), "event_type": draw(st.sampled_from([cls.__name__, "Other"])),
        "schema_version": draw(st.sampled_from([1, 0, 2])), "ts_event": draw(st.one_of(st.just(TS), st.integers(-1, 2**64))),
        "ts_init": TS, "source": draw(st.sampled_from(["execution/a", "", "s" * 201])), "correlation_id": command,
        "causation_id": command, "client_order_id": draw(st.sampled_from(["ata-abc.0", "bad id", "", "c" * 129])),
        "broker": draw(st.sampled_from(["sim", "", "b" * 65])),
        "broker_order_id": draw(st.sampled_from(["", "sim-1", "o" * 129])),
        "symbol": draw(st.sampled_from(["AAPL", "BRK.B", "aapl", ""])),
        "side": draw(st.sampled_from([Side.BUY, Side.SELL, "buy"])),
        "quantity": draw(quantities), "cum_filled_qty": draw(quantities),
    }
    extra = EXTRA_FIELD[cls]
    if extra == "avg_fill_price":
        values[extra] = draw(quantities)
    elif extra == "reason":
        values[extra] = draw(texts)
    return cls, values


def _comparable(exc: ValidationError) -> list[dict[str, Any]]:
    """The errors, with the exception objects a validator raised (equal only to themselves) as text."""
    return [{**error, "ctx": {k: str(v) for k, v in error.get("ctx", {}).items()}} for error in exc.errors()]


@settings(max_examples=200, deadline=None)
@given(lifecycle_values())
def test_fast_path_equals_validated_construction(drawn: tuple[type[Any], dict[str, Any]]) -> None:
    cls, values = drawn
    try:
        expected = cls(**values)
    except ValidationError as exc:
        with pytest.raises(ValidationError) as info:
            lifecycle_event(cls, values)
        assert _comparable(info.value) == _comparable(exc)
        return
    built = lifecycle_event(cls, dict(values))
    assert type(built) is cls
    assert built == expected
    assert built.model_fields_set == expected.model_fields_set
    assert encode(built) == encode(expected)


def test_valid_values_are_assembled_not_validated() -> None:
    """The fast path is taken for what the state machine builds (else it would be only the slow path under test)."""
    command = uuid.uuid4()
    values = {"event_id": event_id(command, "s"), "event_type": "OrderFilled", "schema_version": 1, "ts_event": TS,
              "ts_init": TS, "source": "execution/x", "correlation_id": command, "causation_id": command,
              "client_order_id": "ata-1", "broker": "sim", "broker_order_id": "sim-1", "symbol": "AAPL", "side": Side.BUY,
              "quantity": 2.0, "cum_filled_qty": 2.0, "avg_fill_price": 10.5}
    assert lifecycle._unchanged_by_validation(OrderFilled, values)
    assert lifecycle_event(OrderFilled, values) == OrderFilled(**values)
    assert not lifecycle._unchanged_by_validation(OrderFilled, {**values, "quantity": 2})  # an int is converted
    assert not lifecycle._unchanged_by_validation(OrderFilled, {**values, "avg_fill_price": math.inf})


def test_every_lifecycle_model_is_still_assemblable() -> None:
    assert frozenset(EXTRA_FIELD) == lifecycle._ASSEMBLABLE
    assert tuple(OrderAccepted.model_fields) == ORDER_FIELDS
    assert tuple(OrderRejected.model_fields) == (*ORDER_FIELDS, "reason")


def test_event_id_is_derived_id() -> None:
    command = uuid.uuid4()
    salt = "execution:OrderAccepted:ata-1:0.0:"
    assert event_id(command, salt) == derived_id(command, 0, salt=salt)
