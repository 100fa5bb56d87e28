"""Raw source records, before any validation, and the pure parsing of one file row.

A source yields :data:`SourceItem` s. Nothing here enforces OHLC consistency or positive
prices: a record that would fail :class:`ata.events.BarClosed` validation must still be
representable so the integrity checker can detect it, report it and quarantine it.
A row that cannot even be read as numbers becomes a :class:`BadRecord` naming its location.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from ata.events.values import SYMBOL_PATTERN

NS_PER_S = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_S
_UNIT_NS = {"s": NS_PER_S, "m": 60 * NS_PER_S, "h": 3_600 * NS_PER_S, "d": NS_PER_DAY, "w": 7 * NS_PER_DAY}
_TIMEFRAME = re.compile(r"^([0-9]+)(s|m|h|d|w)$")
SYMBOL_REGEX = re.compile(SYMBOL_PATTERN)


class MalformedRecordError(ValueError):
    """A source row could not be parsed and the configuration says stop. The message names file and line."""

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(f"{location}: {reason}")
        self.location = location
        self.reason = reason


@functools.lru_cache(maxsize=64)
def timeframe_ns(timeframe: str) -> int:
    """Length of a bar in ns: ``"1m"`` -> 60e9. Raises ``ValueError`` on an unknown form."""
    match = _TIMEFRAME.match(timeframe)
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"invalid timeframe {timeframe!r}: expected e.g. 1m, 5m, 1h, 1d")
    return int(match.group(1)) * _UNIT_NS[match.group(2)]


def is_daily(timeframe: str) -> bool:
    return timeframe_ns(timeframe) == NS_PER_DAY


class RawBar(NamedTuple):
    """An OHLCV bar as the source delivered it. ``source`` names the dataset (part of the id).

    ``location`` (``file:line``) travels into anomaly evidence. Records are named tuples, not
    frozen dataclasses: a replay creates one per row and tuples are three times cheaper to build.
    """

    source: str
    symbol: str
    timeframe: str
    ts_open: int
    ts_close: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    venue: str = ""
    location: str = ""


class RawQuote(NamedTuple):
    """A top-of-book quote as delivered (possibly crossed)."""

    source: str
    symbol: str
    ts: int
    bid: float
    ask: float
    bid_size: float = 0.0
    ask_size: float = 0.0
    venue: str = ""


class RegimeObservation(NamedTuple):
    """The synthetic generator's true regime at bar close ``ts`` (for evaluation)."""

    source: str
    ts: int
    regime: str
    volatility_regime: str


class BadRecord(NamedTuple):
    """A row that could not be parsed: ``location`` is ``file:line``; ``symbol`` if it was readable."""

    source: str
    location: str
    reason: str
    symbol: str | None = None
    ts: int | None = None


SourceItem = RawBar | RawQuote | RegimeObservation | BadRecord

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class BarBatch:
    """Bars of one source and timeframe as columns, rows in the order the source would yield them one by one.

    The columnar form of a run of :class:`RawBar` s for historical replay: ``symbols`` holds the
    distinct symbols, ``symbol_index`` each row's index into it; ``location(i)`` is row ``i``'s
    ``file:line`` (only computed for rows whose anomalies need it). :meth:`raw` is row ``i`` as the
    record the per-record path would have received, so both paths see the same values.
    """

    source: str
    timeframe: str
    venue: str
    symbols: tuple[str, ...]
    symbol_index: I64
    ts_open: I64
    ts_close: I64
    open: F64
    high: F64
    low: F64
    close: F64
    volume: F64
    location: Callable[[int], str]

    def __len__(self) -> int:
        return len(self.ts_open)

    def raw(self, i: int) -> RawBar:
        return RawBar(self.source, self.symbols[self.symbol_index[i]], self.timeframe, int(self.ts_open[i]),
                      int(self.ts_close[i]), float(self.open[i]), float(self.high[i]), float(self.low[i]),
                      float(self.close[i]), float(self.volume[i]), venue=self.venue, location=self.location(i))

    def items(self) -> Iterator[RawBar]:
        """The rows as records, in order (what the per-record path consumes)."""
        return (self.raw(i) for i in range(len(self)))


@dataclass(frozen=True, eq=False)
class CleanBars:
    """Rows of ``batch`` (one symbol, in order) proven clean: each is a ``BarClosed`` satisfying every constraint of
    the model, so the shell may encode them without building the models (see ``IntegrityChecker.process_batch``)."""

    batch: BarBatch
    rows: I64


#: Epoch numbers below these magnitudes are seconds, ms, us (else ns); valid for 1973..2286.
_EPOCH_UNITS = ((1e11, 1_000_000_000), (1e14, 1_000_000), (1e17, 1_000))


def epoch_to_ns(value: float) -> int:
    """Epoch seconds, ms, us or ns (told apart by magnitude) to ns."""
    magnitude = abs(value)
    for limit, factor in _EPOCH_UNITS:
        if magnitude < limit:
            return int(value) * factor if isinstance(value, int) else round(value * factor)
    return int(value)


def epoch_array_to_ns(values: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """:func:`epoch_to_ns` over an integer or float array."""
    magnitude = np.abs(values)
    factors = np.select([magnitude < limit for limit, _ in _EPOCH_UNITS], [f for _, f in _EPOCH_UNITS], default=1)
    if np.issubdtype(values.dtype, np.integer):
        scaled: npt.NDArray[np.int64] = values.astype(np.int64) * factors
        return scaled
    rounded: npt.NDArray[np.int64] = np.round(values * factors).astype(np.int64)
    return rounded


def parse_timestamp(text: str) -> tuple[int, bool]:
    """``(ns since epoch, is_date_only)`` of an ISO date/datetime or an epoch number.

    A naive datetime is taken as UTC; a bare date is that day's 00:00 UTC (callers map a
    daily bar's date to its session with the calendar).
    """
    text = text.strip()
    if not text:
        raise ValueError("empty timestamp")
    if text[0].isdigit() and "-" not in text and ":" not in text:
        return epoch_to_ns(float(text)), False
    if len(text) == 10:
        day = date.fromisoformat(text)
        return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * NS_PER_S, True
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    whole = int(moment.replace(microsecond=0).timestamp())
    return whole * NS_PER_S + moment.microsecond * 1000, False


#: Accepted column names (lower-cased) for each field of a bar row.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "ts": ("timestamp", "ts", "time", "datetime", "date", "ts_open"),
    "symbol": ("symbol", "ticker", "sym"),
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "vol", "v"),
}
REQUIRED_FIELDS = ("ts", "open", "high", "low", "close", "volume")


def resolve_columns(header: list[str]) -> dict[str, int]:
    """Map field -> column index from a header row; ``ValueError`` lists what is missing."""
    lowered = [h.strip().lower() for h in header]
    mapping: dict[str, int] = {}
    for fld, aliases in COLUMN_ALIASES.items():
        for alias in aliases:
            if alias in lowered:
                mapping[fld] = lowered.index(alias)
                break
    missing = [f for f in REQUIRED_FIELDS if f not in mapping]
    if missing:
        raise ValueError(f"missing column(s) {', '.join(missing)} in header {header!r}")
    return mapping


class ParsedRow(NamedTuple):
    """A readable row: numbers parsed (not yet checked for consistency)."""

    symbol: str
    ts: int
    date_only: bool
    open: float
    high: float
    low: float
    close: float
    volume: float


def _timestamp_of(value: object) -> tuple[int, bool]:
    if isinstance(value, str):
        return parse_timestamp(value)
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return int(moment.replace(microsecond=0).timestamp()) * NS_PER_S + moment.microsecond * 1000, False
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()) * NS_PER_S, True
    if isinstance(value, int | float) and not isinstance(value, bool):
        return epoch_to_ns(value), False
    raise ValueError(f"unsupported timestamp type {type(value).__name__}")


def _number_of(name: str, value: object) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} is not a number: {value!r}")
    try:
        number = float(value.strip() if isinstance(value, str) else value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} is not a number: {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} is not finite: {value!r}")
    return number


def parse_row(values: Sequence[object], columns: Mapping[str, int], default_symbol: str | None) -> ParsedRow:
    """Parse one row (strings from CSV, typed values from Parquet).

    ``ValueError`` says what is wrong; the caller adds file and line.
    """
    if len(values) <= max(columns.values()):
        raise ValueError(f"expected at least {max(columns.values()) + 1} fields, got {len(values)}")
    symbol_col = columns.get("symbol")
    symbol = str(values[symbol_col]).strip().upper() if symbol_col is not None else (default_symbol or "")
    if not SYMBOL_REGEX.match(symbol):
        raise ValueError(f"invalid symbol {symbol!r}")
    raw_ts = values[columns["ts"]]
    try:
        ts, date_only = _timestamp_of(raw_ts)
    except (ValueError, OverflowError, OSError) as exc:
        raise ValueError(f"invalid timestamp {raw_ts!r}: {exc}") from None
    return ParsedRow(
        symbol, ts, date_only,
        *(_number_of(fld, values[columns[fld]]) for fld in ("open", "high", "low", "close", "volume")),
    )
