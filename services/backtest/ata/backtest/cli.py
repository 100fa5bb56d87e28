"""``ata backtest``: run the platform's cores over historical or synthetic data and write a report.

Examples::

    ata backtest --data sp500 --from 2005-01-01 --to 2012-12-31
    ata backtest --data synthetic --symbols SYN000,SYN001 --bars 20000 --seed 7 --config backtest.toml
    ata backtest --data bars/aapl.csv --timeframe 1d --out reports/aapl

The report (``report.html``, ``report.json``, PNGs) goes to ``--out``, by default
``reports/<data>-<seed>-<config hash>``.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ata.backtest.config import BacktestConfig
from ata.backtest.data import DataSpec
from ata.backtest.engine import run_backtest
from ata.backtest.news import load_news
from ata.backtest.report import metrics_of, write_report

app = typer.Typer(name="backtest", help="Backtest the platform's cores over historical or synthetic bars.",
                  invoke_without_command=True)


@app.callback()
def backtest(
    *,
    data: Annotated[str, typer.Option("--data", help="sp500 | nasdaq | synthetic | a CSV/Parquet OHLCV file")] = "sp500",
    symbols: Annotated[str, typer.Option("--symbols", help="comma-separated symbols (default: all in the data)")] = "",
    start: Annotated[str | None, typer.Option("--from", help="first date (ISO), inclusive")] = None,
    end: Annotated[str | None, typer.Option("--to", help="last date (ISO), inclusive")] = None,
    config: Annotated[Path | None, typer.Option("--config", exists=True, dir_okay=False, help="TOML or JSON config")] = None,
    seed: Annotated[int, typer.Option("--seed", help="seed of the synthetic generator")] = 0,
    bars: Annotated[int, typer.Option("--bars", help="synthetic: bars to generate (all symbols together)")] = 20_000,
    timeframe: Annotated[str, typer.Option("--timeframe", help="bar size of a data file (synthetic: 1m)")] = "1d",
    calendar: Annotated[str, typer.Option("--calendar", help="exchange calendar; '' for 24/7")] = "XNYS",
    news: Annotated[Path | None, typer.Option("--news", exists=True, dir_okay=False, help="JSONL/CSV headlines")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="report directory (default reports/<run>)")] = None,
) -> None:
    """Run one backtest with a progress bar, print the metrics and write the report."""
    console = Console()
    cfg = BacktestConfig.load(config)
    spec = DataSpec(data=data, symbols=tuple(s.strip().upper() for s in symbols.split(",") if s.strip()), start=start,
                    end=end, seed=seed, timeframe=timeframe, synthetic_bars=bars, calendar=calendar)
    digest = hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()[:8]
    name = f"{Path(data).stem}-{seed}-{digest}"
    directory = out or Path("reports") / name
    items = load_news(news, spec) if news is not None else []
    columns = (TextColumn("[bold]backtest[/bold] {task.fields[name]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("run", total=bars if data == "synthetic" else None, name=name, rate="")

        def advance(done: int) -> None:
            elapsed = progress.tasks[task].elapsed or 0.0
            progress.update(task, completed=done, rate=f"{done / elapsed:,.0f} bars/s" if elapsed else "")

        records, stats = asyncio.run(run_backtest(spec, cfg, news=items, progress=advance))
    if records.equity.size < 2:
        console.print("[red]fewer than two bar times in the window: nothing to report[/red]")
        raise typer.Exit(1)
    run = {"name": name, "data": data, "symbols": records.symbols, "seed": seed, "stages": cfg.stages_in_order(),
           "start": str(records.timestamps[0].astype("datetime64[ns]"))[:10],
           "end": str(records.timestamps[-1].astype("datetime64[ns]"))[:10], "bars": stats.bars, "seconds": stats.seconds,
           "config": cfg.model_dump(mode="json")}
    files = write_report(records, directory, run=run, periods_per_year=cfg.periods_per_year)
    summary = metrics_of(records, cfg.periods_per_year).to_dict()
    table = Table(title=f"backtest {name}: {stats.bars:,} bars, {stats.bars_per_second:,.0f} bars/s")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("total_return", "cagr", "annual_volatility", "sharpe", "sortino", "max_drawdown", "calmar",
                "turnover_annual", "hit_rate", "exposure", "trades"):
        value = summary[key]
        table.add_row(key, "n/a" if value is None else f"{value:,.4f}")
    console.print(table)
    console.print(f"report: {files.html}  (json: {files.json})")
