"""``ata chaos``: list and run chaos scenarios (mounted through the ``ata.cli`` entry point)."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ata.chaos.runner import ChaosRun, Report
from ata.chaos.scenario import ScenarioError, load_scenario

app = typer.Typer(name="chaos", help="Chaos scenarios: faults against locally supervised services, steady-state verdicts.",
                  no_args_is_help=True)
DEFAULT_DIR = Path("chaos") / "scenarios"


def verdict_table(report: Report) -> Table:
    table = Table(title=f"chaos scenario {report.scenario}: {'PASSED' if report.passed else 'FAILED'}")
    for column in ("check", "expected", "observed", "verdict"):
        table.add_column(column)
    for check in report.checks:
        table.add_row(check.name, check.expected, check.observed, "[green]pass[/green]" if check.passed else "[red]FAIL[/red]")
    return table


@app.command("list")
def list_scenarios(
    directory: Annotated[Path, typer.Argument(help="directory of scenario files")] = DEFAULT_DIR,
) -> None:
    """Scenario files in DIRECTORY with their descriptions."""
    table = Table(title=str(directory))
    for column in ("scenario", "faults", "description"):
        table.add_column(column)
    for path in sorted(directory.glob("*.yaml")):
        try:
            scenario = load_scenario(path)
        except ScenarioError as exc:
            table.add_row(path.name, "-", f"[red]{exc}[/red]")
            continue
        table.add_row(scenario.name, ", ".join(f.kind.value for f in scenario.faults), scenario.description)
    Console().print(table)


@app.command("run")
def run(
    scenario_path: Annotated[Path, typer.Argument(metavar="SCENARIO", help="a scenario file (chaos/scenarios/*.yaml)")],
    json_path: Annotated[Path | None, typer.Option("--json", help="write the verdict as JSON here ('-' for stdout)")] = None,
    state_dir: Annotated[Path | None, typer.Option(help="the run's infrastructure and logs; default: a temp dir")] = None,
) -> None:
    """Run SCENARIO: steady state, faults, verdict table; exit 1 when any check fails."""
    console = Console(stderr=json_path == Path("-"))
    try:
        scenario = load_scenario(scenario_path)
    except ScenarioError as exc:
        console.print(str(exc), markup=False)
        raise typer.Exit(2) from None
    with tempfile.TemporaryDirectory(prefix=f"ata-chaos-{scenario.name}-") as tmp:
        directory = state_dir or Path(tmp)
        chaos = ChaosRun(scenario, directory, progress=lambda what: console.print(f"[dim]{what}[/dim]"))
        report = asyncio.run(chaos.run())
    console.print(verdict_table(report))
    if json_path is not None:
        text = json.dumps(report.to_json(), indent=2)
        if json_path == Path("-"):
            sys.stdout.write(text + "\n")
        else:
            json_path.write_text(text + "\n", encoding="utf-8")
    if not report.passed:
        raise typer.Exit(1)
