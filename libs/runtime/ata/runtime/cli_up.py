"""``ata up`` (what ``make run`` runs): infra up → provision topics → supervise every service.

Ctrl-C (SIGINT) or SIGTERM stops every service (SIGTERM, 10 s, SIGKILL) and then stops the
infrastructure, unless it was already running before ``ata up`` (then it is left running).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from ata.runtime import infra
from ata.runtime.cli_common import console as make_console
from ata.runtime.cli_common import external_endpoints, state_dir
from ata.runtime.supervisor import ChildSpec, Supervisor, run_until_signalled, status_table

READY_LINE = "platform running; Ctrl-C stops it"


def service_specs(names: list[str], state: infra.InfraState, directory: Path) -> list[ChildSpec]:
    """One child per service: ``python -m ata.runtime.cli run <name>`` against the given infra."""
    env = {"ATA_KAFKA_BOOTSTRAP": state.kafka_bootstrap, "ATA_REDIS_URL": state.redis_url, "ATA_STATE_DIR": str(directory)}
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
) -> None:
    """Start infra, provision topics, run every installed service under the supervisor; Ctrl-C stops all."""
    console = make_console()
    names = _select(services)
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
        supervisor = Supervisor(service_specs(names, state, directory), log_dir=directory / "logs" / "services")
        asyncio.run(_supervise(console, supervisor))
        console.print("services stopped")
    finally:
        if not already_running:
            infra.down(directory)
            console.print("infrastructure stopped")


async def _supervise(console: Console, supervisor: Supervisor) -> None:
    def table() -> Table:
        return status_table(supervisor.snapshot(), time.monotonic(), title="ata up — services")

    console.print(READY_LINE)
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
