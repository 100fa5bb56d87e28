"""ata.events: the typed contract between services and with analysts.

Import models from here: ``from ata.events import BarClosed, SubmitOrder``.
"""

from ata.events.catalogue import CATALOGUE, all_message_classes, message_class, register
from ata.events.control import FlattenAll, HaltTrading, ResumeTrading, RiskLimits, SetRiskLimits
from ata.events.envelope import ATA_NAMESPACE, Command, Event, Message, derived_id, origin_id
from ata.events.execution import (
    EXECUTION_ALIGNMENT,
    ExecutionQualityMeasured,
    OrderReconciled,
    OrderStatus,
    OrderTransitionRefused,
    PositionMismatchDetected,
    ReconcileAction,
)
from ata.events.market import (
    AnomalyKind,
    BarClosed,
    DataAnomalyDetected,
    DataReliabilityChanged,
    GroundTruthRegimeObserved,
    QuoteUpdated,
    Severity,
)
from ata.events.news import NewsPublished, SentimentScored
from ata.events.orders import (
    ORDER_LIFECYCLE,
    CancelOrder,
    FillReported,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderSubmitted,
    SubmitOrder,
)
from ata.events.oversight import OversightReviewed, Verdict
from ata.events.regime import RegimeChanged, RegimeLabel, RegimeStateUpdated
from ata.events.risk import (
    DenialReason,
    OrderDenied,
    PortfolioSnapshotTaken,
    PositionView,
    RiskLimitsChanged,
    TradingState,
    TradingStateChanged,
)
from ata.events.strategy import (
    AllocationFallbackEngaged,
    ContributingSignal,
    SignalGenerated,
    StrategySwitched,
    TargetProposed,
)
from ata.events.system import DeadLetterRecorded, HeartbeatEmitted, JournalAvailabilityChanged, ServiceStatus
from ata.events.topics import REGISTRY, SERVICES, Topic, TopicRegistry
from ata.events.values import (
    MARKET_KEY,
    OrderType,
    Side,
    TimeInForce,
    client_order_id_for,
    round_price,
    round_quantity,
)

__all__ = [
    "ATA_NAMESPACE", "CATALOGUE", "EXECUTION_ALIGNMENT", "MARKET_KEY", "ORDER_LIFECYCLE", "REGISTRY", "SERVICES",
    "AllocationFallbackEngaged", "AnomalyKind", "BarClosed", "CancelOrder", "Command", "ContributingSignal",
    "DataAnomalyDetected", "DataReliabilityChanged", "DeadLetterRecorded", "DenialReason", "Event", "ExecutionQualityMeasured",
    "FillReported", "FlattenAll", "GroundTruthRegimeObserved", "HaltTrading", "HeartbeatEmitted",
    "JournalAvailabilityChanged", "Message", "NewsPublished", "OrderAccepted", "OrderCanceled", "OrderDenied",
    "OrderExpired", "OrderFilled", "OrderPartiallyFilled", "OrderReconciled", "OrderRejected", "OrderStatus",
    "OrderSubmitted", "OrderTransitionRefused", "OrderType", "OversightReviewed", "PortfolioSnapshotTaken",
    "PositionMismatchDetected", "PositionView", "QuoteUpdated", "ReconcileAction", "RegimeChanged", "RegimeLabel",
    "RegimeStateUpdated", "ResumeTrading", "RiskLimits", "RiskLimitsChanged", "SentimentScored", "ServiceStatus", "SetRiskLimits",
    "Severity", "Side", "SignalGenerated", "StrategySwitched", "SubmitOrder", "TargetProposed", "TimeInForce", "Topic",
    "TopicRegistry", "TradingState", "TradingStateChanged", "Verdict", "all_message_classes",
    "client_order_id_for", "derived_id", "message_class", "origin_id", "register", "round_price",
    "round_quantity",
]
