"""``make run`` with Alpaca keys: ``ata up`` trades on Alpaca paper (live bars in, orders out), here against
fakes of Alpaca's market data and trading APIs served on 127.0.0.1.

The run mode itself (:mod:`ata.runtime.up_modes`): without keys the replay defaults, with both keys the
Alpaca defaults (the one key pair handed to each service, the paper account forced), one key without the
other refused before anything starts, with the missing variable named; a service refusing its Alpaca
settings stops ``ata up`` with its problem shown.

End to end: ``ata up`` runs with ``APCA_API_KEY_ID``/``APCA_API_SECRET_KEY`` and the services' endpoint
variables pointing at the fakes. The market data fake streams rising minute bars of one symbol, ending
at the current minute, all at once and then goes quiet. Two settings differ from the defaults because
of that: the bars may wait in the broker for a busy machine to start strategy and risk, so risk's
staleness bound (wall clock in this mode) is raised above the bars' age; and market data's stale-feed
check, which would flag the quiet stream during market hours, is relaxed the same way. Only the
services on the path from bars to orders run (``--services``): the test is about where bars come from
and where orders go, and the whole platform under ``ata up`` is what ``test_make_run`` covers. An order
must reach the fake trading API; the fake fills it, and the fill must come back as ``FillReported``.
Neither key may appear in ``ata up``'s output or any service's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ata.events import FillReported
from ata.execution.testing.fake_alpaca import FakeAlpaca as FakeTrading
from ata.marketdata.testing import KEY, MIN, SECRET
from ata.marketdata.testing import FakeAlpaca as FakeMarketData
from ata.marketdata.testing import start_fake as serve_market_data
from ata.runtime.testing import read_messages
from ata.runtime.up_modes import KEY_VAR, SECRET_VAR, ModeError, describe, run_mode

#: Minute bars the market data fake sends; price rises a dollar a minute, so the strategies want to buy.
BARS = 90
SERVICES = ("marketdata", "strategy", "risk", "execution")
#: Older than any of the fake's bars can be by the time risk judges them (they end when the test starts).
STALENESS_MS = str(4 * 3_600_000)


def test_without_keys_the_replay_defaults_apply() -> None:
    mode = run_mode({}, "synthetic", None, 5)
    assert mode.name == "replay" and mode.forced == {}
    assert mode.defaults["ATA_MARKETDATA_SOURCE"] == "synthetic" and mode.defaults["ATA_EXECUTION_BROKERS"] == "sim"
    assert "Alpaca" not in mode.summary and KEY_VAR in describe(mode, {})


def test_with_both_keys_market_data_and_execution_go_to_alpaca_paper_and_the_keys_stay_out_of_text() -> None:
    environ = {KEY_VAR: "PKEXAMPLE123", SECRET_VAR: "sk-example-456", "ATA_MARKETDATA_SYMBOLS": '["SPY"]'}
    mode = run_mode(environ, "synthetic", None, 5)
    assert mode.name == "alpaca"
    d = mode.defaults
    assert d["ATA_MARKETDATA_SOURCE"] == "alpaca" and d["ATA_EXECUTION_BROKERS"] == "alpaca"
    assert d["ATA_MARKETDATA_ALPACA_API_KEY"] == d["ATA_EXECUTION_ALPACA_API_KEY"] == "PKEXAMPLE123"
    assert d["ATA_MARKETDATA_ALPACA_SECRET_KEY"] == d["ATA_EXECUTION_ALPACA_SECRET_KEY"] == "sk-example-456"
    assert d["ATA_EXECUTION_CLOCK"] == d["ATA_RISK_CLOCK"] == "wall"
    assert mode.forced == {"ATA_EXECUTION_ALPACA_PAPER": "true"}
    line = describe(mode, environ)
    assert "Alpaca paper" in line and '["SPY"]' in line and "paper-api.alpaca.markets" in line
    for text in (line, repr(mode)):
        assert "PKEXAMPLE123" not in text and "sk-example-456" not in text


@pytest.mark.parametrize(("given", "missing"), [(KEY_VAR, SECRET_VAR), (SECRET_VAR, KEY_VAR)])
def test_one_key_without_the_other_is_refused_naming_the_missing_one(given: str, missing: str) -> None:
    with pytest.raises(ModeError, match=f"^{missing} is not set") as raised:
        run_mode({given: "value-123", missing: "  "})
    assert "value-123" not in str(raised.value)


def test_ata_up_with_a_key_but_no_secret_stops_before_starting_anything(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATA_", "APCA_"))}
    env |= {"ATA_STATE_DIR": str(tmp_path / "state"), KEY_VAR: "PKEXAMPLE123"}
    done = subprocess.run([sys.executable, "-m", "ata.runtime.cli", "up"], check=False, env=env, capture_output=True,
                          timeout=600)  # only imports and a refusal, but imports crawl on a loaded CI machine
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 2, output
    assert SECRET_VAR in output and "PKEXAMPLE123" not in output
    assert not (tmp_path / "state" / "infra.json").exists()


def test_ata_up_stops_when_a_service_refuses_its_alpaca_settings_naming_the_variable(ata_up: Callable[..., Any]) -> None:
    run = ata_up(["--services", "execution", "--no-provision"], {KEY_VAR: "PKEXAMPLE123", SECRET_VAR: "sk-example-456",
                                               "ATA_EXECUTION_ALPACA_SECRET_KEY": ""})  # set, so it wins: empty
    assert run.proc.wait(run.START_TIMEOUT_S) == 2, run.output_tail()
    output = run.log.read_text(errors="replace")
    assert "execution refused its configuration" in output and "ATA_EXECUTION_ALPACA_SECRET_KEY" in output
    assert "infrastructure stopped" in output
    assert "PKEXAMPLE123" not in output and "sk-example-456" not in output


@pytest.mark.slow
@pytest.mark.timeout(900)  # the waits below are bounded one by one; a loaded machine may need several of them in full
async def test_make_run_with_alpaca_keys_trades_on_the_alpaca_paper_account(ata_up: Callable[..., Any]) -> None:
    first_open = (time.time_ns() // MIN - BARS + 1) * MIN  # the last bar opens in the current minute
    market = FakeMarketData([(list(range(BARS)), "silent")], t0_ns=first_open)
    async with FakeTrading(key=KEY, secret=SECRET) as trading, \
            contextlib.asynccontextmanager(serve_market_data)(market) as endpoints:
        run = ata_up(["--services", ",".join(SERVICES)], {
            KEY_VAR: KEY, SECRET_VAR: SECRET, "ATA_MARKETDATA_SYMBOLS": '["AAA"]',
            "ATA_MARKETDATA_ALPACA_STREAM_URL": endpoints.stream_url, "ATA_MARKETDATA_ALPACA_DATA_URL": endpoints.data_url,
            "ATA_EXECUTION_ALPACA_BASE_URL": trading.url,
            "ATA_RISK_MAX_STALENESS_MS": STALENESS_MS, "ATA_MARKETDATA_MAX_STALENESS_MS": STALENESS_MS})
        bootstrap = str((await run.infra())["kafka_bootstrap"])
        await run.eventually(lambda: run.ready_pids(bootstrap, SERVICES), run.START_TIMEOUT_S, "every service ready")

        async def submitted() -> str | None:
            return trading.submissions[0] if trading.submissions else None

        client_order_id = await run.eventually(submitted, run.START_TIMEOUT_S, "an order at the fake Alpaca trading API")
        order = trading.order(client_order_id)
        assert order["symbol"] == "AAA" and client_order_id.startswith("ata-")
        price = 100.0 + BARS
        await trading.fill(client_order_id, float(order["qty"]), price)

        async def fill_reported() -> FillReported | None:
            return next((m for m in await read_messages(bootstrap, "orders.fills.v1")
                         if isinstance(m, FillReported) and m.client_order_id == client_order_id), None)

        fill = await run.eventually(fill_reported, run.STEP_TIMEOUT_S, "the Alpaca fill as a FillReported event")
        assert (fill.symbol, fill.quantity, fill.price) == ("AAA", float(order["qty"]), price)
        assert await asyncio.to_thread(run.interrupt) == 0  # the loop keeps serving the fakes while services stop
    output = run.log.read_text(errors="replace")
    assert "mode: Alpaca paper trading" in output and endpoints.stream_url in output and trading.url in output
    logs = [output, *(p.read_text(errors="replace") for p in run.service_logs.glob("*.log"))]
    assert len(logs) == 1 + len(SERVICES)
    assert not [text for text in logs if KEY in text or SECRET in text]
