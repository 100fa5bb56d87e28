"""``ata infra up|down|status``: the embedded broker and Redis."""

from __future__ import annotations

import contextlib
import socket

import typer
from rich.console import Console
from rich.table import Table

from ata.runtime import infra
from ata.runtime.cli_common import console as make_console
from ata.runtime.cli_common import external_endpoints, state_dir

app = typer.Typer(help="Embedded infrastructure: a Kafka-protocol broker (Tansu) and Redis.", no_args_is_help=True)


def answers(address: str) -> bool:
    """Whether ``host:port`` (or a ``redis://host:port/db`` URL) accepts a TCP connection now."""
    hostport = address.split("://", 1)[-1].split("/", 1)[0].split(",", 1)[0]
    host, _, port = hostport.rpartition(":")
    with contextlib.suppress(OSError, ValueError), socket.create_connection((host, int(port)), timeout=1):
        return True
    return False


def print_state(console: Console, state: infra.InfraState) -> None:
    table = Table(title=f"infrastructure ({state_dir()})")
    for column in ("component", "address", "pid", "process alive", "answers"):
        table.add_column(column)
    for name, address, pid in (("kafka", state.kafka_bootstrap, state.broker_pid), ("redis", state.redis_url, state.redis_pid)):
        alive = "external" if pid is None else ("yes" if infra.pid_alive(pid) else "NO")
        table.add_row(name, address, str(pid or "-"), alive, "yes" if answers(address) else "NO")
    console.print(table)


@app.command()
def up(
    kafka_port: int = typer.Option(0, help="broker port (0: a free one)"),
    redis_port: int = typer.Option(0, help="Redis port (0: a free one)"),
) -> None:
    """Start the broker and Redis (unless ATA_KAFKA_BOOTSTRAP / ATA_REDIS_URL are set) and record them."""
    kafka, redis = external_endpoints()
    state = infra.up(state_dir(), kafka_port=kafka_port or None, redis_port=redis_port or None,
                     kafka_bootstrap=kafka, redis_url=redis)
    console = make_console()
    print_state(console, state)
    console.print(f"export ATA_KAFKA_BOOTSTRAP={state.kafka_bootstrap} ATA_REDIS_URL={state.redis_url}")


@app.command()
def down() -> None:
    """Stop what ``up`` started (SIGTERM, then SIGKILL) and forget it."""
    stopped = infra.down(state_dir())
    message = "nothing was running" if stopped is None else f"stopped pids {stopped.owned_pids() or '(external only)'}"
    make_console().print(message)


@app.command()
def status() -> None:
    """Show the recorded endpoints, pids and whether they are alive. Exits 1 if something is down."""
    state = infra.InfraState.load(state_dir())
    console = make_console()
    if state is None:
        console.print(f"no infrastructure recorded in {state_dir()}")
        raise typer.Exit(1)
    print_state(console, state)
    healthy = all(infra.pid_alive(p) for p in state.owned_pids()) and answers(state.kafka_bootstrap) and answers(state.redis_url)
    if not healthy:
        raise typer.Exit(1)
