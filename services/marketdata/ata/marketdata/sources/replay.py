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
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ata.marketdata.core.calendar import SessionCalendar
from ata.marketdata.core.records import (
    F64,
    I64,
    NS_PER_DAY,
    SYMBOL_REGEX,
    BadRecord,
    BarBatch,
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

    def of_array(self, ts: I64) -> tuple[I64, I64]:
        """:meth:`of` over an array: ``(ts_open, ts_close)`` arrays."""
        if self.daily and self.calendar is not None:
            index = self.calendar.slots(ts, "1d")
            found = index >= 0
            opens, closes = self.calendar.bounds(np.where(found, index, 0))
            midnight = ts - ts % NS_PER_DAY
            return np.where(found, opens, midnight), np.where(found, closes, midnight + NS_PER_DAY)
        return ts, ts + self.bar_ns

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
        return None if converted is None else self._bars(converted, file_index=file_index, line_of=line_of)

    def _bars(self, columns: Columns, *, file_index: int,
              line_of: Callable[[int], str]) -> Iterator[tuple[int, int, int, SourceItem]]:
        times, wanted, source, timeframe = self.times, self.symbols, self.source, self.times.timeframe
        symbols: list[str] = columns.symbols.to_pylist()
        stamps: list[int] = columns.stamps.tolist()
        opens, highs, lows, closes, volumes = (values.tolist() for values in columns.numbers)
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


def _columnar_timestamps(column: pa.ChunkedArray) -> I64 | None:
    """Epoch ns of a timestamp, date or epoch-number column; ``None`` for anything else."""
    kind = column.type
    if pa.types.is_timestamp(kind):
        stamps: I64 = column.cast(pa.timestamp("ns", tz=kind.tz)).cast(pa.int64()).to_numpy()
        return stamps
    if pa.types.is_date32(kind):
        days: I64 = column.cast(pa.int32()).to_numpy().astype(np.int64)
        return days * NS_PER_DAY
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return epoch_array_to_ns(column.to_numpy())
    return None


class Columns(NamedTuple):
    """A clean table's bars as columns: normalised symbols, timestamps (ns), open/high/low/close/volume."""

    symbols: pa.Array
    stamps: I64
    numbers: list[F64]


def _columnar(table: pa.Table, columns: dict[str, int], default_symbol: str | None) -> Columns | None:
    """The columns of a clean table, else ``None`` (the row-by-row reader then gives the diagnostics)."""
    if table.num_rows == 0 or any(table.column(i).null_count for i in columns.values()):
        return None
    numbers: list[F64] = []
    for fld in ("open", "high", "low", "close", "volume"):
        column = table.column(columns[fld])
        if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
            return None
        values = column.to_numpy().astype(float)
        if not np.isfinite(values).all():
            return None
        numbers.append(values)
    stamps = _columnar_timestamps(table.column(columns["ts"]))
    if stamps is None:
        return None
    if "symbol" in columns:
        column = table.column(columns["symbol"])
        if not pa.types.is_string(column.type):
            return None
        normalised = pc.utf8_upper(pc.utf8_trim_whitespace(column)).combine_chunks()
        if not all(SYMBOL_REGEX.match(str(s)) for s in pc.unique(normalised).to_pylist()):
            return None
        symbols: pa.Array = normalised
    else:
        if not default_symbol or not SYMBOL_REGEX.match(default_symbol):
            return None
        symbols = pa.array([default_symbol] * table.num_rows)
    return Columns(symbols, stamps, numbers)


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

    def batches(self, rows_per_batch: int) -> Iterator[BarBatch] | None:
        """The same bars as ``iter(self)``, in the same order, as columnar batches of up to ``rows_per_batch`` rows.

        ``None`` when the columnar form does not apply and ``iter(self)`` must be used: a file needs the
        row-by-row reader (a value needing attention), or several files are not each in time order
        (their merge interleaves rows in a way only the record-by-record merge reproduces).
        """
        files: list[tuple[Columns, Callable[[int], str]]] = []
        for path, reader in zip(self.paths, self._readers, strict=True):
            if not path.exists():
                raise FileNotFoundError(f"replay file {path} does not exist")
            table = _read_table(path)
            try:
                columns = None if table is None else resolve_columns([str(name) for name in table.column_names])
            except ValueError:
                return None
            converted = None if table is None or columns is None else _columnar(table, columns, reader.default_symbol)
            if converted is None:
                return None
            where = str(path)
            files.append((converted, (lambda i, w=where: f"{w}:row {i + 1}") if _is_parquet(path) else
                          (lambda i, w=where: f"{w}:{i + 2}")))
        times = [self._times.of_array(columns.stamps) for columns, _ in files]
        if len(files) > 1 and any(np.any(np.diff(ts_open) < 0) for ts_open, _ in times):
            return None
        for (columns, _), reader in zip(files, self._readers, strict=True):
            reader.rows += len(columns.stamps)
        return self._batches(files, times, rows_per_batch)

    def _batches(self, files: list[tuple[Columns, Callable[[int], str]]], times: list[tuple[I64, I64]],
                 rows_per_batch: int) -> Iterator[BarBatch]:
        symbols: list[str] = []
        codes: dict[str, int] = {}
        parts: list[tuple[I64, ...]] = []
        for file_index, (columns, _) in enumerate(files):
            encoded = pc.dictionary_encode(columns.symbols)
            mapping = np.array([codes.setdefault(s, len(codes)) for s in encoded.dictionary.to_pylist()], dtype=np.int64)
            symbol_index = mapping[encoded.indices.to_numpy()]
            rows = np.arange(len(symbol_index), dtype=np.int64)
            parts.append((symbol_index, *times[file_index], np.full(len(rows), file_index, dtype=np.int64), rows))
        symbols = list(codes)
        symbol_index, ts_open, ts_close, file_of, row_of = (np.concatenate(column) for column in zip(*parts, strict=True))
        numbers = [np.concatenate([columns.numbers[k] for columns, _ in files]) for k in range(5)]
        order = np.lexsort((row_of, file_of, ts_open)) if len(files) > 1 else np.arange(len(ts_open))
        wanted = self._readers[0].symbols
        if wanted is not None:
            keep = np.isin(symbol_index, [code for symbol, code in codes.items() if symbol in wanted])
            order = order[keep[order]]
        line_of = [line for _, line in files]
        for start in range(0, len(order), rows_per_batch):
            chunk = order[start:start + rows_per_batch]
            files_of, rows_in_file = file_of[chunk], row_of[chunk]
            yield BarBatch(
                self.name, self._times.timeframe, self.name[:64], tuple(symbols), symbol_index[chunk], ts_open[chunk],
                ts_close[chunk], *(values[chunk] for values in numbers),
                location=lambda i, f=files_of, r=rows_in_file: line_of[f[i]](int(r[i])),
            )

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
        frame = self._load()
        stamps = frame.index.values.astype("datetime64[ns]").astype(np.int64).tolist()
        values = frame[["Open", "High", "Low", "Close", "Volume"]].to_numpy(dtype=float).tolist()
        for line, (ts, (o, h, low, c, v)) in enumerate(zip(stamps, values, strict=True), start=2):
            self.rows += 1
            ts_open, ts_close = self._times.of(ts)
            yield RawBar(self.name, self.symbol, "1d", ts_open, ts_close, o, h, low, c, v, venue=self.name,
                         location=f"{DATASETS[self.name][0]}:{line}")

    def batches(self, rows_per_batch: int) -> Iterator[BarBatch]:
        """The same bars as ``iter(self)``, in order, as columnar batches of up to ``rows_per_batch`` rows."""
        frame = self._load()
        ts_open, ts_close = self._times.of_array(frame.index.values.astype("datetime64[ns]").astype(np.int64))
        values = frame[["Open", "High", "Low", "Close", "Volume"]].to_numpy(dtype=float).T
        module = DATASETS[self.name][0]
        for start in range(0, len(ts_open), rows_per_batch):
            rows = slice(start, start + rows_per_batch)
            self.rows += len(ts_open[rows])
            yield BarBatch(self.name, "1d", self.name, (self.symbol,), np.zeros(len(ts_open[rows]), dtype=np.int64),
                           ts_open[rows], ts_close[rows], *(np.ascontiguousarray(column[rows]) for column in values),
                           location=lambda i, first=start: f"{module}:{first + i + 2}")

    def _load(self) -> Any:
        import importlib

        return importlib.import_module(DATASETS[self.name][0]).load()

    def health(self) -> dict[str, HealthValue]:
        return {"source": "dataset", "dataset": self.name, "rows_read": self.rows}
