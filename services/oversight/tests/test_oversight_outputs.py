"""The fast audit event equals the validated one: same id, equal model, same fields set, same wire bytes;
and a value validation would refuse raises the same ``ValidationError``."""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from ata.events import Message, OversightReviewed, Verdict
from ata.oversight.core.outputs import reviewed_event
from ata.oversight.testing import T0, target
from ata.runtime.codec import encode

CAUSE = target("AAA", T0, 0.5)
SOURCE = "oversight/replica-1"
FIELDS: dict[str, Any] = {
    "subject_event_id": CAUSE.event_id, "subject_type": "TargetProposed", "symbol": "AAA", "verdict": Verdict.MODIFY,
    "rationale": "capped", "confidence": 0.9, "risk_flags": ("weight_above_cap",), "max_target_weight": 0.25,
    "provider": "rules", "model": "rules-v1", "fallback_used": False, "latency_ms": 0.05, "prompt": "",
    "response": "{}", "mode": "advisory", "prompt_sha256": "", "cache_hit": False, "prompt_tokens": 0,
    "completion_tokens": 0,
}
BEYOND = [
    *[("subject_type", v) for v in ["", "t" * 64, "t" * 65]],
    *[("symbol", v) for v in ["", "s" * 32, "s" * 33]],
    *[("verdict", v) for v in [Verdict.UNREVIEWED, "approve", "nonsense"]],
    *[("rationale", v) for v in ["", "r" * 5000, "r" * 5001]],
    *[("confidence", v) for v in [0.0, 1.0, -0.0, math.nextafter(1.0, 2.0), -1e-300, math.nan, 1, True]],
    *[("risk_flags", v) for v in [(), ["a"], ("a", 1)]],
    *[("max_target_weight", v) for v in [None, 0.0, 10.0, math.nextafter(10.0, 11.0), -0.5, math.inf, 1]],
    *[("provider", v) for v in ["", "p" * 64, "p" * 65]],
    *[("model", v) for v in ["m" * 128, "m" * 129]],
    *[("fallback_used", v) for v in [True, 1]],
    *[("latency_ms", v) for v in [0.0, 1e300, math.inf, math.nan, -1.0, 3]],
    *[("prompt", v) for v in ["p" * 100_000, "p" * 100_001]],
    *[("response", v) for v in ["r" * 100_000, "r" * 100_001]],
    *[("mode", v) for v in ["gating", "m" * 17]],
    *[("prompt_sha256", v) for v in ["h" * 64, "h" * 65]],
    *[("cache_hit", v) for v in [True, 0]],
    *[("prompt_tokens", v) for v in [0, 10**12, -1, 1.0, True]],
    *[("completion_tokens", v) for v in [7, -1]],
    *[("subject_event_id", v) for v in [str(CAUSE.event_id), uuid.UUID(int=0)]],
]


def outcome(build: Any) -> Message | list[dict[str, Any]]:
    try:
        result: Message = build()
    except ValidationError as exc:
        return exc.errors(include_url=False)
    return result


def assert_same(fields: dict[str, Any], *, source: str = SOURCE, ts_init: int | None = T0 + 5) -> None:
    got = outcome(lambda: reviewed_event(CAUSE, source=source, ts_init=ts_init, fields=fields))
    expected = outcome(lambda: OversightReviewed.caused_by(CAUSE, source=source, ts_init=ts_init, **fields))
    assert got == expected
    if isinstance(got, Message):
        assert isinstance(expected, Message)
        assert encode(got) == encode(expected)
        assert list(got.__dict__.items()) == list(expected.__dict__.items())
        assert [type(v) for v in got.__dict__.values()] == [type(v) for v in expected.__dict__.values()]
        assert got.model_fields_set == expected.model_fields_set and hash(got) == hash(expected)


def test_a_valid_review_is_assembled_as_validation_builds_it() -> None:
    assert_same(FIELDS)
    assert_same(FIELDS, ts_init=None)
    assert_same(FIELDS, source="oversight")


@pytest.mark.parametrize(("field", "value"), BEYOND)
def test_a_value_at_or_beyond_a_bound_gives_what_validated_construction_gives(field: str, value: Any) -> None:
    assert_same({**FIELDS, field: value})


@pytest.mark.parametrize(("source", "ts_init"), [("", T0), ("o" * 200, T0), ("o" * 201, T0), (SOURCE, -1),
                                                 (SOURCE, 2**63), (SOURCE, 2**63 - 1)])
def test_envelope_bounds_give_what_validated_construction_gives(source: str, ts_init: int) -> None:
    assert_same(FIELDS, source=source, ts_init=ts_init)


def test_valid_values_are_not_validated_again(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("validated construction used")

    monkeypatch.setattr(OversightReviewed, "caused_by", refuse)
    assert reviewed_event(CAUSE, source=SOURCE, ts_init=None, fields=FIELDS).ts_init == CAUSE.ts_event
