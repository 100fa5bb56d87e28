"""The ``ata`` command: infra, topics, schemas, run, up, plus every ``ata.cli`` entry point.

Each installed service package may declare
``[project.entry-points."ata.cli"] <name> = "ata.<name>.cli:app"`` (a ``typer.Typer``); it is
mounted as ``ata <name> ...``. Services themselves are found through the ``ata.services``
entry-point group (``<name> = "ata.<name>.service:main"``).
"""

from __future__ import annotations

import sys
from importlib import metadata

import typer
from rich.console import Console

from ata.runtime import cli_infra, cli_schemas, cli_topics, cli_up

SERVICE_GROUP = "ata.services"
CLI_GROUP = "ata.cli"

app = typer.Typer(name="ata", help="AI Trading Agent: operate the platform.", no_args_is_help=True)
app.add_typer(cli_infra.app, name="infra")
app.add_typer(cli_topics.app, name="topics")
app.add_typer(cli_schemas.app, name="schemas")
app.command("up")(cli_up.up)
BUILTIN = {"infra", "topics", "schemas", "up", "run"}


def installed_services() -> dict[str, metadata.EntryPoint]:
    """Service name → entry point, for every installed service package."""
    return {ep.name: ep for ep in sorted(metadata.entry_points(group=SERVICE_GROUP), key=lambda ep: ep.name)}


@app.command()
def run(name: str) -> None:
    """Run one service in the foreground (what ``python -m ata.<name>`` does)."""
    services = installed_services()
    entry_point = services.get(name)
    if entry_point is None:
        Console(stderr=True).print(f"no service {name!r} installed; installed: {', '.join(services) or 'none'}")
        raise typer.Exit(2)
    entry_point.load()()


def mount_extensions(target: typer.Typer) -> None:
    """Mount every ``ata.cli`` entry point; a broken one is reported, not fatal."""
    for ep in sorted(metadata.entry_points(group=CLI_GROUP), key=lambda ep: ep.name):
        if ep.name in BUILTIN:
            print(f"ata: ignoring {CLI_GROUP} entry point {ep.name!r}: the name is a built-in command", file=sys.stderr)
            continue
        try:
            sub = ep.load()
        except Exception as exc:  # a broken service package must not take the whole CLI down
            print(f"ata: cannot load {CLI_GROUP} entry point {ep.name!r}: {exc}", file=sys.stderr)
            continue
        if isinstance(sub, typer.Typer):
            target.add_typer(sub, name=ep.name)
        else:
            print(f"ata: {CLI_GROUP} entry point {ep.name!r} is not a typer.Typer", file=sys.stderr)


def main() -> None:
    mount_extensions(app)
    app()


if __name__ == "__main__":
    main()
