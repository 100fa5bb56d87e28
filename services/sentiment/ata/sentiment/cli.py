"""``ata sentiment ...``: accuracy on the shipped fixtures and the news-impact event study."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from ata.sentiment.core import Scorer
from ata.sentiment.core.impact import (
    FloatArray,
    GroupSummary,
    NewsEvent,
    StudyParams,
    event_study,
    summarize,
    synthetic_closes,
)
from ata.sentiment.evaluation import LABELS, evaluate
from ata.sentiment.fixtures import labelled_headlines

app = typer.Typer(name="sentiment", help="Sentiment: evaluate the scorer, study news impact.", no_args_is_help=True)
console = Console()

#: The synthetic calendar closes every weekday at 21:00 UTC (16:00 New York in winter).
CLOSE_HOUR_UTC = 21
#: Synthetic news effect on day 0 by true label (the event study should recover it).
DEFAULT_IMPACT = {"positive": 0.02, "negative": -0.025, "neutral": 0.0}


@app.command("evaluate")
def evaluate_command() -> None:
    """3-class accuracy on the dev half (used to build the phrase layer) and the held-out half."""
    results = evaluate(Scorer())
    table = Table(title="Sentiment accuracy on the shipped fixtures")
    for column in ("split", "items", "correct", "accuracy"):
        table.add_column(column, justify="right")
    for name, r in results.items():
        table.add_row(name, str(r.total), str(r.correct), f"{r.accuracy:.1%}")
    console.print(table)
    for name, r in results.items():
        confusion = Table(title=f"{name}: true label (rows) x scored label (columns)")
        confusion.add_column("")
        for label in LABELS:
            confusion.add_column(label, justify="right")
        for truth in LABELS:
            confusion.add_row(truth, *(str(r.confusion.get((truth, p), 0)) for p in LABELS))
        console.print(confusion)


def weekday_closes(first: date, last: date) -> list[int]:
    closes, day = [], first
    while day <= last:
        if day.weekday() < 5:
            closes.append(int(datetime(day.year, day.month, day.day, CLOSE_HOUR_UTC, tzinfo=UTC).timestamp()) * 10**9)
        day += timedelta(days=1)
    return closes


def load_bars(path: Path, market_symbol: str) -> tuple[list[int], dict[str, FloatArray], FloatArray]:
    """CSV with ``date`` (YYYY-MM-DD, closes at the calendar's hour) or ``ts_ns``, ``symbol``, ``close``; one
    symbol is the market. Symbols are aligned on the market's dates (missing closes are NaN)."""
    rows: dict[str, dict[int, float]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            try:
                if row.get("ts_ns"):
                    ts = int(row["ts_ns"])
                else:
                    d = date.fromisoformat(row["date"])
                    ts = int(datetime(d.year, d.month, d.day, CLOSE_HOUR_UTC, tzinfo=UTC).timestamp()) * 10**9
                rows.setdefault(row["symbol"].upper(), {})[ts] = float(row["close"])
            except (KeyError, ValueError) as exc:
                raise typer.BadParameter(f"{path}:{number}: {exc}") from None
    market = rows.pop(market_symbol.upper(), None)
    if market is None:
        raise typer.BadParameter(f"{path}: no rows for the market symbol {market_symbol}")
    times = sorted(market)
    closes = {s: np.array([v.get(t, np.nan) for t in times], dtype=np.float64) for s, v in rows.items()}
    return times, closes, np.array([market[t] for t in times], dtype=np.float64)


def _table(title: str, summaries: list[GroupSummary], horizon: int) -> Table:
    table = Table(title=title)
    table.add_column("group")
    table.add_column("events", justify="right")
    for t in (0, 1, horizon):
        table.add_column(f"CAR[0..{t}]", justify="right")
    table.add_column("t-stat", justify="right")
    for s in summaries:
        table.add_row(s.key, str(s.count), *(f"{100 * s.mean_car[t]:+.2f}%" for t in (0, 1, horizon)), f"{s.t_stat:+.2f}")
    return table


@app.command("impact")
def impact_command(
    *,
    out: Annotated[Path, typer.Option(help="PNG plot of mean CAR paths")] = Path("sentiment-impact.png"),
    bars: Annotated[Path | None, typer.Option(help="CSV bars (date|ts_ns, symbol, close); default: seeded synthetic")] = None,
    market_symbol: Annotated[str, typer.Option(help="the market's symbol in --bars")] = "SPY",
    seed: Annotated[int, typer.Option(help="seed of the synthetic bars")] = 7,
    delay_ms: Annotated[int, typer.Option(help="availability delay after publication")] = 60_000,
    horizon_days: Annotated[int, typer.Option(min=1)] = 5,
    estimation_days: Annotated[int, typer.Option(min=20)] = 120,
) -> None:
    """Event study of abnormal returns after the shipped news, by source, category and scored sentiment."""
    rows = labelled_headlines()
    scorer = Scorer()
    events = []
    for row in rows:
        scored = scorer.score(row.article.headline)
        for symbol in row.article.symbols:
            events.append(NewsEvent(symbol, row.article.published_ns + delay_ms * 1_000_000, row.article.news_source,
                                    row.article.category, row.label, scored.score))
    if bars is None:
        first = datetime.fromtimestamp(rows[0].article.published_ns / 1e9, UTC).date() - timedelta(days=400)
        last = datetime.fromtimestamp(rows[-1].article.published_ns / 1e9, UTC).date() + timedelta(days=30)
        times = weekday_closes(first, last)
        symbols = sorted({e.symbol for e in events})
        closes, market, _ = synthetic_closes(times, symbols, events, seed=seed, impact_by_label=DEFAULT_IMPACT)
        console.print(f"synthetic bars: {len(times)} weekdays, {len(symbols)} symbols, seed {seed}, "
                      f"true day-0 effects by label {DEFAULT_IMPACT}")
    else:
        times, closes, market = load_bars(bars, market_symbol)
    params = StudyParams(estimation_days=estimation_days, horizon_days=horizon_days, min_estimation=estimation_days // 2)
    study = event_study(times, closes, market, events, params)
    console.print(f"{len(study.results)} events studied, {study.skipped} skipped (not enough bars around them)")
    scored_label: Callable[[NewsEvent], str] = lambda e: scorer.label(e.score).value  # noqa: E731
    groupings: list[tuple[str, Callable[[NewsEvent], str]]] = [
        ("scored sentiment", scored_label), ("source", lambda e: e.source), ("category", lambda e: e.category),
    ]
    summaries = {name: summarize(study.results, key) for name, key in groupings}
    for name, summary in summaries.items():
        console.print(_table(f"Mean cumulative abnormal return by {name}", summary, horizon_days))
    _plot(out, summaries, horizon_days)
    console.print(f"plot written to {out}")


def _plot(out: Path, summaries: dict[str, list[GroupSummary]], horizon: int) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display; select before pyplot is imported
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    days = np.arange(horizon + 1)
    for s in summaries["scored sentiment"]:
        axes[0].plot(days, 100 * s.mean_car, marker="o", label=f"{s.key} (n={s.count})")
    axes[0].axhline(0, color="grey", linewidth=0.8)
    axes[0].set(title="Mean CAR after news, by scored sentiment", xlabel="trading days after availability", ylabel="CAR %")
    axes[0].legend()
    categories = summaries["category"]
    axes[1].barh([s.key for s in categories], [100 * s.mean_car[-1] for s in categories])
    axes[1].axvline(0, color="grey", linewidth=0.8)
    axes[1].set(title=f"Mean CAR[0..{horizon}] by category", xlabel="CAR %")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
