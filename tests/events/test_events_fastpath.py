"""``ata.events.fastpath`` equals the slow path: uuid5 ids, and model instances with every field given."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, PrivateAttr

from ata.events import SignalGenerated, derived_id, origin_id
from ata.events.envelope import ATA_NAMESPACE, origin_ids
from ata.events.fastpath import assemblable, assembled, derived_ids, uuid5_of


@given(st.uuids(), st.text())
def test_uuid5_of_equals_uuid5(namespace: uuid.UUID, name: str) -> None:
    got, expected = uuid5_of(namespace.bytes, name.encode()), uuid.uuid5(namespace, name)
    assert got == expected and type(got) is uuid.UUID and str(got) == str(expected) and hash(got) == hash(expected)
    assert (got.version, got.variant, got.is_safe) == (expected.version, expected.variant, expected.is_safe)


@given(st.uuids(), st.text(), st.integers(-5, 10**6), st.lists(st.text() | st.integers(), max_size=5))
def test_envelope_ids_are_the_uuid5_they_were_defined_as(cause: uuid.UUID, salt: str, index: int, key: list[object]) -> None:
    """Ids in stored journals were minted with ``uuid.uuid5``: the cheaper construction must give the same ids."""
    assert derived_id(cause, index, salt=salt) == uuid.uuid5(cause, f"{salt}\x1f{index}")
    assert origin_id(*key) == uuid.uuid5(ATA_NAMESPACE, "\x1f".join(str(part) for part in key))


@given(st.lists(st.text() | st.integers(), max_size=4), st.text() | st.integers())
def test_origin_ids_equal_origin_id(head: list[object], last: object) -> None:
    assert origin_ids(*head)(last) == origin_id(*head, last)


@given(st.uuids(), st.text(), st.lists(st.integers(-5, 10**6), max_size=8))
def test_derived_ids_equal_derived_id(cause: uuid.UUID, salt: str, indices: list[int]) -> None:
    assert derived_ids(cause, salt, indices) == [derived_id(cause, i, salt=salt) for i in indices]


@given(st.uuids(), st.integers(0, 2**62), st.floats(-1.0, 1.0), st.integers(-1, 1), st.integers(1, 10**6))
def test_assembled_equals_validated_construction(event_id: uuid.UUID, ts: int, strength: float, direction: int,
                                                 horizon: int) -> None:
    values = {
        "event_id": event_id, "event_type": "SignalGenerated", "schema_version": 1, "ts_event": ts, "ts_init": ts,
        "source": "strategy", "correlation_id": event_id, "causation_id": None, "strategy": "s", "symbol": "SPX",
        "direction": direction, "strength": strength, "horizon_bars": horizon,
    }
    expected = SignalGenerated(**values)
    got = assembled(SignalGenerated, dict(values))
    assert got == expected and hash(got) == hash(expected)
    assert got.model_dump_json() == expected.model_dump_json()
    assert got.model_fields_set == expected.model_fields_set
    assert list(got.__dict__) == list(expected.__dict__)
    assert got.model_copy(update={"strength": 0.0}) == expected.model_copy(update={"strength": 0.0})


def test_assemblable_refuses_models_it_cannot_reproduce() -> None:
    class Loose(BaseModel):
        x: int

    class WithPrivate(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")
        x: int
        _cache: int = PrivateAttr(0)

    class Plain(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")
        x: int
        y: str

    assert assemblable(Plain, ("x", "y"))
    assert not assemblable(Plain, ("y", "x"))  # order matters: __dict__ follows it
    assert not assemblable(Plain, ("x",))
    assert not assemblable(Loose, ("x",))
    assert not assemblable(WithPrivate, ("x",))
