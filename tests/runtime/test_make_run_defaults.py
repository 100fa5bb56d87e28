"""Acceptance of ``make run`` as shipped: the Makefile's target with every default, from an empty state
directory to every service ready and a first paper fill, then Ctrl-C.

``make run`` is launched in the repository root with nothing but a state directory of its own (the
``make_run`` fixture of ``conftest.py``; the infrastructure and the services take free ports by
default), and with the install stamp taken as up to date: installing is ``make install``'s part,
which ``make test`` and ``make lint`` run first. So the trading defaults are those a user gets:
synthetic 1-minute bars of 5 symbols at 600x on the XNYS calendar (closed hours skipped), the
simulated broker on market time. Observed from outside as a user would: every installed service
reports ready (its heartbeats) and a first ``FillReported`` appears; it and every bar replayed by
then lie inside XNYS sessions, the bars being 1-minute bars of 5 symbols. SIGINT to ``ata up``
(see ``UpRun.interrupt``) then stops everything: ``make`` exits with code 0 and no process is left
behind.

``test_make_run`` covers what this test leaves out: killing each service in turn and the order
ledger, on a lighter, around-the-clock replay.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

from ata.events import BarClosed, FillReported
from ata.marketdata.core.calendar import SessionCalendar
from ata.runtime.cli import installed_services
from ata.runtime.testing import read_messages

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def in_one_session(calendar: SessionCalendar, start_ns: int, end_ns: int) -> bool:
    """Whether market times ``start_ns`` to ``end_ns`` lie in one session of ``calendar``, its open and close included."""
    session = calendar.session_of_date(start_ns)
    if session is None:
        return False
    opens, closes = calendar.session_bounds(session)
    return bool(opens <= start_ns <= end_ns <= closes)


async def test_make_run_with_its_defaults_reaches_every_service_ready_and_a_first_fill_and_stops_on_ctrl_c(
        make_run: Callable[[], Any]) -> None:
    run = make_run()
    names = sorted(installed_services())
    infra = await run.infra()
    bootstrap = str(infra["kafka_bootstrap"])

    async def first_fill() -> FillReported | None:
        return next((m for m in await read_messages(bootstrap, "orders.fills.v1") if isinstance(m, FillReported)), None)

    await run.eventually(lambda: run.ready_pids(bootstrap, names), run.START_TIMEOUT_S, "every service ready")
    fill = await run.eventually(first_fill, run.START_TIMEOUT_S, "a first fill")
    assert fill.quantity > 0 and fill.client_order_id.startswith("ata-")
    xnys = SessionCalendar.from_exchange("XNYS", start="1990-01-01")
    assert in_one_session(xnys, fill.ts_event, fill.ts_event), f"fill at {pd.Timestamp(fill.ts_event, unit='ns', tz='UTC')}"
    bars = [m for m in await read_messages(bootstrap, "market.bars.v1") if isinstance(m, BarClosed)]
    assert len({b.symbol for b in bars}) == 5 and {b.timeframe for b in bars} == {"1m"}
    assert [b for b in bars if not in_one_session(xnys, b.ts_open, b.ts_event)] == []

    processes = run.processes(infra)
    assert run.interrupt() == 0
    assert run.running(processes) == []
    output = run.log.read_text(errors="replace")
    assert "mode: paper trading on replayed synthetic data through the simulated broker (speed 600.0x)" in output
    assert "services stopped" in output and "infrastructure stopped" in output
