"""From bars to regime events: the detector behind the event contract of ``regime.states.v1``."""

from __future__ import annotations

from ata.events import Message
from ata.events.market import BarClosed
from ata.events.regime import RegimeChanged, RegimeStateUpdated
from ata.regime.core.detector import RegimeDetector, RegimeState


def state_events(cause: BarClosed, states: list[RegimeState], source: str) -> list[Message]:
    """``RegimeStateUpdated`` per state, plus ``RegimeChanged`` right after it when the change is confirmed.

    Every output is caused by ``cause`` (output ids derive from its id and the output's
    index); a ``_market`` state keeps the timestamp of the cross-section it describes.
    """
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


def on_bar(detector: RegimeDetector, bar: BarClosed, source: str) -> list[Message]:
    """Feed one bar to ``detector`` and return the events it produces."""
    states = detector.update(bar.symbol, bar.ts_event, bar.close, bar.volume, bar.timeframe)
    return state_events(bar, states, source) if states else []
