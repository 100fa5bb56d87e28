"""``make run`` under failures end to end: ``ata up`` from an empty state directory to a first paper
fill, then a kill -9 of every service in turn, the order ledger checked, then Ctrl-C.

``make run`` itself with every default is ``test_make_run_defaults``'s part: the Makefile target
reaches every service ready and a first fill on the default XNYS replay and stops on Ctrl-C. This
test runs ``ata up`` directly (the ``ata_up`` fixture of ``conftest.py``), observed from outside as
a user would: every service reports ready (its heartbeats) and a first ``FillReported`` appears.
Two settings differ from the defaults, both so that trading goes on all the time and progress
after a restart is prompt: the synthetic bars run around the clock (on the default XNYS calendar
the replay skips each simulated night in about a second, but the sessions themselves took this
test 312 s against 135 s around the clock), and at a pace this small shared machine keeps up with
(3 symbols at 120x, 6 bars/s: at the default 5 symbols and 600x, strategy falls behind the bars on
a busy machine and risk denies many of its targets as stale, so fills become rare). The pure
defaults reach a first fill too (in the first simulated session whenever measured); it is the
restarts that need the lighter, continuous pace: at the defaults, even around the clock, no new
fill came within the step timeout after regime's restart at load 14-17.

Each service in turn is killed with SIGKILL; the supervisor restarts it, the new process reports
ready, and the run makes progress again (a new fill; for market data, bars published by the new
process) before the next victim. Market data goes last: its replay starts over after a restart (consumers skip
the bars they already applied), so nothing new trades until it has caught up.

The order ledger (:class:`ata.backtest.ledger.OrderLedger`) is then checked on the broker topics
and in the journal's SQLite store in the state directory (read through :mod:`ata.journal.store`):
every intent has one order command, every command read from the topics is answered, by at most
one broker order, and no fill is duplicated, foreign or an overfill; the journal holds every
order, answer and fill the topics hold. SIGINT stops everything with exit code 0 and leaves no
process behind.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ata.backtest.ledger import OrderLedger
from ata.events import BarClosed, FillReported, Message
from ata.journal.store import EventFilter, make_store
from ata.runtime.cli import installed_services
from ata.runtime.codec import decode
from ata.runtime.testing import read_messages

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

#: Kill order: market data last (see the module docstring).
LAST_VICTIM = "marketdata"
ORDER_TOPICS = ("orders.commands.v1", "orders.events.v1", "orders.fills.v1")


def kill_order(names: list[str]) -> list[str]:
    return [*sorted(n for n in names if n != LAST_VICTIM), LAST_VICTIM]


async def topic_ledger(bootstrap: str) -> OrderLedger:
    messages: list[Message] = []
    for topic in ORDER_TOPICS:
        messages += await read_messages(bootstrap, topic)
    return OrderLedger.of(messages)


def journal_ledger(state: Path) -> OrderLedger:
    """The order ledger as the journal stored it (the SQLite file is read while the journal writes: WAL)."""
    with make_store(f"sqlite:///{state / 'journal.db'}") as store:
        return OrderLedger.of(decode(e.payload_bytes()) for e in store.events(EventFilter(topics=ORDER_TOPICS)))


async def test_make_run_reaches_a_fill_survives_killing_each_service_and_stops_cleanly(ata_up: Callable[..., Any]) -> None:
    run = ata_up(["--symbols", "3", "--speed", "120"], {"ATA_MARKETDATA_CALENDAR": ""})
    names = sorted(installed_services())
    assert {"marketdata", "strategy", "risk", "execution", "journal"} <= set(names)
    infra = await run.infra()
    bootstrap = str(infra["kafka_bootstrap"])

    async def fill_ids() -> set[tuple[str, str]]:
        """Fills by order and fill id (the simulated broker numbers fills afresh after execution restarts)."""
        return {(m.client_order_id, m.fill_id) for m in await read_messages(bootstrap, "orders.fills.v1")
                if isinstance(m, FillReported)}

    def new_fill(seen: set[tuple[str, str]]) -> Callable[[], Awaitable[set[tuple[str, str]] | None]]:
        async def probe() -> set[tuple[str, str]] | None:
            now = await fill_ids()
            return now if now - seen else None
        return probe

    def bars_from(pid: int) -> Callable[[], Awaitable[int | None]]:
        async def probe() -> int | None:
            count = sum(1 for m in await read_messages(bootstrap, "market.bars.v1")
                        if isinstance(m, BarClosed) and m.source.rsplit("-", 1)[-1] == str(pid))
            return count or None
        return probe

    pids = await run.eventually(lambda: run.ready_pids(bootstrap, names), run.START_TIMEOUT_S, "every service ready")
    fills = await run.eventually(new_fill(set()), run.START_TIMEOUT_S, "a first fill")
    first = next(m for m in await read_messages(bootstrap, "orders.fills.v1") if isinstance(m, FillReported))
    assert first.quantity > 0 and first.client_order_id.startswith("ata-")

    for victim in kill_order(names):
        os.kill(pids[victim], signal.SIGKILL)

        async def restarted(victim: str = victim, before: dict[str, int] = pids) -> dict[str, int] | None:
            again = await run.ready_pids(bootstrap, names)
            return again if again is not None and again[victim] != before[victim] else None

        after = await run.eventually(restarted, run.STEP_TIMEOUT_S, f"{victim} restarted and ready")
        assert {n: p for n, p in after.items() if n != victim} == {n: p for n, p in pids.items() if n != victim}
        pids = after
        if victim == LAST_VICTIM:
            await run.eventually(bars_from(pids[victim]), run.STEP_TIMEOUT_S, "bars from the restarted market data")
        else:
            fills = await run.eventually(new_fill(await fill_ids()), run.STEP_TIMEOUT_S, f"a new fill after {victim}'s restart")
    assert len(fills) > len(names)

    # The ledger, read while the broker is still up: the orders commanded by now are all answered.
    commanded = set((await topic_ledger(bootstrap)).commands)

    async def all_answered() -> OrderLedger | None:
        ledger = await topic_ledger(bootstrap)
        return ledger if all(ledger.answers.get(c) for c in commanded) else None

    topics = await run.eventually(all_answered, run.STEP_TIMEOUT_S, "an answer to every order command on the topics")
    assert topics.problems(commanded) == []

    async def journaled() -> OrderLedger | None:
        ledger = journal_ledger(run.state)
        held = (set(topics.commands) <= set(ledger.commands) and set(topics.fills) <= set(ledger.fills)
                and all(topics.answers[c] <= ledger.answers[c] for c in topics.answers))
        return ledger if held else None

    journal = await run.eventually(journaled, run.STEP_TIMEOUT_S, "the journal holding every order, answer and fill")
    assert journal.problems(commanded) == []
    assert {c: journal.commands[c] for c in topics.commands} == topics.commands
    assert {f: journal.fills[f] for f in topics.fills} == topics.fills

    processes = run.processes(infra)
    assert run.interrupt() == 0
    assert run.running(processes) == []
    output = run.log.read_text(errors="replace")
    assert "mode: paper trading on replayed synthetic data through the simulated broker" in output  # no Alpaca keys
    assert "services stopped" in output and "infrastructure stopped" in output
    assert journal_ledger(run.state).problems(commanded) == []  # after the drain: all the journal holds, still clean
