"""Helpers for tests and benchmarks of the journal: stores on both backends, records, waiting."""

from __future__ import annotations

import asyncio
import math
import random
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from ata.events import REGISTRY, BarClosed, Message, OversightReviewed, SignalGenerated, SubmitOrder, TargetProposed, Verdict
from ata.execution.brokers.simulated import FeeModel, SimConfig, SimulatedBroker, SimulatedExchange
from ata.execution.core.engine import BrokerRoute, EngineConfig, ExecutionEngine, MemoryOrderStore
from ata.execution.core.state_machine import TrackedOrder
from ata.journal.core.records import JournalRecord, to_record
from ata.journal.store import JournalStore, make_store
from ata.risk.config import RiskSettings
from ata.risk.core import RiskEngine
from ata.risk.service import SUBSCRIPTIONS as RISK_SUBSCRIPTIONS
from ata.runtime.bus import Delivery, InMemoryBus
from ata.runtime.codec import encode


def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}_"


def sqlite_url(directory: Path, name: str = "journal.db") -> str:
    return f"sqlite:///{directory / name}"


@contextmanager
def temporary_store(url: str) -> Iterator[JournalStore]:
    """An open store under a fresh table prefix; its tables are dropped afterwards."""
    store = make_store(url, prefix=unique_prefix())
    store.open()
    try:
        yield store
    finally:
        store.drop()
        store.close()


def records_of(messages: list[Message], topic: str = "t.events.v1", partition: int = 0, first_offset: int = 0,
               headers: dict[str, str] | None = None) -> list[JournalRecord]:
    """Journal records for ``messages`` as if consumed from consecutive offsets of one partition."""
    return [to_record(topic, partition, first_offset + i, None, encode(m), headers or {}) for i, m in enumerate(messages)]


async def until(predicate: Callable[[], bool], what: str, timeout_s: float = 60.0, interval_s: float = 0.05) -> None:
    """Poll ``predicate`` until it holds; ``AssertionError`` naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(interval_s)


# -- a small paper-trading run through the real cores ------------------------------------------------

PAPER_SYMBOLS = ("AAA", "BBB", "CCC")
MINUTE_NS = 60_000_000_000
T0 = 1_700_000_000_000_000_000


#: Risk settings of the paper run: plain sizing so targets become orders within a few bars.
PAPER_RISK: dict[str, object] = {
    "symbols": PAPER_SYMBOLS, "position_vol_target_annual": 0.0, "kelly_fraction": 0.0, "regime_scaling_enabled": False,
    "drawdown_enabled": False, "stress_enabled": False, "max_order_notional": 1_000_000.0,
    "max_position_notional": 1_000_000.0, "snapshot_interval_ms": 600_000,
}


def paper_risk_settings() -> RiskSettings:
    return RiskSettings(**PAPER_RISK)


def paper_risk_env() -> dict[str, str]:
    """:data:`PAPER_RISK` as ``ATA_RISK_*`` environment variables (for commands that load settings)."""
    return {f"ATA_RISK_{k.upper()}": orjson.dumps(v).decode() if isinstance(v, tuple) else str(v).lower()
            if isinstance(v, bool) else str(v) for k, v in PAPER_RISK.items()}


@dataclass
class PaperRun:
    """The live cores of a paper-trading run and everything the journal recorded of it."""

    risk: RiskEngine
    execution: ExecutionEngine
    bus: InMemoryBus
    records: list[JournalRecord] = field(default_factory=list)

    def live_orders(self) -> dict[str, TrackedOrder]:
        """Execution's own orders, without TWAP slices (internal, never published)."""
        return {coid: o for coid, o in self.execution.orders.items() if not o.parent_id}


async def paper_run(*, seed: int = 7, bars: int = 120, target_every: int = 5) -> PaperRun:
    """Drive risk and execution (simulated broker) over an in-memory bus with a seeded market and strategy.

    Per bar and symbol: a ``BarClosed``; every ``target_every`` bars a ``SignalGenerated`` caused by the
    bar, a ``TargetProposed`` caused by the signal and an advisory ``OversightReviewed`` of the target,
    so a filled order's chain is bar -> signal -> target -> review -> order -> lifecycle -> fill.
    The journal subscriber is registered first: it records each message before any core handles it,
    so journal order is the order risk handled its inputs in.
    """
    rnd = random.Random(seed)
    bus = InMemoryBus()
    risk = RiskEngine(paper_risk_settings(), source="risk/paper")
    clock = [T0]
    exchange = SimulatedExchange(SimConfig(fees=FeeModel(bps=1.0)))
    broker = SimulatedBroker("sim", exchange, clock=lambda: clock[0])
    execution = ExecutionEngine([BrokerRoute(broker, fee_bps=1.0)], MemoryOrderStore(), lambda: clock[0],
                                EngineConfig(source="execution/paper"))
    run = PaperRun(risk, execution, bus)
    await execution.start()
    update_seq = [exchange.update_seq]
    risk_types = tuple(t for name in RISK_SUBSCRIPTIONS for t in REGISTRY.get(name).value_types)

    async def journal(message: Message, delivery: Delivery) -> None:
        run.records.append(to_record(delivery.topic, delivery.partition, delivery.offset, delivery.key, delivery.raw,
                                     dict(delivery.headers)))

    async def risk_handler(message: Message, delivery: Delivery) -> None:
        if isinstance(message, risk_types):
            await bus.publish(risk.handle(message))

    async def broker_updates() -> list[Message]:
        views, update_seq[0] = exchange.updates_since(update_seq[0])
        events: list[Message] = []
        for view in views:
            events += await execution.on_broker_update("sim", view)
        return events

    async def execution_handler(message: Message, delivery: Delivery) -> None:
        if isinstance(message, SubmitOrder):
            events = await execution.handle_submit(message)
        elif isinstance(message, BarClosed):
            execution.on_market(message)
            await broker.on_market(message)
            events = []
        else:
            return
        await bus.publish(events + await broker_updates())

    bus.subscribe([t.name for t in REGISTRY], journal)
    bus.subscribe(list(RISK_SUBSCRIPTIONS), risk_handler)
    bus.subscribe(["orders.commands.v1", "market.bars.v1"], execution_handler)
    prices = dict.fromkeys(PAPER_SYMBOLS, 100.0)
    for i in range(bars):
        ts = T0 + (i + 1) * MINUTE_NS
        clock[0] = ts
        for symbol in PAPER_SYMBOLS:
            close = prices[symbol] = round(prices[symbol] * math.exp(rnd.gauss(0, 0.01)), 2)
            bar = BarClosed.origin(natural_key=("paper", symbol, i), ts_event=ts, ts_init=ts, source="marketdata/paper",
                                   symbol=symbol, timeframe="1m", ts_open=ts - MINUTE_NS, open=close, high=close * 1.002,
                                   low=close * 0.998, close=close, volume=1_000_000.0)
            await bus.publish([bar])
            if i % target_every == target_every - 1:
                await bus.publish(_decision(bar, rnd.uniform(-0.3, 0.3)))
    return run


def _decision(bar: BarClosed, weight: float) -> list[Message]:
    signal = SignalGenerated.caused_by(bar, source="strategy/paper", strategy="paper", symbol=bar.symbol,
                                       direction=1 if weight >= 0 else -1, strength=min(1.0, abs(weight) * 3), horizon_bars=5)
    proposal = TargetProposed.caused_by(signal, source="strategy/paper", symbol=bar.symbol, target_weight=round(weight, 4),
                                        reference_price=bar.close, method="paper")
    verdict = OversightReviewed.caused_by(proposal, source="oversight/paper", subject_event_id=proposal.event_id,
                                          subject_type="TargetProposed", symbol=bar.symbol, verdict=Verdict.APPROVE,
                                          rationale="within bounds", confidence=0.9, provider="rules", latency_ms=0.1)
    return [signal, proposal, verdict]
