"""Wire codec: JSON round trip through event_type dispatch; each kind of bad input has its own error."""

from __future__ import annotations

import re
import uuid

import orjson
import pytest

from ata.events import HaltTrading
from ata.runtime.codec import (
    DecodeError,
    HeaderView,
    MessageValidationError,
    decode,
    encode,
    event_id_of,
    from_kafka_headers,
    parse,
    to_kafka_headers,
    validate,
)

T0 = 1_700_000_000_000_000_000


def halt(reason: str = "maintenance") -> HaltTrading:
    return HaltTrading.origin(natural_key=("halt", reason), ts_event=T0, ts_init=T0 + 5, source="gateway/1", reason=reason)


def test_round_trip_is_typed_and_lossless() -> None:
    message = halt()
    raw = encode(message)
    as_json = orjson.loads(raw)
    assert as_json["event_type"] == "HaltTrading"
    assert as_json["event_id"] == str(message.event_id), "UUIDs travel as strings, readable by any language"
    assert as_json["ts_event"] == T0, "timestamps stay int nanoseconds"
    decoded = decode(raw)
    assert type(decoded) is HaltTrading
    assert decoded == message


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x00\xff", "not UTF-8 JSON"),
        (b"{", "not UTF-8 JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b'{"reason": "x"}', "no string event_type"),
        (b'{"event_type": 5}', "no string event_type"),
        (b'{"event_type": "MarketExploded"}', "unknown event_type 'MarketExploded'"),
    ],
)
def test_undecodable_bytes_raise_decode_error(raw: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(raw)
    assert reason in caught.value.reason
    assert caught.value.stage == "decode"
    with pytest.raises(DecodeError, match=re.escape(reason)):
        parse(raw)


def test_parse_then_validate_is_decode() -> None:
    message = halt()
    cls, data = parse(encode(message))
    assert cls is HaltTrading
    assert data["reason"] == "maintenance", "parse yields the plain JSON object"
    assert validate(cls, data) == message == decode(encode(message))

    data["reason"] = ""
    with pytest.raises(MessageValidationError, match="reason: String should have at least 1 character") as caught:
        validate(cls, data)
    assert caught.value.stage == "validate"


def test_event_id_is_read_before_validation() -> None:
    message = halt()
    _, data = parse(encode(message))
    assert event_id_of(data) == message.event_id
    assert event_id_of({**data, "event_id": str(message.event_id).upper()}) == message.event_id
    for bad in ("not-a-uuid", 5, None):
        assert event_id_of({**data, "event_id": bad}) is None, bad
    assert event_id_of({"event_type": "HaltTrading"}) is None


def test_model_violations_raise_validation_error_naming_the_field() -> None:
    data = orjson.loads(encode(halt()))
    data["reason"] = ""
    with pytest.raises(MessageValidationError) as caught:
        decode(orjson.dumps(data))
    assert caught.value.stage == "validate"
    assert caught.value.reason.startswith("HaltTrading: reason: String should have at least 1 character")

    data = orjson.loads(encode(halt()))
    data["surprise"] = 1
    with pytest.raises(MessageValidationError, match="surprise: Extra inputs are not permitted"):
        decode(orjson.dumps(data))

    del data["surprise"], data["event_id"]
    with pytest.raises(MessageValidationError, match="event_id: Field required"):
        decode(orjson.dumps(data))


def test_nested_model_errors_carry_the_path() -> None:
    data = {"event_type": "SetRiskLimits", "event_id": str(uuid.uuid4()), "ts_event": T0, "ts_init": T0,
            "source": "gateway/1", "correlation_id": str(uuid.uuid4()), "limits": {"no_such_limit": 1}, "reason": "tighten"}
    with pytest.raises(MessageValidationError, match=r"limits\.no_such_limit"):
        decode(orjson.dumps(data))


def test_headers_convert_both_ways() -> None:
    assert to_kafka_headers(None) is None and to_kafka_headers({}) is None
    kafka = to_kafka_headers({"traceparent": "00-abc-def-01", "x": "é"})
    assert kafka == [("traceparent", b"00-abc-def-01"), ("x", "é".encode())]
    assert from_kafka_headers(kafka) == {"traceparent": "00-abc-def-01", "x": "é"}
    assert from_kafka_headers([("bin", b"\xff"), ("none", None)]) == {"bin": "\ufffd", "none": ""}
    assert from_kafka_headers(None) == {}


def test_header_view_is_the_decoded_headers_on_demand() -> None:
    raw = [("traceparent", b"00-abc-def-01"), ("bin", b"\xff"), ("none", None), ("traceparent", b"00-last-01")]
    view = HeaderView(raw)
    assert view == from_kafka_headers(raw) == {"traceparent": "00-last-01", "bin": "\ufffd", "none": ""}
    assert len(view) == 3 and sorted(view) == ["bin", "none", "traceparent"]
    assert view.get("missing") is None and "bin" in view and "missing" not in view
    assert sorted(view.items()) == [("bin", "\ufffd"), ("none", ""), ("traceparent", "00-last-01")]
    assert dict(view) == from_kafka_headers(raw)
    with pytest.raises(KeyError):
        view["missing"]
    assert HeaderView(None) == {}
