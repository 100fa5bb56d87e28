"""Regime detection events."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from ata.events.envelope import Event
from ata.events.values import FiniteFloat, Probability, Symbol


class RegimeLabel(StrEnum):
    """The documented set of regime labels."""

    BULL_QUIET = "bull_quiet"
    BULL_VOLATILE = "bull_volatile"
    BEAR_QUIET = "bear_quiet"
    BEAR_VOLATILE = "bear_volatile"
    SIDEWAYS = "sideways"
    CRISIS = "crisis"


class RegimeStateUpdated(Event):
    """Per-bar regime state of a symbol or of ``_market``."""

    symbol: Symbol
    label: RegimeLabel
    confirmed_label: RegimeLabel
    probabilities: dict[str, Probability]
    confidence: Probability
    factors: dict[str, FiniteFloat] = Field(default_factory=dict)
    transition_matrix: tuple[tuple[Probability, ...], ...] = ()


class RegimeChanged(Event):
    """A confirmed regime change (after hysteresis and multi-timeframe confirmation)."""

    symbol: Symbol
    previous: RegimeLabel | None
    current: RegimeLabel
    confidence: Probability
