"""``ata regime ...``: evaluation against the synthetic ground truth, and seasonality reports."""

from __future__ import annotations

from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from ata.regime.core.seasonality import SeasonalEffect, seasonality_report
from ata.regime.evaluation import CLASSES, Evaluation, evaluate, keys_in_order

app = typer.Typer(help="Regime detection tools.", no_args_is_help=True)


def _matrix_table(title: str, matrix: dict[tuple[str, str], int]) -> Table:
    table = Table(title=title)
    table.add_column("truth \\ predicted")
    for p in CLASSES:
        table.add_column(p, justify="right")
    for t in CLASSES:
        table.add_row(t, *(str(matrix[(t, p)]) for p in CLASSES))
    table.caption = f"accuracy {Evaluation.accuracy_of(matrix):.2%} over {sum(matrix.values())} bars"
    return table


@app.command("evaluate")
def evaluate_command(
    symbols: Annotated[int, typer.Option(help="number of synthetic symbols")] = 2,
    bars: Annotated[int, typer.Option(help="bars per symbol (one-minute bars)")] = 40_000,
    seed: Annotated[int, typer.Option(help="generator seed")] = 7,
    warmup: Annotated[int | None, typer.Option(help="bars excluded from scoring (default: first fit + one refit period)")] = None,
    min_accuracy: Annotated[float, typer.Option(help="exit with status 1 below this accuracy")] = 0.9,
) -> None:
    """Run detection over the seeded synthetic market and print confusion matrices of the volatility regime."""
    console = Console()
    result = evaluate(n_symbols=symbols, n_bars=bars, seed=seed, warmup_bars=warmup)
    console.print(f"synthetic market: {symbols} symbols x {bars} bars, seed {seed}, warm-up {result.warmup_bars} bars")
    for key in keys_in_order(result):
        console.print(_matrix_table(f"{key}: confirmed label", result.matrices[key]))
    console.print(_matrix_table("all keys: confirmed label", result.total()))
    console.print(_matrix_table("all keys: raw (unconfirmed) label", result.total(raw=True)))
    accuracy = result.accuracy()
    console.print(f"volatility-regime accuracy (confirmed): {accuracy:.4f}")
    if accuracy < min_accuracy:
        raise typer.Exit(1)


def _effect_table(effect: SeasonalEffect) -> Table:
    table = Table(title=f"{effect.grouping}: Kruskal-Wallis p={effect.kruskal_p:.4g}, ANOVA p={effect.anova_p:.4g}")
    for column in ("group", "bars", "mean return %", "t"):
        table.add_column(column, justify="right")
    for g in effect.groups:
        table.add_row(g.name, str(g.count), f"{g.mean:.4f}", f"{g.t_stat:.2f}")
    table.caption = "significant" if effect.significant else "not significant"
    return table


@app.command("seasonality")
def seasonality_command(
    dataset: Annotated[str, typer.Option(help="built-in daily series: sp500 or nasdaq")] = "sp500",
    alpha: Annotated[float, typer.Option(help="significance level")] = 0.05,
) -> None:
    """Day-of-week and month-of-year effects of a built-in daily series, with their significance."""
    from arch.data import nasdaq, sp500

    loaders = {"sp500": sp500.load, "nasdaq": nasdaq.load}
    if dataset not in loaders:
        raise typer.BadParameter(f"unknown dataset {dataset!r}; choose from {sorted(loaders)}")
    close = loaders[dataset]()["Adj Close"]
    returns = 100.0 * np.diff(np.log(close.to_numpy()))
    ts = [int(t.value) for t in close.index[1:]]
    console = Console()
    for effect in seasonality_report(ts, returns, alpha):
        console.print(_effect_table(effect))
