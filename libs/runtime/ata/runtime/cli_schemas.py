"""``ata schemas write|check``: the published JSON Schemas and AsyncAPI document."""

from __future__ import annotations

from pathlib import Path

import typer

from ata.runtime import schemas
from ata.runtime.cli_common import console as make_console

app = typer.Typer(help="JSON Schema per message type and schemas/asyncapi.yaml.", no_args_is_help=True)

DIR_OPTION = typer.Option(Path("schemas"), "--dir", help="schema directory")


@app.command()
def write(directory: Path = DIR_OPTION) -> None:
    """Render every schema into DIR; report changes and incompatibilities with the previous version."""
    console = make_console()
    previous = schemas.baseline(directory)
    rendered = schemas.render()
    result = schemas.write(directory, rendered)
    for name in result.written:
        console.print(f"wrote {directory / name}")
    for name in result.removed:
        console.print(f"removed {directory / name}")
    if not result.written and not result.removed:
        console.print(f"{directory} is up to date ({len(rendered)} files)")
    for issue in schemas.check_compatibility(previous.files, rendered):
        console.print(f"[yellow]incompatible with {previous.origin}:[/yellow] {issue}")


@app.command()
def check(
    directory: Path = DIR_OPTION,
    against: str = typer.Option("HEAD", help="git revision holding the previous schemas"),
) -> None:
    """Fail (exit 1) if DIR is stale or the code's schemas are incompatible with the committed ones."""
    console = make_console(stderr=True)
    rendered = schemas.render()
    failed = False
    stale = schemas.stale_files(directory, rendered)
    if stale:
        failed = True
        console.print(f"{directory} is stale; run `make schemas`. Files: " + ", ".join(str(directory / n) for n in stale))
    previous = schemas.baseline(directory, against)
    issues = schemas.check_compatibility(previous.files, rendered)
    for issue in issues:
        failed = True
        console.print(f"incompatible with {previous.origin}: {issue}")
    if failed:
        raise typer.Exit(1)
    make_console().print(f"{directory}: {len(rendered)} files up to date and compatible with {previous.origin}")
