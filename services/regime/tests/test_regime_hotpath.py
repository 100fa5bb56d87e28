"""The hot-path building blocks give exactly what the general-purpose forms give.

- ``CorrelationWindow`` against the average pairwise correlation computed from the
  window's per-timestamp dicts;
- state events built without re-validation against the validated constructors
  (equality, fields set, JSON bytes).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ata.events import Message
from ata.events.market import BarClosed
from ata.events.regime import RegimeChanged, RegimeLabel, RegimeStateUpdated
from ata.regime.core import RegimeState
from ata.regime.core.correlation import CorrelationWindow
from ata.regime.core.events import _fast_state_allowed, state_events
from ata.runtime.codec import encode

#: Values from a small grid, so repeats, constant stretches and exact cancellations occur.
_grid_values = st.integers(min_value=-8, max_value=8).map(lambda i: i / 4.0)
_values = st.one_of(_grid_values, st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False))


def _average_from_dicts(rows: list[dict[str, float]], window: int) -> float:
    """The average pairwise correlation as defined: symbols present in every row, zero-variance ones left out."""
    if len(rows) < window:
        return math.nan
    names = sorted(set.intersection(*(set(r) for r in rows)))
    if len(names) < 2:
        return math.nan
    m = np.array([[row[s] for s in names] for row in rows], dtype=np.float64)
    m -= m.mean(axis=0)
    sd = np.sqrt((m * m).sum(axis=0))
    live = sd > 0.0
    n = int(live.sum())
    if n < 2:
        return math.nan
    z = m[:, live] / sd[live]
    return (float((z.sum(axis=1) ** 2).sum()) - n) / (n * (n - 1))


_rows = st.lists(st.dictionaries(st.sampled_from([f"S{i:02d}" for i in range(8)]), _values, min_size=1, max_size=8), max_size=80)


@settings(max_examples=150, deadline=None)
@given(rows=_rows, window=st.integers(min_value=1, max_value=15))
def test_correlation_window_equals_the_dict_form_bit_for_bit(rows: list[dict[str, float]], window: int) -> None:
    corr = CorrelationWindow(window)
    for t, row in enumerate(rows):
        corr.push(row)
        recent = rows[max(0, t + 1 - window) : t + 1]
        expected, ours = _average_from_dicts(recent, window), corr.average()
        assert ours == expected or (math.isnan(ours) and math.isnan(expected))
        assert corr.rows() == recent


_probability = st.floats(min_value=0.0, max_value=1.0)
_finite = st.floats(allow_nan=False, allow_infinity=False)
_symbols = st.sampled_from(["AAA", "BRK.B", "_market", "X1"])


@st.composite
def _states(draw: st.DrawFn, factor_values: st.SearchStrategy[float] = _finite) -> RegimeState:
    labels = list(RegimeLabel)
    probabilities = {label: draw(_probability) for label in draw(st.permutations(labels))}
    label = draw(st.sampled_from(labels))
    changed = draw(st.booleans())
    k = draw(st.integers(min_value=2, max_value=3))
    return RegimeState(
        key=draw(_symbols),
        ts_event=draw(st.integers(min_value=0, max_value=2**63 - 1)),
        label=label,
        confirmed_label=draw(st.sampled_from(labels)),
        previous_label=draw(st.none() | st.sampled_from(labels)) if changed else None,
        changed=changed,
        probabilities=probabilities,
        confidence=probabilities[label],
        factors=draw(st.dictionaries(st.text(min_size=1, max_size=20), factor_values, max_size=16)),
        transition_matrix=tuple(tuple(draw(_probability) for _ in range(k)) for _ in range(k)),
    )


def _cause(ts: int) -> BarClosed:
    return BarClosed.origin(
        natural_key=("test", "AAA", ts),
        ts_event=ts,
        ts_init=ts,
        source="test",
        symbol="AAA",
        timeframe="1d",
        ts_open=ts,
        open=1.0,
        high=1.0,
        low=1.0,
        close=1.0,
        volume=1.0,
    )


def _validated_events(cause: BarClosed, states: list[RegimeState], source: str) -> list[Message]:
    """The events as the validated constructors build them."""
    out: list[Message] = []
    for state in states:
        out.append(
            RegimeStateUpdated.caused_by(
                cause,
                index=len(out),
                source=source,
                ts_event=state.ts_event,
                symbol=state.key,
                label=state.label,
                confirmed_label=state.confirmed_label,
                probabilities={label.value: p for label, p in state.probabilities.items()},
                confidence=state.confidence,
                factors=state.factors,
                transition_matrix=state.transition_matrix,
            )
        )
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


def _assert_identical(ours: list[Message], reference: list[Message]) -> None:
    assert ours == reference
    for a, b in zip(ours, reference, strict=True):
        assert type(a) is type(b)
        assert a.model_fields_set == b.model_fields_set
        assert encode(a) == encode(b)
        assert a.model_dump_json() == b.model_dump_json()
        assert a.model_dump() == b.model_dump()


@settings(max_examples=300, deadline=None)
@given(
    states=st.lists(_states(), min_size=1, max_size=4),
    ts=st.integers(min_value=0, max_value=2**62),
    source=st.sampled_from(["regime/a", "regime"]),
)
def test_state_events_built_without_validation_equal_validated_ones(states: list[RegimeState], ts: int, source: str) -> None:
    cause = _cause(ts)
    reference = _validated_events(cause, states, source)
    _assert_identical(state_events(cause, states, source), reference)
    # every symbol and source has now been through validation once: all of these take the fast path
    assert all(_fast_state_allowed(state, source) for state in states)
    _assert_identical(state_events(cause, states, source), reference)


@settings(max_examples=100, deadline=None)
@given(
    state=_states(factor_values=st.sampled_from([math.nan, math.inf, -math.inf])),
    bad_probability=st.sampled_from([math.nan, 1.5, -0.25]),
    which=st.sampled_from(["factor", "probability", "matrix"]),
)
def test_values_validation_rejects_are_rejected_on_every_path(state: RegimeState, bad_probability: float, which: str) -> None:
    cause = _cause(10**18)
    good = RegimeState(**{**_fields(state), "factors": {"x": 1.0}})
    state_events(cause, [good], "regime/a")  # the symbol and source are known afterwards
    if which == "factor":
        bad = RegimeState(**{**_fields(state), "factors": {**state.factors, "bad": math.inf}})
    elif which == "probability":
        bad = RegimeState(**{**_fields(state), "probabilities": {**state.probabilities, RegimeLabel.CRISIS: bad_probability}})
    else:
        bad = RegimeState(**{**_fields(state), "transition_matrix": ((bad_probability, 0.5), (0.5, 0.5))})
    assert not _fast_state_allowed(bad, "regime/a")
    with pytest.raises(ValidationError):
        _validated_events(cause, [bad], "regime/a")
    with pytest.raises(ValidationError):
        state_events(cause, [bad], "regime/a")


def test_numbers_that_are_not_python_floats_go_through_validation() -> None:
    cause = _cause(10**18)
    base = RegimeState(
        key="AAA",
        ts_event=10**18,
        label=RegimeLabel.SIDEWAYS,
        confirmed_label=RegimeLabel.SIDEWAYS,
        previous_label=None,
        changed=False,
        probabilities={label: 0.0 for label in RegimeLabel} | {RegimeLabel.SIDEWAYS: 1.0},
        confidence=1.0,
        factors={"n": 1.0},
        transition_matrix=((0.9, 0.1), (0.2, 0.8)),
    )
    state_events(cause, [base], "regime/a")
    for odd in ({"n": 1}, {"n": np.float64(0.5)}, {"n": True}):
        state = RegimeState(**{**_fields(base), "factors": odd})  # type: ignore[arg-type]
        assert not _fast_state_allowed(state, "regime/a")
        _assert_identical(state_events(cause, [state], "regime/a"), _validated_events(cause, [state], "regime/a"))


def _fields(state: RegimeState) -> dict[str, object]:
    return {name: getattr(state, name) for name in RegimeState._fields}
