"""From bars to regime events: the detector behind the event contract of ``regime.states.v1``.

``RegimeStateUpdated`` is built once per key and bar (and ``RegimeChanged`` beside it on a
confirmed change), so both are built with :mod:`ata.events.fastpath`: ids are uuid5 via
``hashlib``, and the models are assembled without re-validating values the detector
produced. That path is taken only when every value provably passes the model's
validation unchanged (Python floats, finite, probabilities in [0, 1], a symbol and source
the validated path accepted before, a timestamp in range); anything else goes through
the validated constructor, which raises the same ``ValidationError`` as before. The
tests hold both paths to identical events (equality, fields set, JSON bytes).
"""

from __future__ import annotations

import functools
import sys
from typing import Any
from uuid import UUID

from ata.events import Message
from ata.events.envelope import MAX_TS_NS, MIN_TS_NS
from ata.events.fastpath import assemblable, assembled, uuid5_of
from ata.events.market import BarClosed
from ata.events.regime import RegimeChanged, RegimeLabel, RegimeStateUpdated
from ata.regime.core.detector import RegimeDetector, RegimeState

_FLOAT_MAX = sys.float_info.max
#: The fields ``_assembled_state_event`` fills, in declaration order.
_FIELDS = (
    "event_id",
    "event_type",
    "schema_version",
    "ts_event",
    "ts_init",
    "source",
    "correlation_id",
    "causation_id",
    "symbol",
    "label",
    "confirmed_label",
    "probabilities",
    "confidence",
    "factors",
    "transition_matrix",
)
#: The fields ``_assembled_change_event`` fills, in declaration order.
_CHANGE_FIELDS = (*_FIELDS[:9], "previous", "current", "confidence")
#: False if a model gained a hook or field this module does not fill: then its events are validated.
_ASSEMBLABLE = assemblable(RegimeStateUpdated, _FIELDS)
_CHANGE_ASSEMBLABLE = assemblable(RegimeChanged, _CHANGE_FIELDS)

#: Symbols and sources the validated constructor has accepted (they are checked by pattern/length there).
_accepted_symbols: set[str] = set()
_accepted_sources: set[str] = set()
#: The last transition matrix found valid (tuples are immutable; the reference keeps its identity unique).
_accepted_matrix: list[tuple[tuple[float, ...], ...]] = [()]


#: Output indices whose id names are precomputed (later ones take the validated path): a bar
#: yields at most three states (its symbol's, ``_market``'s for the cross-section it proved
#: complete and for the one it completed), each possibly followed by a ``RegimeChanged``.
_MAX_INDICES = 6


@functools.cache
def _id_names(source: str, event_type: str) -> tuple[bytes, ...]:
    """The uuid5 names ``Message.caused_by`` derives output ids from (see ``derived_id``), by output index."""
    prefix = f"{source.split('/', maxsplit=1)[0]}:{event_type}\x1f"
    return tuple(f"{prefix}{index}".encode() for index in range(_MAX_INDICES))


def _fast_state_allowed(state: RegimeState, source: str, floats: bool = False) -> bool:
    """True when ``RegimeStateUpdated`` validation provably accepts ``state``'s values unchanged.

    Numbers must be Python floats (validation would convert anything else); NaN fails
    every comparison, so the range checks reject it too. ``floats=True`` is the caller's
    word that every number in ``state`` is a Python float, as in the states of
    :meth:`RegimeDetector.update` (it computes in floats from inputs it converts to float);
    then only ranges are checked, the factors' through their sum: it is finite exactly
    when every factor is finite and the sum does not overflow (an overflow only sends the
    state down the validated path).
    """
    ts = state.ts_event
    if (
        not _ASSEMBLABLE
        or state.key not in _accepted_symbols
        or source not in _accepted_sources
        or type(ts) is not int
        or not MIN_TS_NS <= ts <= MAX_TS_NS
        or type(state.label) is not RegimeLabel
        or type(state.confirmed_label) is not RegimeLabel
        or type(state.confidence) is not float
        or not 0.0 <= state.confidence <= 1.0
    ):
        return False
    if floats:
        for p in state.probabilities.values():
            if not 0.0 <= p <= 1.0:
                return False
        total = sum(state.factors.values())
        if total - total != 0.0:  # NaN for an infinite or NaN sum
            return False
    else:
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


def _validated_state_event(cause: BarClosed, index: int, state: RegimeState, source: str) -> RegimeStateUpdated:
    event = RegimeStateUpdated.caused_by(
        cause,
        index=index,
        source=source,
        ts_event=state.ts_event,
        symbol=state.key,
        label=state.label,
        confirmed_label=state.confirmed_label,
        probabilities={label._value_: p for label, p in state.probabilities.items()},
        confidence=state.confidence,
        factors=state.factors,
        transition_matrix=state.transition_matrix,
    )
    _accepted_symbols.add(state.key)
    _accepted_sources.add(source)
    return event


def _envelope(cls: type[Message], cause: BarClosed, event_id: UUID, state: RegimeState, source: str) -> dict[str, Any]:
    """The envelope and symbol of an assembled ``cls``, as ``caused_by`` fills them (fields in declaration order)."""
    ts = state.ts_event
    return {
        "event_id": event_id,
        "event_type": cls.__name__,
        "schema_version": cls.SCHEMA_VERSION,
        "ts_event": ts,
        "ts_init": ts,
        "source": source,
        "correlation_id": cause.correlation_id,
        "causation_id": cause.event_id,
        "symbol": state.key,
    }


def _assembled_state_event(cause: BarClosed, event_id: UUID, state: RegimeState, source: str) -> RegimeStateUpdated:
    """The event :func:`_validated_state_event` makes, for a state :func:`_fast_state_allowed` accepted."""
    values = _envelope(RegimeStateUpdated, cause, event_id, state, source)
    values["label"] = state.label
    values["confirmed_label"] = state.confirmed_label
    values["probabilities"] = {label._value_: p for label, p in state.probabilities.items()}
    values["confidence"] = state.confidence
    values["factors"] = dict(state.factors)
    values["transition_matrix"] = state.transition_matrix
    return assembled(RegimeStateUpdated, values)


def _assembled_change_event(cause: BarClosed, event_id: UUID, state: RegimeState, source: str) -> RegimeChanged:
    """The ``RegimeChanged`` of a state whose ``RegimeStateUpdated`` was assembled (so its symbol, source,
    timestamp, confirmed label and confidence passed the checks) and whose previous label is a label or None."""
    values = _envelope(RegimeChanged, cause, event_id, state, source)
    values["previous"] = state.previous_label
    values["current"] = state.confirmed_label
    values["confidence"] = state.confidence
    return assembled(RegimeChanged, values)


def state_events(cause: BarClosed, states: list[RegimeState], source: str, *, floats: bool = False) -> list[Message]:
    """``RegimeStateUpdated`` per state, plus ``RegimeChanged`` right after it when the change is confirmed.

    Every output is caused by ``cause`` (output ids derive from its id and the output's
    index); a ``_market`` state keeps the timestamp of the cross-section it describes.
    ``floats=True`` only for states whose numbers are all Python floats (the detector's).
    """
    out: list[Message] = []
    cause_id = cause.event_id.bytes
    names = _id_names(source, "RegimeStateUpdated")
    change_names = _id_names(source, "RegimeChanged")
    for state in states:
        index = len(out)
        fast = index + 1 < _MAX_INDICES and _fast_state_allowed(state, source, floats)
        if fast:
            out.append(_assembled_state_event(cause, uuid5_of(cause_id, names[index]), state, source))
        else:
            out.append(_validated_state_event(cause, index, state, source))
        if not state.changed:
            continue
        previous = state.previous_label
        if fast and _CHANGE_ASSEMBLABLE and (previous is None or type(previous) is RegimeLabel):
            out.append(_assembled_change_event(cause, uuid5_of(cause_id, change_names[index + 1]), state, source))
        else:
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
    return state_events(bar, states, source, floats=True) if states else []
