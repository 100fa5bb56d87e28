"""Replay of OHLCV files (CSV or Parquet; one or many symbols; any bar size) and built-in datasets.

File format: a header row naming the columns (case-insensitive; aliases in
:data:`~ata.marketdata.core.records.COLUMN_ALIASES`): a timestamp (ISO date or datetime,
naive = UTC, or epoch s/ms/us/ns) that is the bar's *open* time, optional ``symbol``
(otherwise the configured default symbol or the file's stem), ``open``, ``high``, ``low``,
``close``, ``volume``. A daily bar's date is mapped to its session's open and close
(early closes included) when a calendar is configured.

Several files are merged by bar open time; within one file the file's order is kept, so
out-of-order rows reach the integrity checker as they are. A row that cannot be parsed
becomes a :class:`BadRecord` whose location is ``<path>:<line>`` (``<path>:row <n>`` for
Parquet); nothing is skipped silently.

Speed: a file is first read column-wise with pyarrow (C parsing, vectorised conversion).
Only when a value needs attention (a null or empty line, a non-numeric or non-finite number,
an unreadable timestamp, a bad symbol) is the file read again row by row with the exact
per-line diagnostics. Both paths yield the same records.
"""

from __future__ import annotations

import csv
import heapq
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ata.marketdata.core.calendar import SessionCalendar
from ata.marketdata.core.records import (
    NS_PER_DAY,
    SYMBOL_REGEX,
    BadRecord,
    ParsedRow,
    RawBar,
    SourceItem,
    epoch_array_to_ns,
    is_daily,
    parse_row,
    resolve_columns,
    timeframe_ns,
)
from ata.marketdata.sources.base import HealthValue

#: Built-in real daily series shipped with ``arch``: dataset name -> (module, symbol).
DATASETS: dict[str, tuple[str, str]] = {"sp500": ("arch.data.sp500", "SPX"), "nasdaq": ("arch.data.nasdaq", "IXIC")}


class BarTimes:
    """Turns a parsed timestamp into a bar's ``(ts_open, ts_close)``."""

    def __init__(self, timeframe: str, calendar: SessionCalendar | None) -> None:
        self.timeframe = timeframe
        self.bar_ns = timeframe_ns(timeframe)
        self.daily = is_daily(timeframe)
        self.calendar = calendar

    def of(self, ts: int) -> tuple[int, int]:
        if self.daily and self.calendar is not None:
            session = self.calendar.daily_bar_times(ts)
            if session is not None:
                return session
            midnight = ts - ts % NS_PER_DAY
            return midnight, midnight + NS_PER_DAY
        return ts, ts + self.bar_ns


class _RowReader:
    """Parsed rows of one file as ``(sort_ts, seq, item)``; bad rows sort at the last good time."""

    def __init__(self, source: str, times: BarTimes, default_symbol: str | None, symbols: frozenset[str] | None) -> None:
        self.source = source
        self.times = times
        self.default_symbol = default_symbol
        self.symbols = symbols
        self.rows = 0
        self.bad = 0

    def fast_items(self, table: pa.Table, file_index: int,
                   line_of: Callable[[int], str]) -> Iterator[tuple[int, int, int, SourceItem]] | None:
        """The records of a clean table, converted column-wise; ``None`` if the row-by-row parser is needed."""
        try:
            columns = resolve_columns([str(name) for name in table.column_names])
        except ValueError:
            return None
        converted = _columnar(table, columns, self.default_symbol)
        return None if converted is None else self._bars(*converted, file_index=file_index, line_of=line_of)

    def _bars(self, symbols: list[str], stamps: list[int], numbers: list[list[float]], *, file_index: int,
              line_of: Callable[[int], str]) -> Iterator[tuple[int, int, int, SourceItem]]:
        times, wanted, source, timeframe = self.times, self.symbols, self.source, self.times.timeframe
        opens, highs, lows, closes, volumes = numbers
        venue = source[:64]
        for i, symbol in enumerate(symbols):
            self.rows += 1
            if wanted is not None and symbol not in wanted:
                continue
            ts_open, ts_close = times.of(stamps[i])
            yield (ts_open, file_index, i, RawBar(source, symbol, timeframe, ts_open, ts_close, opens[i], highs[i], lows[i],
                                                  closes[i], volumes[i], venue=venue, location=line_of(i)))

    def items(self, rows: Iterable[tuple[str, Sequence[object]]], header: Sequence[object], where: str,
              file_index: int) -> Iterator[tuple[int, int, int, SourceItem]]:
        try:
            columns = resolve_columns([str(h) for h in header])
        except ValueError as exc:
            self.bad += 1
            yield (0, file_index, 0, BadRecord(self.source, f"{where}:1", str(exc)))
            return
        last_ts = 0
        for seq, (location, values) in enumerate(rows):
            self.rows += 1
            try:
                row: ParsedRow = parse_row(values, columns, self.default_symbol)
            except ValueError as exc:
                self.bad += 1
                yield (last_ts, file_index, seq, BadRecord(self.source, location, str(exc), symbol=self.default_symbol))
                continue
            if self.symbols is not None and row.symbol not in self.symbols:
                continue
            ts_open, ts_close = self.times.of(row.ts)
            last_ts = ts_open
            bar = RawBar(self.source, row.symbol, self.times.timeframe, ts_open, ts_close, row.open, row.high, row.low,
                         row.close, row.volume, venue=self.source[:64], location=location)
            yield (ts_open, file_index, seq, bar)


def _columnar_timestamps(column: pa.ChunkedArray) -> list[int] | None:
    """Epoch ns of a timestamp, date or epoch-number column; ``None`` for anything else."""
    kind = column.type
    if pa.types.is_timestamp(kind):
        stamps: list[int] = column.cast(pa.timestamp("ns", tz=kind.tz)).cast(pa.int64()).to_pylist()
        return stamps
    if pa.types.is_date32(kind):
        return [days * NS_PER_DAY for days in column.cast(pa.int32()).to_pylist()]
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        converted: list[int] = epoch_array_to_ns(column.to_numpy()).tolist()
        return converted
    return None


Columns = tuple[list[str], list[int], list[list[float]]]


def _columnar(table: pa.Table, columns: dict[str, int], default_symbol: str | None) -> Columns | None:
    """``(symbols, timestamps, [open, high, low, close, volume])`` of a clean table, else ``None``."""
    if table.num_rows == 0 or any(table.column(i).null_count for i in columns.values()):
        return None
    numbers: list[list[float]] = []
    for fld in ("open", "high", "low", "close", "volume"):
        column = table.column(columns[fld])
        if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
            return None
        values = column.to_numpy().astype(float)
        if not np.isfinite(values).all():
            return None
        numbers.append(values.tolist())
    stamps = _columnar_timestamps(table.column(columns["ts"]))
    if stamps is None:
        return None
    if "symbol" in columns:
        column = table.column(columns["symbol"])
        if not pa.types.is_string(column.type):
            return None
        normalised = pc.utf8_upper(pc.utf8_trim_whitespace(column))
        if not all(SYMBOL_REGEX.match(str(s)) for s in pc.unique(normalised).to_pylist()):
            return None
        symbols: list[str] = normalised.to_pylist()
    else:
        if not default_symbol or not SYMBOL_REGEX.match(default_symbol):
            return None
        symbols = [default_symbol] * table.num_rows
    return symbols, stamps, numbers


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _read_table(path: Path) -> pa.Table | None:
    """The whole file as a pyarrow table, or ``None`` when pyarrow cannot read it cleanly."""
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    try:
        if _is_parquet(path):
            return pq.read_table(path)
        return pa_csv.read_csv(path, parse_options=pa_csv.ParseOptions(ignore_empty_lines=False))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _csv_rows(path: Path) -> tuple[list[str], Iterator[tuple[str, Sequence[object]]]]:
    handle = path.open(newline="", encoding="utf-8")
    reader = csv.reader(handle)
    header = next(reader, None)

    def rows() -> Iterator[tuple[str, Sequence[object]]]:
        with handle:
            for values in reader:
                if values:
                    yield f"{path}:{reader.line_num}", values

    return (header or []), rows()


def _parquet_rows(path: Path) -> tuple[list[str], Iterator[tuple[str, Sequence[object]]]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]

    def rows() -> Iterator[tuple[str, Sequence[object]]]:
        for i, values in enumerate(zip(*columns, strict=True)):
            yield f"{path}:row {i + 1}", values

    return table.column_names, rows()


class FileReplay:
    """A :class:`~ata.marketdata.sources.base.HistoricalSource` over OHLCV files."""

    def __init__(self, paths: Sequence[Path], *, timeframe: str, dataset: str | None = None, calendar: SessionCalendar | None,
                 symbols: Iterable[str] | None = None, default_symbol: str | None = None) -> None:
        if not paths:
            raise ValueError("replay needs at least one file")
        self.paths = [Path(p) for p in paths]
        self.name = dataset or "+".join(p.stem for p in self.paths)
        wanted = frozenset(s.upper() for s in symbols) if symbols else None
        self._times = BarTimes(timeframe, calendar)
        self._readers = [_RowReader(self.name, self._times, default_symbol or p.stem.upper(), wanted) for p in self.paths]

    def __iter__(self) -> Iterator[SourceItem]:
        streams = []
        for index, (path, reader) in enumerate(zip(self.paths, self._readers, strict=True)):
            if not path.exists():
                raise FileNotFoundError(f"replay file {path} does not exist")
            streams.append(self._stream(path, reader, index))
        for _, _, _, item in heapq.merge(*streams, key=lambda entry: entry[:3]):
            yield item

    @staticmethod
    def _stream(path: Path, reader: _RowReader, index: int) -> Iterator[tuple[int, int, int, SourceItem]]:
        parquet = _is_parquet(path)
        table = _read_table(path)
        if table is not None:
            where = str(path)  # formatted once: str(Path) per row would cost more than the row
            line_of = (lambda i: f"{where}:row {i + 1}") if parquet else (lambda i: f"{where}:{i + 2}")
            fast = reader.fast_items(table, index, line_of)
            if fast is not None:
                return fast
        header, rows = _parquet_rows(path) if parquet else _csv_rows(path)
        return reader.items(rows, header, str(path), index)

    def health(self) -> dict[str, HealthValue]:
        return {"source": "replay", "dataset": self.name, "rows_read": sum(r.rows for r in self._readers),
                "bad_rows": sum(r.bad for r in self._readers)}


class DatasetReplay:
    """Replay of a built-in real daily series (``sp500`` or ``nasdaq`` from ``arch.data``), 1999-2018."""

    def __init__(self, dataset: str, *, calendar: SessionCalendar | None, symbol: str | None = None) -> None:
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; built-in: {', '.join(sorted(DATASETS))}")
        self.name = dataset
        self.symbol = symbol or DATASETS[dataset][1]
        self._times = BarTimes("1d", calendar)
        self.rows = 0

    def __iter__(self) -> Iterator[SourceItem]:
        import importlib

        frame = importlib.import_module(DATASETS[self.name][0]).load()
        stamps = frame.index.values.astype("datetime64[ns]").astype(np.int64).tolist()
        values = frame[["Open", "High", "Low", "Close", "Volume"]].to_numpy(dtype=float).tolist()
        for line, (ts, (o, h, low, c, v)) in enumerate(zip(stamps, values, strict=True), start=2):
            self.rows += 1
            ts_open, ts_close = self._times.of(ts)
            yield RawBar(self.name, self.symbol, "1d", ts_open, ts_close, o, h, low, c, v, venue=self.name,
                         location=f"{DATASETS[self.name][0]}:{line}")

    def health(self) -> dict[str, HealthValue]:
        return {"source": "dataset", "dataset": self.name, "rows_read": self.rows}
