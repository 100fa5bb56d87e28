"""The audit event of a review, built without validating again what the engine already holds valid.

:func:`reviewed_event` equals ``OversightReviewed.caused_by(cause, source=source, ts_init=ts_init,
**fields)`` for ``fields`` naming every field of the model in declaration order: the same id, equal
models, the same ``model_fields_set`` and the same wire bytes. When every value passes the checks
here (plain Python: exact types, bounds, finiteness, lengths) the model is assembled with
:mod:`ata.events.fastpath`; any other value goes through ``caused_by``, which raises the usual
``ValidationError``. A rule-based review costs microseconds, its event's validation about as much
again; the tests hold both paths equal at every bound.
"""

from __future__ import annotations

import math
import uuid
from typing import Any, Final

from ata.events import Message, OversightReviewed, Verdict
from ata.events.envelope import MAX_TS_NS, MIN_TS_NS
from ata.events.fastpath import assemblable, assembled, derived_ids

__all__ = ["REVIEW_FIELDS", "reviewed_event"]

_ENVELOPE: Final = ("event_id", "event_type", "schema_version", "ts_event", "ts_init", "source", "correlation_id",
                    "causation_id")
#: The fields a caller gives, in the model's order.
REVIEW_FIELDS: Final = ("subject_event_id", "subject_type", "symbol", "verdict", "rationale", "confidence", "risk_flags",
                        "max_target_weight", "provider", "model", "fallback_used", "latency_ms", "prompt", "response",
                        "mode", "prompt_sha256", "cache_hit", "prompt_tokens", "completion_tokens")
_FAST: Final = assemblable(OversightReviewed, (*_ENVELOPE, *REVIEW_FIELDS))
#: Longest accepted string per field (and shortest, where the model requires one).
_TEXT: Final = {"subject_type": (1, 64), "symbol": (0, 32), "rationale": (0, 5000), "provider": (1, 64),
                "model": (0, 128), "prompt": (0, 100_000), "response": (0, 100_000), "mode": (0, 16),
                "prompt_sha256": (0, 64)}


def reviewed_event(cause: Message, *, source: str, ts_init: int | None, fields: dict[str, Any]) -> OversightReviewed:
    """``OversightReviewed.caused_by(cause, source=source, ts_init=ts_init, **fields)`` (see the module contract)."""
    ts_event = cause.ts_event
    ts = ts_event if ts_init is None else ts_init
    if (_FAST and type(source) is str and 1 <= len(source) <= 200 and type(ts) is int and MIN_TS_NS <= ts <= MAX_TS_NS
            and type(cause.event_id) is uuid.UUID and type(cause.correlation_id) is uuid.UUID and _valid(fields)):
        salt = f"{source.partition('/')[0]}:{OversightReviewed.__name__}"
        (event_id,) = derived_ids(cause.event_id, salt, (0,))
        return assembled(OversightReviewed, {
            "event_id": event_id, "event_type": OversightReviewed.__name__,
            "schema_version": OversightReviewed.SCHEMA_VERSION, "ts_event": ts_event, "ts_init": ts, "source": source,
            "correlation_id": cause.correlation_id, "causation_id": cause.event_id, **fields})
    return OversightReviewed.caused_by(cause, source=source, ts_init=ts_init, **fields)


def _valid(fields: dict[str, Any]) -> bool:
    """Whether validation would accept every value of ``fields`` unchanged."""
    if tuple(fields) != REVIEW_FIELDS:
        return False
    for name, (shortest, longest) in _TEXT.items():
        text = fields[name]
        if type(text) is not str or not shortest <= len(text) <= longest:
            return False
    confidence, cap, latency = fields["confidence"], fields["max_target_weight"], fields["latency_ms"]
    flags = fields["risk_flags"]
    return (type(fields["subject_event_id"]) is uuid.UUID and type(fields["verdict"]) is Verdict
            and type(confidence) is float and 0.0 <= confidence <= 1.0
            and type(flags) is tuple and all(type(flag) is str for flag in flags)
            and (cap is None or (type(cap) is float and 0.0 <= cap <= 10.0))
            and type(latency) is float and latency >= 0.0 and math.isfinite(latency)
            and type(fields["fallback_used"]) is bool and type(fields["cache_hit"]) is bool
            and _count(fields["prompt_tokens"]) and _count(fields["completion_tokens"]))


def _count(value: object) -> bool:
    return type(value) is int and value >= 0
