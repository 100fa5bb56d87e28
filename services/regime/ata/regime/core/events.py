"""From bars to regime events: the detector behind the event contract of ``regime.states.v1``.

``RegimeStateUpdated`` is built once per key and bar, so it has a fast path: its id is
uuid5 computed with ``hashlib`` directly, and the model is assembled the way pydantic's
``model_construct`` assembles one (this model has no aliases, validators that change
values, private attributes or post-init hook), without re-validating values the
detector produced. The fast path is taken only when every value provably passes the
model's validation (finite floats, probabilities in [0, 1], a symbol and source the
validated path accepted before, a timestamp in range); anything else goes through the
validated constructor, which raises the same ``ValidationError`` as before. The tests
hold both paths to identical events (equality, fields set, JSON bytes).
"""

from __future__ import annotations

import functools
import hashlib
import sys
import uuid

from ata.events import Message
from ata.events.envelope import MAX_TS_NS, MIN_TS_NS
from ata.events.market import BarClosed
from ata.events.regime import RegimeChanged, RegimeLabel, RegimeStateUpdated
from ata.regime.core.detector import RegimeDetector, RegimeState

# What ``UUID(bytes=..., version=5)`` does to the SHA-1 prefix: RFC 4122 variant, version 5.
_UUID_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID_SET = (0x8000 << 48) | (5 << 76)
_setattr = object.__setattr__
_FLOAT_MAX = sys.float_info.max

#: Symbols and sources the validated constructor has accepted (they are checked by pattern/length there).
_accepted_symbols: set[str] = set()
_accepted_sources: set[str] = set()
#: The last transition matrix found valid (tuples are immutable; the reference keeps its identity unique).
_accepted_matrix: list[tuple[tuple[float, ...], ...]] = [()]


def _uuid5(namespace: bytes, name: bytes) -> uuid.UUID:
    """``uuid.uuid5`` for a namespace and name given as bytes.

    The object is made as ``UUID.__init__`` makes it, minus the argument parsing that
    dominates its cost for a one-off id.
    """
    value = (int.from_bytes(hashlib.sha1(namespace + name, usedforsecurity=False).digest()[:16]) & _UUID_CLEAR) | _UUID_SET
    out = object.__new__(uuid.UUID)
    _setattr(out, "int", value)
    _setattr(out, "is_safe", uuid.SafeUUID.unknown)
    return out


@functools.cache
def _id_name(source: str, event_type: str, index: int) -> bytes:
    """The uuid5 name ``Message.caused_by`` derives an output id from (see ``derived_id``)."""
    return f"{source.split('/', maxsplit=1)[0]}:{event_type}\x1f{index}".encode()


def _fast_state_allowed(state: RegimeState, source: str) -> bool:
    """True when ``RegimeStateUpdated`` validation provably accepts ``state``'s values unchanged.

    Numbers must be Python floats (validation would convert anything else); NaN fails
    every comparison, so the range checks reject it too.
    """
    ts = state.ts_event
    if (
        state.key not in _accepted_symbols
        or source not in _accepted_sources
        or type(ts) is not int
        or not MIN_TS_NS <= ts <= MAX_TS_NS
        or type(state.label) is not RegimeLabel
        or type(state.confirmed_label) is not RegimeLabel
        or type(state.confidence) is not float
        or not 0.0 <= state.confidence <= 1.0
    ):
        return False
    for p in state.probabilities.values():
        if type(p) is not float or not 0.0 <= p <= 1.0:
            return False
    for v in state.factors.values():
        if type(v) is not float or not -_FLOAT_MAX <= v <= _FLOAT_MAX:
            return False
    matrix = state.transition_matrix
    if matrix is not _accepted_matrix[0]:
        for row in matrix:
            for p in row:
                if type(p) is not float or not 0.0 <= p <= 1.0:
                    return False
        _accepted_matrix[0] = matrix  # refits replace it; until then every state carries this one
    return True


def _state_event(cause: BarClosed, cause_id: bytes, index: int, state: RegimeState, source: str) -> RegimeStateUpdated:
    probabilities = {label._value_: p for label, p in state.probabilities.items()}
    if not _fast_state_allowed(state, source):
        event = RegimeStateUpdated.caused_by(
            cause,
            index=index,
            source=source,
            ts_event=state.ts_event,
            symbol=state.key,
            label=state.label,
            confirmed_label=state.confirmed_label,
            probabilities=probabilities,
            confidence=state.confidence,
            factors=state.factors,
            transition_matrix=state.transition_matrix,
        )
        _accepted_symbols.add(state.key)
        _accepted_sources.add(source)
        return event
    values = {
        "event_id": _uuid5(cause_id, _id_name(source, "RegimeStateUpdated", index)),
        "event_type": "RegimeStateUpdated",
        "schema_version": RegimeStateUpdated.SCHEMA_VERSION,
        "ts_event": state.ts_event,
        "ts_init": state.ts_event,
        "source": source,
        "correlation_id": cause.correlation_id,
        "causation_id": cause.event_id,
        "symbol": state.key,
        "label": state.label,
        "confirmed_label": state.confirmed_label,
        "probabilities": probabilities,
        "confidence": state.confidence,
        "factors": dict(state.factors),
        "transition_matrix": state.transition_matrix,
    }
    event = RegimeStateUpdated.__new__(RegimeStateUpdated)
    _setattr(event, "__dict__", values)
    _setattr(event, "__pydantic_fields_set__", set(values))
    _setattr(event, "__pydantic_extra__", None)
    _setattr(event, "__pydantic_private__", None)
    return event


def state_events(cause: BarClosed, states: list[RegimeState], source: str) -> list[Message]:
    """``RegimeStateUpdated`` per state, plus ``RegimeChanged`` right after it when the change is confirmed.

    Every output is caused by ``cause`` (output ids derive from its id and the output's
    index); a ``_market`` state keeps the timestamp of the cross-section it describes.
    """
    out: list[Message] = []
    cause_id = cause.event_id.bytes
    for state in states:
        out.append(_state_event(cause, cause_id, len(out), state, source))
        if state.changed:
            out.append(
                RegimeChanged.caused_by(
                    cause,
                    index=len(out),
                    source=source,
                    ts_event=state.ts_event,
                    symbol=state.key,
                    previous=state.previous_label,
                    current=state.confirmed_label,
                    confidence=state.confidence,
                )
            )
    return out


def on_bar(detector: RegimeDetector, bar: BarClosed, source: str) -> list[Message]:
    """Feed one bar to ``detector`` and return the events it produces."""
    states = detector.update(bar.symbol, bar.ts_event, bar.close, bar.volume, bar.timeframe)
    return state_events(bar, states, source) if states else []
