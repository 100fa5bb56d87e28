"""``ata up`` (what ``make run`` runs): infra up → provision topics → supervise every service.

Out of the box it paper trades: market data replays synthetic multi-symbol bars (or, with
``--data sp500``, the shipped S&P 500 series) at ``--speed``, execution trades through the
in-process simulated broker on market time, and the journal writes to the state directory.
With Alpaca keys in the environment (``APCA_API_KEY_ID``, ``APCA_API_SECRET_KEY``) it trades on
the Alpaca paper account instead, on live Alpaca bars (:mod:`ata.runtime.up_modes`; the
``--data/--speed/--symbols`` options are then unused). The mode is printed first; one key
without the other stops ``ata up`` before anything starts. A mode is environment defaults for
every child; a variable already set in the environment wins. A service that refuses its
configuration is not restarted: ``ata up`` stops everything, prints the service's problems (the
variables named) and exits with code 2.

Ctrl-C (SIGINT) or SIGTERM stops every service (SIGTERM, 10 s, SIGKILL) and then stops the
infrastructure, unless it was already running before ``ata up`` (then it is left running).
The live table shows each service's state, restarts and readiness, and below it the paper
account as risk reports it on ``/metrics`` (equity, trading state).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import aiohttp
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from ata.runtime import infra
from ata.runtime.cli_common import console as make_console
from ata.runtime.cli_common import external_endpoints, state_dir
from ata.runtime.supervisor import CONFIG_ERROR_EXIT, ChildSpec, Supervisor, run_until_signalled, status_table
from ata.runtime.up_modes import DEFAULT_SPEED, ModeError, describe, run_mode

READY_LINE = "platform running; Ctrl-C stops it"
TRADING_STATES = {0: "ACTIVE", 1: "REDUCING", 2: "HALTED"}
ACCOUNT_POLL_S = 2.0


def service_specs(names: list[str], state: infra.InfraState, directory: Path,
                  defaults: Mapping[str, str] | None = None, forced: Mapping[str, str] | None = None) -> list[ChildSpec]:
    """One child per service: ``python -m ata.runtime.cli run <name>`` against the given infra.

    ``defaults`` are passed where the environment does not set the variable already, ``forced`` always.
    """
    env = {k: v for k, v in (defaults or {}).items() if k not in os.environ} | dict(forced or {})
    env |= {"ATA_KAFKA_BOOTSTRAP": state.kafka_bootstrap, "ATA_REDIS_URL": state.redis_url, "ATA_STATE_DIR": str(directory)}
    return [ChildSpec(name, (sys.executable, "-m", "ata.runtime.cli", "run", name), env) for name in names]


def _select(services: str | None) -> list[str]:
    from ata.runtime.cli import installed_services

    installed = list(installed_services())
    if services is None:
        return installed
    wanted = [s.strip() for s in services.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(installed))
    if unknown:
        raise typer.BadParameter(f"not installed: {', '.join(unknown)} (installed: {', '.join(installed) or 'none'})")
    return wanted


def _provision(console: Console, bootstrap: str) -> None:
    from ata.runtime.kafka import ProvisionError, provision_topics

    try:
        report = provision_topics(bootstrap)
    except ProvisionError as exc:
        console.print(f"[yellow]topic provisioning incomplete:[/yellow] {exc}")
        return
    console.print(f"topics: {len(report.created)} created, {len(report.existing)} already present")


def up(
    services: str | None = typer.Option(None, "--services", help="comma-separated subset of installed services; '' for none"),
    provision: bool = typer.Option(True, "--provision/--no-provision", help="create the registry's topics first"),
    data: str = typer.Option("synthetic", "--data", help="market data to replay: synthetic (multi-symbol) or sp500"),
    speed: float | None = typer.Option(None, "--speed", min=0.0,
                                       help="replay speed factor (60: a minute per second; 0: as fast as possible)"),
    symbols: int = typer.Option(5, "--symbols", min=1, help="number of synthetic symbols"),
) -> None:
    """Start infra, provision topics, run every installed service under the supervisor; Ctrl-C stops all."""
    console = make_console()
    names = _select(services)
    if data not in DEFAULT_SPEED:
        raise typer.BadParameter(f"--data must be one of {', '.join(DEFAULT_SPEED)}")
    try:
        mode = run_mode(os.environ, data, speed, symbols)
    except ModeError as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(CONFIG_ERROR_EXIT) from None
    console.print(describe(mode, os.environ))
    directory = state_dir()
    previous = infra.InfraState.load(directory)
    already_running = previous is not None and all(infra.pid_alive(p) for p in previous.owned_pids())
    kafka, redis = external_endpoints()
    state = infra.up(directory, kafka_bootstrap=kafka, redis_url=redis)
    try:
        console.print(f"infrastructure: kafka {state.kafka_bootstrap}, redis {state.redis_url}"
                      + (" (already running)" if already_running else ""))
        if provision:
            _provision(console, state.kafka_bootstrap)
        specs = service_specs(names, state, directory, mode.defaults, mode.forced)
        logs = directory / "logs" / "services"
        supervisor = Supervisor(specs, log_dir=logs)
        asyncio.run(_supervise(console, supervisor))
        console.print("services stopped")
        for name in supervisor.failed():
            console.print(f"[red]{name} refused its configuration:[/red] {config_refusal(logs / f'{name}.log')}")
        if supervisor.failed():
            raise typer.Exit(CONFIG_ERROR_EXIT)
    finally:
        if not already_running:
            infra.down(directory)
            console.print("infrastructure stopped")


def config_refusal(log: Path) -> str:
    """The problems of the last ``configuration refused`` record in a service's JSON log (variables named, no values)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    for line in reversed(text.splitlines()):
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and str(record.get("msg", "")).startswith("configuration refused"):
                return "; ".join(map(str, record.get("problems") or [record["msg"]]))
    return f"see {log}"


def account_line(metrics_text: str) -> str:
    """``equity … · trading …`` from risk's Prometheus text (``ata_risk_equity``, ``ata_risk_trading_state``)."""
    values: dict[str, float] = {}
    for line in metrics_text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("ata_risk_equity", "ata_risk_trading_state"):
            with contextlib.suppress(ValueError):
                values[name] = float(value)
    if not values:
        return ""
    equity = values.get("ata_risk_equity")
    state = values.get("ata_risk_trading_state")
    return " · ".join([f"equity {equity:,.2f}" if equity is not None else "equity ?",
                       f"trading {TRADING_STATES.get(int(state), '?') if state is not None else '?'}"])


async def _follow_account(supervisor: Supervisor, account: list[str]) -> None:
    """Keep ``account[0]`` up to date from risk's ``/metrics`` (empty while risk is not up)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0)) as session:
        while True:
            risk = next((s for s in supervisor.snapshot() if s.name == "risk" and s.http_port), None)
            if risk is not None:
                try:
                    async with session.get(f"http://127.0.0.1:{risk.http_port}/metrics") as response:
                        account[0] = account_line(await response.text())
                except (aiohttp.ClientError, TimeoutError):
                    account[0] = ""
            await asyncio.sleep(ACCOUNT_POLL_S)


async def _supervise(console: Console, supervisor: Supervisor) -> None:
    account = [""]
    follower = asyncio.create_task(_follow_account(supervisor, account))

    def table() -> Table:
        t = status_table(supervisor.snapshot(), time.monotonic(), title="ata up — services")
        t.caption = account[0] or None
        return t

    console.print(READY_LINE)
    try:
        if console.is_terminal:
            with Live(table(), console=console, refresh_per_second=4) as live:
                await run_until_signalled(supervisor, lambda: live.update(table()))
            return
        last: list[tuple[object, ...]] | None = None

        def print_on_change() -> None:
            nonlocal last
            now: list[tuple[object, ...]] = [(s.name, s.state, s.pid, s.restarts, s.ready) for s in supervisor.snapshot()]
            if now != last:
                console.print(table())
                last = now

        await run_until_signalled(supervisor, print_on_change)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
