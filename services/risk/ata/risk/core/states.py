"""Trading state (ACTIVE / REDUCING / HALTED) composed from independent sources.

Each source (operator, drawdown, daily loss, stress) asks for a state with a reason; the
effective state is the most severe request. A transition reports the reason of the source
that caused it, so every published state change says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ata.events import TradingState

SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


@dataclass(frozen=True, slots=True)
class Transition:
    previous: TradingState
    current: TradingState
    reason: str


class TradingStateMachine:
    def __init__(self) -> None:
        self._requests: dict[str, tuple[TradingState, str]] = {}
        self._state = TradingState.ACTIVE  # _effective()[0], kept in step by request() (read on every order)

    @property
    def state(self) -> TradingState:
        return self._state

    def _effective(self) -> tuple[TradingState, str]:
        state, reason = TradingState.ACTIVE, "no restriction in force"
        for source in sorted(self._requests):
            requested, why = self._requests[source]
            if SEVERITY[requested] > SEVERITY[state]:
                state, reason = requested, f"{source}: {why}"
        return state, reason

    def request(self, source: str, state: TradingState, reason: str) -> Transition | None:
        """Set ``source``'s request (ACTIVE withdraws it); return the transition, if any."""
        before = self.state
        if state is TradingState.ACTIVE:
            self._requests.pop(source, None)
        else:
            self._requests[source] = (state, reason)
        after, why = self._effective()
        self._state = after
        if after is before:
            return None
        return Transition(before, after, why if SEVERITY[after] > SEVERITY[before] else f"{source} cleared: {reason}")

    def requested(self, source: str) -> TradingState:
        entry = self._requests.get(source)
        return entry[0] if entry else TradingState.ACTIVE

    def to_state(self) -> dict[str, Any]:
        return {s: [st.value, why] for s, (st, why) in sorted(self._requests.items())}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TradingStateMachine:
        machine = cls()
        machine._requests = {s: (TradingState(st), str(why)) for s, (st, why) in state.items()}
        machine._state = machine._effective()[0]
        return machine
