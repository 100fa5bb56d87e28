"""Where a backtest's bars come from: the market data service's own sources.

``--data`` names a built-in real daily series (``sp500``, ``nasdaq``), ``synthetic`` (the seeded
generator of :mod:`ata.quant.synthetic` through marketdata's synthetic source), or a CSV/Parquet
OHLCV file (marketdata's file replay). Records then pass the same
:class:`~ata.marketdata.core.IntegrityChecker` as live: a bar the service would quarantine never
reaches a backtest either.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from ata.marketdata.core import RawBar, SessionCalendar, SourceItem
from ata.marketdata.core.records import NS_PER_DAY
from ata.marketdata.sources import DATASETS, DatasetReplay, FileReplay, HistoricalSource, SyntheticSource, synthetic_symbols
from ata.quant.synthetic import SyntheticConfig


@dataclass(frozen=True)
class DataSpec:
    """What to replay. ``start``/``end`` are ISO dates, inclusive, on bar close times (UTC)."""

    data: str
    symbols: tuple[str, ...] = ()
    start: str | None = None
    end: str | None = None
    seed: int = 0
    timeframe: str = "1d"
    synthetic_symbols: int = 3
    synthetic_bars: int = 20_000
    calendar: str = "XNYS"


def _day_ns(iso: str) -> int:
    return (date.fromisoformat(iso) - date(1970, 1, 1)).days * NS_PER_DAY


def build_calendar(spec: DataSpec) -> SessionCalendar | None:
    """The exchange calendar of the run (sessions, holidays), shared by the source and the integrity checks."""
    return SessionCalendar.from_exchange(spec.calendar, "1990-01-01") if spec.calendar else None


def build_source(spec: DataSpec, calendar: SessionCalendar | None) -> HistoricalSource:
    if spec.data in DATASETS:
        symbol = spec.symbols[0] if len(spec.symbols) == 1 else None
        return DatasetReplay(spec.data, calendar=calendar, symbol=symbol)
    if spec.data == "synthetic":
        names = list(spec.symbols) or synthetic_symbols(spec.synthetic_symbols)
        start = _day_ns(spec.start) if spec.start else _day_ns("2024-01-02")
        timeframe = spec.timeframe if spec.timeframe != "1d" else "1m"
        return SyntheticSource(SyntheticConfig(n_symbols=len(names), seed=spec.seed), symbols=names, timeframe=timeframe,
                               start_ns=start, calendar=calendar, max_bars=spec.synthetic_bars)
    path = Path(spec.data)
    if not path.exists():
        raise FileNotFoundError(f"--data {spec.data!r} is neither a dataset ({', '.join(DATASETS)}, synthetic) nor a file")
    return FileReplay([path], timeframe=spec.timeframe, calendar=calendar, symbols=spec.symbols or None)


def windowed(items: Iterator[SourceItem], start: str | None, end: str | None) -> Iterator[SourceItem]:
    """Records whose event time lies in ``[start, end]`` (end date inclusive); ``items`` itself without a window."""
    if start is None and end is None:
        return items
    return _within(items, _day_ns(start) if start else None, _day_ns(end) + NS_PER_DAY if end else None)


def _within(items: Iterator[SourceItem], lo: int | None, hi: int | None) -> Iterator[SourceItem]:
    for item in items:
        ts = item.ts_close if isinstance(item, RawBar) else item.ts
        if ts is None:
            yield item  # a malformed row: the integrity checker reports it
            continue
        if lo is not None and ts < lo:
            continue
        if hi is not None and ts >= hi:
            return
        yield item


def records(spec: DataSpec, calendar: SessionCalendar | None) -> Iterator[SourceItem]:
    """The run's source records, in event-time order, within the window (synthetic bars start at ``start``)."""
    source = build_source(spec, calendar)
    return windowed(iter(source), spec.start if spec.data != "synthetic" else None, spec.end)
