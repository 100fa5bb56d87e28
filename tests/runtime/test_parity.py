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
- **a bar time's fills before its targets**: risk sizes a target for bar time T only once every
  order it sent before T has reported at T or ended (:mod:`ata.risk.core.engine`), and a fill does
  not overwrite its bar's newer mark. Live, execution's fills and strategy's targets reach risk on
  different topics in either order; in the backtest a bar time's records come one symbol at a time,
  so a target can reach risk before another symbol's fill of the same bar time. Both sides size it
  against the same state;
- **same configuration**: every core gets the same settings (the backtest's defaults are the
  services' defaults); news is off on both sides (the live sentiment service would otherwise
  replay its shipped headlines, which the backtest does not read);
- **no background refits**: live regime refits run off the event loop and apply when they finish,
  the backtest applies them inline; the data set stays below the first refit (``min_fit_bars``
  bars per key), where the two agree by construction. Runs with refits are not covered.

What is compared, strictly: the bars (same ids), every target proposal and oversight review (same
ids and contents), every risk denial (same ids, reasons, symbols and details), and per order the
client order id (derived from the intent, so the same on both sides), symbol, side, quantity and
bar time; per fill the order, symbol, side, quantity, price and bar time. Fill ids are the
simulated broker's counters, numbered in arrival order, which live concurrency may permute; they
are not compared.
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
#: Fields set from the wall clock or the process: the instance in ``source``, ``ts_init``, a review's latency and cache hit.
UNCOMPARED_FIELDS = {"ts_init", "source", "latency_ms", "cache_hit"}


def decisions(messages: list[Message], kind: type[Message]) -> dict[uuid.UUID, dict[str, Any]]:
    """Event id -> content of each ``kind`` message, without :data:`UNCOMPARED_FIELDS`."""
    return {m.event_id: m.model_dump(exclude=UNCOMPARED_FIELDS) for m in messages if isinstance(m, kind)}


def summary(content: dict[str, Any]) -> dict[str, Any]:
    return {k: content[k] for k in ("ts_event", "symbol", "reason", "detail", "target_weight") if k in content}


def differences(live: dict[uuid.UUID, dict[str, Any]], backtest: dict[uuid.UUID, dict[str, Any]]) -> list[str]:
    """Per event id, what differs between the two sides (readable when the parity breaks)."""
    found = [f"{i}: live only {summary(live[i])}" for i in live.keys() - backtest.keys()]
    found += [f"{i}: backtest only {summary(backtest[i])}" for i in backtest.keys() - live.keys()]
    for i in live.keys() & backtest.keys():
        fields = {k: (v, backtest[i].get(k)) for k, v in live[i].items() if v != backtest[i].get(k)}
        if fields:
            found.append(f"{i}: (live, backtest) {fields}")
    return sorted(found)


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
    gate = PipelineGate.for_services(bootstrap, PIPELINE)
    try:
        await asyncio.wait_for(gate.wait_idle(), run.STEP_TIMEOUT_S)
    finally:
        gate.close()
    live_bars = [m for m in await read_messages(bootstrap, "market.bars.v1") if isinstance(m, BarClosed)]
    live_messages: list[Message] = []
    for topic in ORDER_TOPICS + DECISION_TOPICS:
        live_messages += await read_messages(bootstrap, topic)
    assert run.interrupt() == 0
    live = OrderLedger.of(live_messages)

    assert len({m.event_id for m in live_bars}) == BARS
    for kind in DECISIONS:
        assert differences(decisions(live_messages, kind), decisions(backtest_messages_, kind)) == [], kind.__name__
    assert live.problems() == []
    assert sorted(live.order_rows()) == sorted(backtest.order_rows())
    assert sorted(r[1:] for r in live.fill_rows()) == sorted(r[1:] for r in backtest.fill_rows())
