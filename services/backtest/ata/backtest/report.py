"""Backtest reports: JSON for machines, PNG charts, and one self-contained HTML page.

Every metric comes from :func:`ata.quant.metrics.summarize` over the recorded equity curve (one
point per bar time), the positions' market values (turnover, exposure) and the closed trades'
P&L (hit rate). The JSON carries those inputs too, so anyone can recompute the metrics from it.
Charts are drawn with matplotlib's Agg backend and embedded in the HTML as base64 PNG, so the
page needs no other file.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import jinja2
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import orjson
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ata.backtest.recorder import Records
from ata.quant.metrics import PerformanceSummary, drawdown_series, summarize

REGIME_COLOURS = {
    "bull_quiet": "#cdeccd", "bull_volatile": "#fde7b0", "sideways": "#e6e6e6", "bear_quiet": "#f9d3c4",
    "bear_volatile": "#f4b1a5", "crisis": "#e0707a",
}
#: Trades listed in the HTML (the JSON has all of them).
HTML_TRADES = 500
METRIC_ROWS = (
    ("cagr", "CAGR", "pct"), ("annual_volatility", "Volatility (annual)", "pct"), ("sharpe", "Sharpe", "num"),
    ("sortino", "Sortino", "num"), ("max_drawdown", "Max drawdown", "pct"), ("calmar", "Calmar", "num"),
    ("turnover_annual", "Turnover (annual)", "num"), ("hit_rate", "Hit rate", "pct"), ("exposure", "Exposure", "pct"),
    ("total_return", "Total return", "pct"), ("trades", "Closed trades", "int"), ("periods", "Periods", "int"),
)


def metrics_of(records: Records, periods_per_year: float) -> PerformanceSummary:
    """The run's headline metrics, by :func:`ata.quant.metrics.summarize`."""
    return summarize(records.equity, periods_per_year, positions=records.positions,
                     trade_pnls=np.asarray(records.trade_pnls, dtype=np.float64))


@dataclass(frozen=True)
class ReportFiles:
    directory: Path
    json: Path
    html: Path
    pngs: dict[str, Path]


def _dates(records: Records) -> np.ndarray[Any, np.dtype[np.datetime64]]:
    return records.timestamps.astype("datetime64[ns]")


def _regime_spans(records: Records) -> list[tuple[int, int, str]]:
    spans: list[tuple[int, int, str]] = []
    start = 0
    for i in range(1, len(records.regimes) + 1):
        if i == len(records.regimes) or records.regimes[i] != records.regimes[start]:
            spans.append((start, i - 1, records.regimes[start]))
            start = i
    return spans


def _equity_figure(records: Records) -> Figure:
    fig, ax = plt.subplots(figsize=(11, 4.2), dpi=100)
    dates = _dates(records)
    for lo, hi, label in _regime_spans(records):
        colour = REGIME_COLOURS.get(label)
        if colour is not None:
            ax.axvspan(dates[lo], dates[hi], color=colour, alpha=0.6, linewidth=0)
    ax.plot(dates, records.equity, color="#1f4e79", linewidth=1.2, label="equity")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.6) for c in REGIME_COLOURS.values()]
    ax.legend([ax.lines[0], *handles], ["equity", *REGIME_COLOURS], loc="upper left", fontsize=7, ncol=4)
    return _finish_time_axes(fig, ax, "Equity (background: confirmed market regime)", "account value")


def _finish_time_axes(fig: Figure, ax: Axes, title: str, ylabel: str) -> Figure:
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _drawdown_figure(records: Records) -> Figure:
    fig, ax = plt.subplots(figsize=(11, 2.6), dpi=100)
    dd = drawdown_series(records.equity)
    dates = _dates(records)
    ax.fill_between(dates, -dd * 100, 0, color="#b03a2e", alpha=0.6)
    return _finish_time_axes(fig, ax, "Drawdown", "% below peak")


def _attribution_figure(records: Records) -> Figure:
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    items = sorted(records.attribution.items(), key=lambda kv: kv[1])
    names = [k for k, _ in items] or ["(none)"]
    values = [v for _, v in items] or [0.0]
    ax.barh(names, values, color=["#2e7d32" if v >= 0 else "#b03a2e" for v in values])
    ax.set_title("P&L attribution by strategy")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _fmt(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if kind == "pct":
        return f"{value * 100:.2f} %"
    if kind == "int":
        return f"{int(value):,}"
    return f"{value:.3f}"


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value).__name__)


def write_report(records: Records, directory: Path, *, run: dict[str, Any], periods_per_year: float) -> ReportFiles:
    """Write ``report.json``, ``equity.png``, ``drawdown.png``, ``attribution.png`` and ``report.html`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    summary = metrics_of(records, periods_per_year)
    metrics = summary.to_dict()
    pngs = {"equity": _png(_equity_figure(records)), "drawdown": _png(_drawdown_figure(records)),
            "attribution": _png(_attribution_figure(records))}
    paths = {}
    for name, data in pngs.items():
        paths[name] = directory / f"{name}.png"
        paths[name].write_bytes(data)
    document = {
        "run": run, "metrics": metrics, "periods_per_year": periods_per_year,
        "curve": {"ts_ns": records.timestamps, "equity": records.equity, "regime": records.regimes},
        "positions": {"symbols": records.symbols, "market_value": records.positions},
        "trade_pnls": records.trade_pnls, "fills": records.fills, "orders": records.orders,
        "attribution": records.attribution, "attribution_by_regime": records.attribution_by_regime,
        "denials": records.denials, "messages": records.messages, "bars": records.bars,
    }
    json_path = directory / "report.json"
    json_path.write_bytes(orjson.dumps(document, default=_json_default,
                                       option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_INDENT_2))
    env = jinja2.Environment(loader=jinja2.PackageLoader("ata.backtest", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]))
    html = env.get_template("report.html.j2").render(
        run=run, metrics=[(label, _fmt(metrics.get(key), kind)) for key, label, kind in METRIC_ROWS],
        images={name: base64.b64encode(data).decode("ascii") for name, data in pngs.items()},
        fills=records.fills[:HTML_TRADES], fills_total=len(records.fills),
        attribution=sorted(records.attribution.items(), key=lambda kv: -kv[1]),
        by_regime={r: sorted(v.items(), key=lambda kv: -kv[1]) for r, v in sorted(records.attribution_by_regime.items())},
        denials=sorted(records.denials.items()), messages=sorted(records.messages.items()),
        ts=lambda ns: str(np.datetime64(int(ns), "ns"))[:19],
    )
    html_path = directory / "report.html"
    html_path.write_text(html, encoding="utf-8")
    return ReportFiles(directory, json_path, html_path, paths)
