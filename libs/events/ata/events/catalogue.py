"""Every message type of the platform, looked up by ``event_type``."""

from __future__ import annotations

from ata.events.control import FlattenAll, HaltTrading, ResumeTrading, SetRiskLimits
from ata.events.envelope import Message
from ata.events.execution import EXECUTION_ALIGNMENT, ExecutionQualityMeasured
from ata.events.market import (
    BarClosed,
    DataAnomalyDetected,
    DataReliabilityChanged,
    GroundTruthRegimeObserved,
    QuoteUpdated,
)
from ata.events.news import NewsPublished, SentimentScored
from ata.events.orders import (
    ORDER_LIFECYCLE,
    CancelOrder,
    FillReported,
    SubmitOrder,
)
from ata.events.oversight import OversightReviewed
from ata.events.regime import RegimeChanged, RegimeStateUpdated
from ata.events.risk import OrderDenied, PortfolioSnapshotTaken, RiskLimitsChanged, TradingStateChanged
from ata.events.strategy import AllocationFallbackEngaged, SignalGenerated, StrategySwitched, TargetProposed
from ata.events.system import DeadLetterRecorded, HeartbeatEmitted, JournalAvailabilityChanged

CATALOGUE: tuple[type[Message], ...] = (
    BarClosed,
    QuoteUpdated,
    DataAnomalyDetected,
    DataReliabilityChanged,
    GroundTruthRegimeObserved,
    NewsPublished,
    SentimentScored,
    RegimeStateUpdated,
    RegimeChanged,
    SignalGenerated,
    TargetProposed,
    StrategySwitched,
    AllocationFallbackEngaged,
    OversightReviewed,
    SubmitOrder,
    CancelOrder,
    *ORDER_LIFECYCLE,
    FillReported,
    *EXECUTION_ALIGNMENT,
    ExecutionQualityMeasured,
    OrderDenied,
    TradingStateChanged,
    RiskLimitsChanged,
    PortfolioSnapshotTaken,
    HaltTrading,
    ResumeTrading,
    FlattenAll,
    SetRiskLimits,
    HeartbeatEmitted,
    DeadLetterRecorded,
    JournalAvailabilityChanged,
)

_BY_TYPE: dict[str, type[Message]] = {cls.__name__: cls for cls in CATALOGUE}


def message_class(event_type: str) -> type[Message]:
    """The model for ``event_type``; ``KeyError`` names the unknown type."""
    try:
        return _BY_TYPE[event_type]
    except KeyError:
        raise KeyError(f"unknown event_type {event_type!r}") from None


def register(cls: type[Message]) -> type[Message]:
    """Add a service-defined message type (class decorator). Names must be unique."""
    existing = _BY_TYPE.get(cls.__name__)
    if existing is not None and existing is not cls:
        raise ValueError(f"event_type {cls.__name__!r} already registered by {existing.__module__}")
    _BY_TYPE[cls.__name__] = cls
    return cls


def all_message_classes() -> tuple[type[Message], ...]:
    return tuple(_BY_TYPE.values())
