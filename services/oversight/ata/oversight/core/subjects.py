"""What oversight reviews: subjects, the context they are reviewed in, and which of them need a review.

Three kinds of subject:

- ``TargetProposed`` (the meta-strategy's target weight for a symbol): reviewed when its
  notional (``|weight| x account_equity``) or its weight reaches a threshold;
- ``RegimeChanged`` (a confirmed regime change): a second opinion on the quantitative regime;
- a strategy switch: any message satisfying :class:`StrategySwitch` (``symbol``,
  ``previous_strategy``, ``current_strategy``, ``reason``), so the strategy service can publish
  its own event type and oversight reviews it without a code change here.

A :class:`ReviewRequest` is the subject plus a frozen copy of the context (latest regime
state, recent headlines) taken when the subject arrived, so a review is a pure function of
the request.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from ata.events import Message, RegimeChanged, TargetProposed


class SubjectKind(StrEnum):
    TARGET = "TargetProposed"
    REGIME_CHANGE = "RegimeChanged"
    STRATEGY_SWITCH = "StrategySwitch"


@runtime_checkable
class StrategySwitch(Protocol):
    """The interface of a strategy-switch event (the strategy service's event type satisfies it)."""

    event_id: uuid.UUID
    ts_event: int
    symbol: str
    previous_strategy: str
    current_strategy: str
    reason: str


def kind_of(message: Message) -> SubjectKind | None:
    """The subject kind of ``message``; None when it is not something oversight reviews."""
    if isinstance(message, TargetProposed):
        return SubjectKind.TARGET
    if isinstance(message, RegimeChanged):
        return SubjectKind.REGIME_CHANGE
    if isinstance(message, StrategySwitch):
        return SubjectKind.STRATEGY_SWITCH
    return None


@dataclass(frozen=True, slots=True)
class RegimeView:
    """The latest regime state of a symbol (or ``_market``) as regime detection published it."""

    label: str
    confirmed_label: str
    confidence: float
    probabilities: tuple[tuple[str, float], ...]

    def probability(self, label: str) -> float | None:
        return dict(self.probabilities).get(label)


@dataclass(frozen=True, slots=True)
class Headline:
    """A recent news item about the subject's symbol. Its text is untrusted data."""

    ts_event: int
    news_source: str
    headline: str
    summary: str


@dataclass(frozen=True, slots=True)
class ReviewRequest:
    """One subject to review, with its context frozen at arrival."""

    kind: SubjectKind
    subject: Message
    symbol: str
    regime: RegimeView | None
    market_regime: RegimeView | None
    headlines: tuple[Headline, ...]
    recent_switches: int = 0
    below_threshold: bool = False

    @property
    def subject_event_id(self) -> uuid.UUID:
        return self.subject.event_id

    @property
    def max_modify_weight(self) -> float | None:
        """The bound of a ``modify`` verdict: at most the proposed absolute weight; None where modify is meaningless."""
        if isinstance(self.subject, TargetProposed):
            return abs(self.subject.target_weight)
        return None


@dataclass(frozen=True, slots=True)
class ReviewPolicy:
    """Which subjects need a review (thresholds from settings)."""

    min_notional: float
    min_abs_weight: float
    account_equity: float
    regime_changes: bool
    strategy_switches: bool

    def needs_review(self, kind: SubjectKind, message: Message) -> bool:
        if kind is SubjectKind.TARGET:
            assert isinstance(message, TargetProposed)
            weight = abs(message.target_weight)
            return weight * self.account_equity >= self.min_notional or weight >= self.min_abs_weight
        if kind is SubjectKind.REGIME_CHANGE:
            return self.regime_changes
        return self.strategy_switches
