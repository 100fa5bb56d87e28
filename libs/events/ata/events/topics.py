"""The topic registry: every topic declared once, with its key, types and owners.

Names follow ``<domain>.<stream>.v<N>``. Every topic has a dead-letter sibling
``<name>.dlq`` carrying :class:`DeadLetterRecorded`. Consumptions marked ``feedback``
close a deliberate loop: risk consumes the fills its own orders cause; risk takes operator
commands that a human issues after watching the gateway; the gateway watches heartbeats
and dead letters that it also emits itself. The service graph must be acyclic once
feedback edges are set aside (``ata topics graph`` checks it).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

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
from ata.events.orders import ORDER_LIFECYCLE, CancelOrder, FillReported, SubmitOrder
from ata.events.oversight import OversightReviewed
from ata.events.regime import RegimeChanged, RegimeStateUpdated
from ata.events.risk import OrderDenied, PortfolioSnapshotTaken, RiskLimitsChanged, TradingStateChanged
from ata.events.strategy import AllocationFallbackEngaged, SignalGenerated, StrategySwitched, TargetProposed
from ata.events.system import DeadLetterRecorded, HeartbeatEmitted, JournalAvailabilityChanged

TOPIC_NAME = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.v[0-9]+$")
DLQ_SUFFIX = ".dlq"
DAY_MS = 86_400_000

SERVICES = ("marketdata", "regime", "sentiment", "strategy", "oversight", "risk", "execution", "journal", "gateway")


@dataclass(frozen=True)
class Topic:
    """One topic. ``key_field`` names the event attribute used as the Kafka key
    (``None``: the producing service instance)."""

    name: str
    value_types: tuple[type[Message], ...]
    key_field: str | None
    partitions: int
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    feedback_consumers: tuple[str, ...] = ()
    retention_ms: int = 7 * DAY_MS
    compacted: bool = False
    description: str = ""
    dlq_of: str | None = field(default=None)

    def __post_init__(self) -> None:
        base = self.dlq_of or self.name
        if not TOPIC_NAME.match(base):
            raise ValueError(f"topic name {self.name!r} is not <domain>.<stream>.v<N>")
        if self.partitions < 1:
            raise ValueError(f"topic {self.name}: partitions must be >= 1")
        for svc in (*self.producers, *self.consumers, *self.feedback_consumers):
            if svc not in SERVICES:
                raise ValueError(f"topic {self.name}: unknown service {svc!r}")

    @property
    def dlq(self) -> str:
        return self.name + DLQ_SUFFIX

    def accepts(self, message: Message) -> bool:
        return isinstance(message, self.value_types)

    def key_of(self, message: Message) -> str:
        """The Kafka key for ``message`` on this topic (symbol, client order id, ...)."""
        if self.key_field is None:
            return message.source
        value = getattr(message, self.key_field, None)
        if value is None:
            raise ValueError(f"{type(message).__name__} has no {self.key_field!r} to key {self.name}")
        return str(value)


ALL_SERVICES_BUT_JOURNAL = tuple(s for s in SERVICES if s != "journal")

_BASE_TOPICS: tuple[Topic, ...] = (
    Topic("market.bars.v1", (BarClosed,), "symbol", 6, ("marketdata",), ("regime", "strategy", "risk", "execution", "gateway"),
          description="Clean OHLCV bars, keyed by symbol"),
    Topic("market.quotes.v1", (QuoteUpdated,), "symbol", 6, ("marketdata",), ("risk", "execution", "gateway"),
          retention_ms=DAY_MS, description="Top-of-book quotes"),
    Topic("market.anomalies.v1", (DataAnomalyDetected, DataReliabilityChanged), "symbol", 3, ("marketdata",), ("risk", "gateway"),
          retention_ms=30 * DAY_MS, description="Data anomalies and per-symbol data reliability"),
    Topic("market.ground_truth.v1", (GroundTruthRegimeObserved,), "symbol", 3, ("marketdata",), ("gateway",),
          description="Synthetic generator's true regimes, for evaluation only"),
    Topic("news.items.v1", (NewsPublished,), None, 3, ("sentiment",), ("oversight", "gateway"),
          retention_ms=30 * DAY_MS, description="Acquired news items"),
    Topic("sentiment.scores.v1", (SentimentScored,), "symbol", 6, ("sentiment",), ("strategy", "gateway"),
          description="Per-symbol sentiment"),
    Topic("regime.states.v1", (RegimeStateUpdated, RegimeChanged), "symbol", 6, ("regime",),
          ("strategy", "risk", "oversight", "gateway"),
          description="Regime state per symbol and _market, and confirmed changes"),
    Topic("strategy.signals.v1", (SignalGenerated,), "symbol", 6, ("strategy",), ("gateway",),
          description="Per-strategy signals, each published when it changes"),
    Topic("strategy.targets.v1", (TargetProposed, StrategySwitched), "symbol", 6, ("strategy",),
          ("oversight", "risk", "gateway"),
          description="Meta-strategy target position proposals and the strategy switches that shape them"),
    Topic("strategy.allocation.v1", (AllocationFallbackEngaged,), None, 1, ("strategy",), ("gateway",),
          retention_ms=90 * DAY_MS, description="Portfolio allocation fallbacks (failed optimiser or RL policy)"),
    Topic("oversight.reviews.v1", (OversightReviewed,), "symbol", 3, ("oversight",), ("risk", "gateway"),
          retention_ms=90 * DAY_MS, description="Oversight verdicts with prompt/response audit trail"),
    Topic("orders.commands.v1", (SubmitOrder, CancelOrder), "client_order_id", 6, ("risk",), ("execution",),
          retention_ms=30 * DAY_MS, description="Risk-approved order commands"),
    Topic("orders.events.v1", ORDER_LIFECYCLE, "client_order_id", 6, ("execution",), ("gateway",), ("risk",),
          retention_ms=30 * DAY_MS, description="Order lifecycle events"),
    Topic("orders.fills.v1", (FillReported,), "client_order_id", 6, ("execution",), ("gateway",), ("risk",),
          retention_ms=90 * DAY_MS, description="Fills (incremental quantities)"),
    Topic("execution.alignment.v1", EXECUTION_ALIGNMENT, "broker", 3, ("execution",), ("gateway",),
          retention_ms=90 * DAY_MS, description="Refused order transitions and reconciliation realignments"),
    Topic("execution.quality.v1", (ExecutionQualityMeasured,), "symbol", 3, ("execution",), ("gateway",),
          retention_ms=90 * DAY_MS, description="Implementation shortfall and slippage per completed order"),
    Topic("risk.decisions.v1", (OrderDenied,), "symbol", 3, ("risk",), ("gateway",),
          retention_ms=30 * DAY_MS, description="Risk denials with stable reason codes"),
    Topic("risk.state.v1", (TradingStateChanged,), None, 1, ("risk",), ("execution", "gateway"),
          compacted=True, description="Trading state changes with their reasons"),
    Topic("risk.limits.v1", (RiskLimitsChanged,), None, 1, ("risk",), ("gateway",),
          retention_ms=90 * DAY_MS, description="Risk limit changes applied or refused, with reasons"),
    Topic("portfolio.snapshots.v1", (PortfolioSnapshotTaken,), None, 1, ("risk",), ("gateway",),
          description="Portfolio snapshots"),
    Topic("control.commands.v1", (HaltTrading, ResumeTrading, FlattenAll, SetRiskLimits), None, 1, ("gateway",), (), ("risk",),
          retention_ms=90 * DAY_MS, description="Operator control commands"),
    Topic("system.heartbeats.v1", (HeartbeatEmitted,), "service", 1, (*ALL_SERVICES_BUT_JOURNAL, "journal"), (), ("gateway",),
          retention_ms=DAY_MS, description="Service heartbeats"),
    Topic("system.journal.v1", (JournalAvailabilityChanged,), None, 1, ("journal",), ("risk", "gateway"),
          description="Journal availability (risk fails closed on unavailable)"),
)


def _dlq_topic(topic: Topic) -> Topic:
    return Topic(
        name=topic.dlq,
        value_types=(DeadLetterRecorded,),
        key_field="original_key",
        partitions=1,
        producers=tuple(sorted(set(topic.consumers) | set(topic.feedback_consumers) | {"journal"})),
        consumers=(),
        feedback_consumers=("gateway",),
        retention_ms=30 * DAY_MS,
        description=f"Dead letters of {topic.name}",
        dlq_of=topic.name,
    )


class TopicRegistry:
    """Lookup of topics by name; includes every topic's DLQ."""

    def __init__(self, topics: Iterable[Topic]) -> None:
        self._topics: dict[str, Topic] = {}
        for topic in topics:
            for entry in (topic, _dlq_topic(topic)) if topic.dlq_of is None else (topic,):
                if entry.name in self._topics:
                    raise ValueError(f"topic {entry.name} declared twice")
                self._topics[entry.name] = entry

    def __iter__(self) -> Iterator[Topic]:
        return iter(self._topics.values())

    def __len__(self) -> int:
        return len(self._topics)

    def get(self, name: str) -> Topic:
        try:
            return self._topics[name]
        except KeyError:
            raise KeyError(f"unknown topic {name!r}") from None

    def names(self, include_dlq: bool = True) -> list[str]:
        return [t.name for t in self._topics.values() if include_dlq or t.dlq_of is None]

    def data_topics(self) -> list[Topic]:
        return [t for t in self._topics.values() if t.dlq_of is None]

    def renamed(self, names: Mapping[str, str]) -> TopicRegistry:
        """This registry with data topics renamed per ``names`` (old -> new; others unchanged) and
        their DLQs following, e.g. for an isolated run on a shared broker."""
        return TopicRegistry(dataclasses.replace(t, name=names.get(t.name, t.name)) for t in self.data_topics())

    def topic_for(self, message: Message) -> Topic:
        """The single non-DLQ topic that carries ``message``'s type."""
        matches = [t for t in self.data_topics() if t.accepts(message)]
        if len(matches) != 1:
            raise LookupError(f"{type(message).__name__} is carried by {len(matches)} topics, expected 1")
        return matches[0]


REGISTRY = TopicRegistry(_BASE_TOPICS)
