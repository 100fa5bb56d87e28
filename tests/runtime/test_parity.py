"""Backtest/live parity: the same bars through the live services on the embedded broker and
through the backtest engine give the same orders and fills.

The live side is ``ata up`` (every service as its own process, Kafka in between, the simulated
broker inside execution on market time) replaying seeded synthetic bars; the backtest side is
:class:`ata.backtest.engine.Backtest` (``ata backtest``) over the same data with its default
config. Neither side gets tuning for the other: a default that differs between a live service and
the backtest shows up here as a difference.

The parity guarantee, and what it rests on:

- **lock step**: market data replays with ``lockstep_groups`` (:mod:`ata.runtime.quiescence`), so
  each bar time is published only after every pipeline service has handled everything before it.
  That is the backtest's delivery order (a bar and all it causes before the next bar), without
  which live results depend on scheduling (which of a bar's consequences a service sees first);
- **event time everywhere**: risk and execution run on market time, ids derive from causing ids;
- **same configuration**: every core gets the same settings (the backtest's defaults are the
  services' defaults); news is off on both sides (the live sentiment service would otherwise
  replay its shipped headlines, which the backtest does not read);
- **no background refits**: live regime refits run off the event loop and apply when they finish,
  the backtest applies them inline; the data set stays below the first refit (``min_fit_bars``
  bars per key), where the two agree by construction. Runs with refits are not covered.

What is compared, strictly: the bars (same ids), every target proposal and oversight review (same
ids and contents), every risk denial (same ids, reasons and symbols), and per order the client
order id (derived from the intent, so the same on both sides), symbol, side and bar time; per
fill the order, symbol, side, price and bar time. Fill ids are the simulated broker's counters,
numbered in arrival order, which live concurrency may permute; they are not compared.

**Known gap** (quantities): risk sizes a target on equity, and a fill changes equity by
``quantity x (close - fill price)``. In the backtest the fills a bar causes (orders from the
previous bar filled at this bar's open) reach risk before the targets the same bar causes; live,
execution's fill reports and strategy's targets race to risk within a bar time, so when a target
wins, its order's quantity differs by a unit or two (measured: 10 of 74 orders in this data set),
and the position difference carries into later orders' quantities and denials' details. Order
quantities are therefore compared exactly only before the first bar time with a fill, before any
race. Closing the gap needs risk to take a bar time's fill reports before its targets (an
ordering rule in risk and execution, not a setting).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from ata.backtest.config import BacktestConfig
from ata.backtest.data import DataSpec, build_calendar, records
from ata.backtest.engine import Backtest
from ata.backtest.ledger import OrderLedger
from ata.events import BarClosed, HeartbeatEmitted, Message, OrderDenied, OversightReviewed, TargetProposed
from ata.regime.core import DetectorParams
from ata.runtime.quiescence import PipelineGate
from ata.runtime.testing import read_messages

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SYMBOLS = 2
BARS = 400  # both symbols together: 200 bar times, below the regime's first refit
SEED = 11
#: The services between a bar and its fills: market data waits for these before each bar time.
PIPELINE = ("regime", "strategy", "oversight", "risk", "execution")
ORDER_TOPICS = ("orders.commands.v1", "orders.events.v1", "orders.fills.v1")
DECISION_TOPICS = ("strategy.targets.v1", "oversight.reviews.v1", "risk.decisions.v1")
DECISIONS = (TargetProposed, OversightReviewed, OrderDenied)
#: Fields set from the wall clock or the process: the instance in ``source``, ``ts_init``, a review's latency and cache
#: hit; and a denial's ``detail``, whose figures carry the quantity gap (see the module docstring).
UNCOMPARED_FIELDS = {"ts_init", "source", "latency_ms", "cache_hit", "detail"}


def decisions(messages: list[Message], kind: type[Message]) -> dict[uuid.UUID, dict[str, Any]]:
    """Event id -> content of each ``kind`` message, without :data:`UNCOMPARED_FIELDS`."""
    return {m.event_id: m.model_dump(exclude=UNCOMPARED_FIELDS) for m in messages if isinstance(m, kind)}


def without_quantity(rows: list[tuple[Any, ...]], quantity_at: int) -> list[tuple[Any, ...]]:
    return sorted(row[:quantity_at] + row[quantity_at + 1:] for row in rows)


async def backtest_messages(spec: DataSpec) -> tuple[list[Message], int]:
    """The order and decision messages of a backtest of ``spec`` with the default config, and its bar count."""
    calendar = build_calendar(spec)
    engine = Backtest(BacktestConfig(), calendar=calendar)
    messages: list[Message] = []

    async def keep(message: Message) -> list[Message]:
        messages.append(message)
        return []

    engine.bus.subscribe(ORDER_TOPICS + DECISION_TOPICS, keep)
    result = await engine.run(records(spec, calendar))
    return messages, result.bars


async def test_live_services_and_the_backtest_give_the_same_orders_and_fills(ata_up: Callable[..., Any]) -> None:
    assert DetectorParams().min_fit_bars > BARS // SYMBOLS
    spec = DataSpec(data="synthetic", synthetic_symbols=SYMBOLS, synthetic_bars=BARS, seed=SEED)
    backtest_messages_, bars = await backtest_messages(spec)
    backtest = OrderLedger.of(backtest_messages_)
    assert bars == BARS
    assert len(backtest.commands) >= 10 and len(backtest.fills) >= 10  # the data set trades
    assert backtest.problems() == []

    run = ata_up(["--data", "synthetic", "--symbols", str(SYMBOLS)], {
        "ATA_MARKETDATA_SYNTHETIC_MAX_BARS": str(BARS), "ATA_MARKETDATA_SEED": str(SEED),
        "ATA_MARKETDATA_LOCKSTEP_GROUPS": json.dumps(PIPELINE), "ATA_SENTIMENT_SOURCE": "none"})
    bootstrap = str((await run.infra())["kafka_bootstrap"])

    async def replay_finished() -> bool | None:
        return any(isinstance(m, HeartbeatEmitted) and m.service == "marketdata" and m.details.get("source_finished") is True
                   for m in await read_messages(bootstrap, "system.heartbeats.v1")) or None

    await run.eventually(replay_finished, run.START_TIMEOUT_S + 240.0, "the replay to finish")
    await asyncio.wait_for(PipelineGate.for_services(bootstrap, PIPELINE).wait_idle(), run.STEP_TIMEOUT_S)
    live_bars = [m for m in await read_messages(bootstrap, "market.bars.v1") if isinstance(m, BarClosed)]
    live_messages: list[Message] = []
    for topic in ORDER_TOPICS + DECISION_TOPICS:
        live_messages += await read_messages(bootstrap, topic)
    assert run.interrupt() == 0
    live = OrderLedger.of(live_messages)

    assert len({m.event_id for m in live_bars}) == BARS
    for kind in DECISIONS:
        assert decisions(live_messages, kind) == decisions(backtest_messages_, kind), kind.__name__
    assert live.problems() == []
    assert without_quantity(live.order_rows(), 3) == without_quantity(backtest.order_rows(), 3)
    first_fill = min(f.ts_event for f in backtest.fills.values())
    before_race = [r for r in backtest.order_rows() if r[4] < first_fill]
    assert before_race and [r for r in live.order_rows() if r[4] < first_fill] == before_race
    assert without_quantity([r[1:] for r in live.fill_rows()], 3) == without_quantity([r[1:] for r in backtest.fill_rows()], 3)
