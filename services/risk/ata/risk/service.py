"""The risk service shell: Kafka in and out, a Redis cache of the engine state, metrics.

All decisions are made by :class:`ata.risk.core.RiskEngine`. The shell feeds it every
subscribed message, publishes what it returns (orders to ``orders.commands.v1``, denials to
``risk.decisions.v1``, state changes to ``risk.state.v1``, limit answers to
``risk.limits.v1``, snapshots to ``portfolio.snapshots.v1``), and caches its state in Redis (on
stop and every ``state_save_every_messages`` messages, through
:class:`ata.runtime.statecache.StateCache`) to resume where it stopped. Redis is only a cache:
when it is unreachable the service starts from its configured initial state.

Time (``ATA_RISK_CLOCK``):

- ``market`` (default): "now" is the market time, the latest bar/quote time received, never
  going backwards, so replayed data is judged by its own clock (staleness, rate limits, output
  stamps). Inputs stamped by a machine clock — operator commands and the journal's
  availability — would drag the engine to today, so they are re-stamped with the market time;
  those that arrive before any market data are held and applied at the first market data's
  time. Nothing ticks between events: an oversight timeout fires on the first event past it.
- ``wall``: the machine clock, for live quotes; the engine is ticked every
  ``tick_interval_ms`` so an oversight timeout fires even when no event arrives.

Targets wait for their bar time's fills and marks (``target_wait_ms``, see :mod:`ata.risk.core.engine`).
The engine releases them on event time; the shell bounds the wait on the machine clock, checked
every ``tick_interval_ms``: when the oldest waiting target has waited ``target_wait_ms``, every
waiting target is decided as things stand, counted in ``ata_risk_target_wait_expired_total`` and
logged, so a lost fill report or bar delays trading by at most that bound.

A target that asks for more while its position already sits at an exposure limit is denied once,
when the limit starts binding, and not again on every bar while target and limits stay the same
(see :mod:`ata.risk.core.engine`); each repeat is counted in
``ata_risk_repeat_denials_suppressed_total{limit}`` instead of published.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

from prometheus_client import Counter as PromCounter

from ata.events import (
    REGISTRY,
    BarClosed,
    FlattenAll,
    HaltTrading,
    JournalAvailabilityChanged,
    Message,
    QuoteUpdated,
    ResumeTrading,
    SetRiskLimits,
    TradingState,
)
from ata.risk.config import RiskSettings
from ata.risk.core import RiskEngine
from ata.runtime import metrics
from ata.runtime.batching import each_message
from ata.runtime.bus import Delivery
from ata.runtime.config import RuntimeSettings, load_settings
from ata.runtime.service import Service, run_service
from ata.runtime.statecache import StateCache

SUBSCRIPTIONS = (
    "market.bars.v1",
    "market.quotes.v1",
    "market.anomalies.v1",
    "regime.states.v1",
    "strategy.targets.v1",
    "oversight.reviews.v1",
    "orders.fills.v1",
    "orders.events.v1",
    "system.journal.v1",
    "control.commands.v1",
)
#: Inputs stamped with their sender's machine clock rather than with market time.
WALL_STAMPED = (HaltTrading, ResumeTrading, FlattenAll, SetRiskLimits, JournalAvailabilityChanged)
STATE_LEVEL = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}

CLIPPED = metrics.counter("ata_risk_orders_clipped_total", "Orders sized down to an exposure limit, by the tightest limit",
                          ("limit",))
REPEATS_SUPPRESSED = metrics.counter(
    "ata_risk_repeat_denials_suppressed_total",
    "Denials not published again: the same target against the same limit its position already sits at, by limit",
    ("limit",))
DECISIONS = metrics.counter("ata_risk_orders_total", "Order decisions: approved, or the denial reason code", ("decision",))
EQUITY = metrics.gauge("ata_risk_equity", "Portfolio equity (account currency)")
DRAWDOWN = metrics.gauge("ata_risk_drawdown_ratio", "Drawdown from the high-water mark (fraction)")
TRADING_STATE = metrics.gauge("ata_risk_trading_state", "Trading state: 0 ACTIVE, 1 REDUCING, 2 HALTED")
TARGET_WAIT_EXPIRED = metrics.counter(
    "ata_risk_target_wait_expired_total", "Targets decided before all their bar time's fills and marks: the wait bound expired")
GROSS = metrics.gauge("ata_risk_gross_exposure", "Gross exposure (account currency)")


class CountsExport:
    """Mirrors a count the engine keeps per label (``Counter``) into a labelled Prometheus counter, by increments."""

    def __init__(self, metric: PromCounter, exported: Counter[str] | None = None) -> None:
        self.metric = metric
        self.exported: Counter[str] = Counter(exported or {})

    def export(self, counts: Counter[str]) -> None:
        """Add to the metric what ``counts`` gained since the last export."""
        if counts != self.exported:
            for label, gained in (counts - self.exported).items():
                self.metric.labels(label).inc(gained)
            self.exported = Counter(counts)


#: The registry with topics renamed per a mapping (isolated runs on one shared broker); tests of
#: several services import it from here.
renamed_registry = REGISTRY.renamed


class RiskService(Service):
    name = "risk"
    subscriptions: ClassVar[tuple[str, ...]] = SUBSCRIPTIONS

    def __init__(self, settings: RuntimeSettings, risk_settings: RiskSettings, *, topic_names: Mapping[str, str] | None = None,
                 **kwargs: Any) -> None:
        if topic_names:
            self.registry = REGISTRY.renamed(topic_names)  # type: ignore[misc]  # per-instance topics
            self.subscriptions = tuple(topic_names.get(t, t) for t in SUBSCRIPTIONS)  # type: ignore[misc]
        super().__init__(settings, **kwargs)
        self.risk_settings = risk_settings
        self.engine = RiskEngine(risk_settings, source=self.source)
        self.state_cache = StateCache(self.settings.redis_url, risk_settings.state_key,
                                      save_every_messages=risk_settings.state_save_every_messages, log=self.log)
        self._market_ns: int | None = None  # latest market data time (clock=market)
        self._held: list[Message] = []  # wall-stamped inputs received before any market data (clock=market)
        self._decisions = CountsExport(DECISIONS)
        self._clips = CountsExport(CLIPPED)
        self._repeats = CountsExport(REPEATS_SUPPRESSED)
        self._oldest_wait: tuple[uuid.UUID, float] | None = None  # oldest waiting target, monotonic time first seen

    @classmethod
    def from_env(cls) -> Self:
        return cls(load_settings(RuntimeSettings), load_settings(RiskSettings))

    async def on_start(self) -> None:
        state = await self.state_cache.load()
        if state is not None:
            self.engine = RiskEngine.restore(self.risk_settings, state, source=self.source)
            # Counts restored with the state were exported by the run that made them.
            self._decisions = CountsExport(DECISIONS, self.engine.decisions)
            self._clips = CountsExport(CLIPPED, self.engine.clips)
            self._repeats = CountsExport(REPEATS_SUPPRESSED, self.engine.repeats_suppressed)
        self._export()

    async def on_stop(self) -> None:
        await self.state_cache.close(self._snapshot)

    def _snapshot(self) -> dict[str, Any]:
        return self.engine.snapshot()

    async def handle_batch(self, batch: Sequence[tuple[Message, Delivery]]) -> Sequence[Sequence[Message] | Exception]:
        """Every message of a fetched batch through the engine, in fetch order; the runtime publishes all outputs
        in one call and commits the batch once they are acknowledged. Metrics are exported and the state cache
        counts once per batch (per message, the runtime's span, produce call and acknowledgement wait, and the
        gauges, cost more than the engine). A message the engine fails on is that message's result,
        dead-lettered by the runtime; the others go on."""
        results = each_message(batch, self._apply)
        self._count()
        await self.state_cache.handled(self._snapshot, count=len(batch))
        return results

    def _apply(self, message: Message) -> list[Message]:
        outputs: list[Message] = []
        for due in self._on_market_time(message):
            outputs += self.engine.handle(due)
        return outputs

    def _on_market_time(self, message: Message) -> list[Message]:
        """The inputs to apply now for ``message``, stamped with market time (clock=market)."""
        if self.risk_settings.clock == "wall":
            return [message]
        if isinstance(message, BarClosed | QuoteUpdated):
            self._market_ns = message.ts_event if self._market_ns is None else max(self._market_ns, message.ts_event)
            held, self._held = self._held, []
            return [*(m.model_copy(update={"ts_event": message.ts_event}) for m in held), message]
        if isinstance(message, WALL_STAMPED):
            if self._market_ns is None:
                self._held.append(message)
                return []
            if message.ts_event > self._market_ns:
                return [message.model_copy(update={"ts_event": self._market_ns})]
        return [message]

    async def background(self) -> None:
        """Ticks every ``tick_interval_ms``: under the wall clock so an oversight timeout fires even
        when no event arrives; under either clock to bound how long targets wait."""
        wall = self.risk_settings.clock == "wall"
        if not wall and not self.risk_settings.target_wait_ms:
            return
        period_s = self.risk_settings.tick_interval_ms / 1000
        while True:
            await asyncio.sleep(period_s)
            outputs = self.engine.advance(time.time_ns()) if wall else []
            outputs += self._target_wait_expired()
            if outputs:
                self._count()
                await self.publish(outputs)

    def _target_wait_expired(self) -> list[Message]:
        """Release the waiting targets once the oldest of them has waited ``target_wait_ms``."""
        waiting = self.engine.waiting_targets
        if not waiting:
            self._oldest_wait = None
            return []
        now = time.monotonic()
        if self._oldest_wait is None or self._oldest_wait[0] != waiting[0].event_id:
            self._oldest_wait = (waiting[0].event_id, now)
            return []
        if (now - self._oldest_wait[1]) * 1000 < self.risk_settings.target_wait_ms:
            return []
        self.log.warning("%d targets waited %d ms for their bar time's fills and marks (still missing: %s); deciding them",
                         len(waiting), self.risk_settings.target_wait_ms, ", ".join(self.engine.waiting_for()))
        TARGET_WAIT_EXPIRED.inc(len(waiting))
        self._oldest_wait = None
        return self.engine.release_waiting()

    def _count(self) -> None:
        """Export what the engine counted since the last call, and the portfolio gauges."""
        self._decisions.export(self.engine.decisions)
        self._clips.export(self.engine.clips)
        self._repeats.export(self.engine.repeats_suppressed)
        self._export()

    def _export(self) -> None:
        portfolio = self.engine.portfolio
        EQUITY.set(portfolio.equity)
        DRAWDOWN.set(portfolio.drawdown)
        GROSS.set(portfolio.gross_exposure)
        TRADING_STATE.set(STATE_LEVEL[self.engine.states.state])


def main() -> None:
    run_service(RiskService)
