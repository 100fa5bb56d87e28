"""File replay: exact bars in file order per symbol, deterministic ids, malformed rows named by file and line."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ata.events import AnomalyKind, BarClosed, DataAnomalyDetected, Message
from ata.marketdata.core import BadRecord, IntegrityChecker, IntegrityConfig, MalformedRecordError, RawBar, SessionCalendar
from ata.marketdata.sources import FileReplay

HEADER = "timestamp,symbol,open,high,low,close,volume\n"
ROWS_A = [
    "2024-01-02T14:30:00Z,AAA,10.0,10.5,9.9,10.2,100",
    "2024-01-02T14:31:00Z,AAA,10.2,10.4,10.1,10.3,120",
    "2024-01-02T14:32:00Z,AAA,10.3,10.3,10.0,10.1,90",
]
ROWS_B = [
    "2024-01-02T14:30:00Z,BBB,50.0,50.5,49.5,50.2,10",
    "2024-01-02T14:31:00Z,BBB,50.2,50.9,50.1,50.8,15",
]


@pytest.fixture(scope="module")
def xnys() -> SessionCalendar:
    return SessionCalendar.from_exchange("XNYS", "2020-01-01")


def write(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text(header + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def publish(replay: FileReplay, **config: object) -> list[Message]:
    checker = IntegrityChecker(IntegrityConfig(**config), calendar=None, source="marketdata/test")  # type: ignore[arg-type]
    out: list[Message] = []
    for item in replay:
        out.extend(checker.process(item, ts_init=0))
    return out


def expected_closes(rows: list[str]) -> list[tuple[str, float]]:
    return [(r.split(",")[1], float(r.split(",")[5])) for r in rows]


def test_replay_publishes_exactly_the_files_bars_in_order_with_stable_ids(tmp_path: Path) -> None:
    interleaved = [ROWS_A[0], ROWS_B[0], ROWS_A[1], ROWS_B[1], ROWS_A[2]]
    path = write(tmp_path / "bars.csv", interleaved)
    first = publish(FileReplay([path], timeframe="1m", calendar=None))
    second = publish(FileReplay([path], timeframe="1m", calendar=None))
    bars = [m for m in first if isinstance(m, BarClosed)]
    assert len(first) == len(bars) == 5
    assert [(b.symbol, b.close) for b in bars] == expected_closes(interleaved)
    assert bars[0].ts_open == 1_704_205_800_000_000_000 and bars[0].ts_event == bars[0].ts_open + 60_000_000_000
    assert [m.event_id for m in first] == [m.event_id for m in second]
    assert len({b.event_id for b in bars}) == 5


def test_many_files_merge_by_time_and_keep_each_files_order(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", ROWS_A)
    b = write(tmp_path / "b.csv", ROWS_B)
    bars = [m for m in publish(FileReplay([a, b], timeframe="1m", calendar=None, dataset="two")) if isinstance(m, BarClosed)]
    assert [b.ts_open for b in bars] == sorted(b.ts_open for b in bars)
    for symbol, rows in (("AAA", ROWS_A), ("BBB", ROWS_B)):
        assert [(b.symbol, b.close) for b in bars if b.symbol == symbol] == expected_closes(rows)
    only_b = [m for m in publish(FileReplay([a, b], timeframe="1m", calendar=None, symbols=["bbb"])) if isinstance(m, BarClosed)]
    assert {b.symbol for b in only_b} == {"BBB"} and len(only_b) == 2


def test_parquet_without_symbol_column_uses_file_stem(tmp_path: Path) -> None:
    table = pa.table({
        "Date": ["2024-01-02", "2024-01-03", "2024-01-04"],
        "Open": [1.0, 2.0, 3.0], "High": [1.5, 2.5, 3.5], "Low": [0.5, 1.5, 2.5], "Close": [1.2, 2.2, 3.2],
        "Volume": [10, 20, 30],
    })
    path = tmp_path / "xyz.parquet"
    pq.write_table(table, path)
    cal = SessionCalendar.from_exchange("XNYS", "2020-01-01")
    items = list(FileReplay([path], timeframe="1d", calendar=cal))
    assert all(isinstance(i, RawBar) for i in items)
    bars = [i for i in items if isinstance(i, RawBar)]
    assert [b.symbol for b in bars] == ["XYZ"] * 3
    # Daily bars span their session: 09:30-16:00 New York.
    assert (bars[0].ts_open, bars[0].ts_close) == (1_704_205_800_000_000_000, 1_704_229_200_000_000_000)


def test_malformed_rows_name_file_and_line(tmp_path: Path) -> None:
    rows = [ROWS_A[0], "2024-01-02T14:31:00Z,AAA,10.2,oops,10.1,10.3,120", "not-a-time,AAA,1,1,1,1,1", ROWS_A[2],
            "2024-01-02T14:33:00Z,AAA"]
    path = write(tmp_path / "bad.csv", rows)
    items = list(FileReplay([path], timeframe="1m", calendar=None))
    bad = [i for i in items if isinstance(i, BadRecord)]
    assert [b.location for b in bad] == [f"{path}:3", f"{path}:4", f"{path}:6"]
    assert "high is not a number: 'oops'" in bad[0].reason
    assert "invalid timestamp" in bad[1].reason
    assert "expected at least" in bad[2].reason

    skipped = publish(FileReplay([path], timeframe="1m", calendar=None))
    reported = [m for m in skipped if isinstance(m, DataAnomalyDetected) and m.kind is AnomalyKind.MALFORMED_RECORD]
    assert len(reported) == 3
    # The unreadable 14:31 row also leaves a hole the gap check reports.
    gaps = [m for m in skipped if isinstance(m, DataAnomalyDetected) and m.kind is AnomalyKind.GAP]
    assert [g.evidence["missing_bars"] for g in gaps] == [1]
    assert [a.evidence["location"] for a in reported] == [b.location for b in bad]
    assert len([m for m in skipped if isinstance(m, BarClosed)]) == 2

    with pytest.raises(MalformedRecordError) as excinfo:
        publish(FileReplay([path], timeframe="1m", calendar=None), on_bad_row="stop")
    assert str(excinfo.value).startswith(f"{path}:3: high is not a number")


def test_missing_columns_reported_at_header(tmp_path: Path) -> None:
    path = write(tmp_path / "nohigh.csv", ["2024-01-02,1,1,1,1"], header="date,open,low,close,volume\n")
    (bad,) = list(FileReplay([path], timeframe="1d", calendar=None))
    assert isinstance(bad, BadRecord) and bad.location == f"{path}:1" and "high" in bad.reason


def test_invalid_ohlc_row_reaches_the_checker_and_is_quarantined(tmp_path: Path) -> None:
    path = write(tmp_path / "inv.csv", [ROWS_A[0], "2024-01-02T14:31:00Z,AAA,10.2,10.0,10.1,10.3,120"])
    out = publish(FileReplay([path], timeframe="1m", calendar=None))
    assert [type(m).__name__ for m in out] == ["BarClosed", "DataAnomalyDetected"]
    anomaly = out[1]
    assert isinstance(anomaly, DataAnomalyDetected) and anomaly.kind is AnomalyKind.INVALID_OHLC
    assert anomaly.evidence["location"] == f"{path}:3"


def test_columnar_and_row_by_row_readers_yield_the_same_records(tmp_path: Path) -> None:
    clean = write(tmp_path / "clean.csv", [*ROWS_A, *ROWS_B])
    # One unreadable row at the end sends the whole file through the row-by-row parser.
    mixed = write(tmp_path / "mixed.csv", [*ROWS_A, *ROWS_B, "2024-01-02T14:40:00Z,BBB,x,1,1,1,1"])
    fast = list(FileReplay([clean], timeframe="1m", calendar=None, dataset="d"))
    slow = list(FileReplay([mixed], timeframe="1m", calendar=None, dataset="d"))
    assert isinstance(slow[-1], BadRecord)

    def strip(item: object) -> object:
        assert isinstance(item, RawBar)
        return (item.symbol, item.ts_open, item.ts_close, item.open, item.high, item.low, item.close, item.volume,
                item.location.rsplit(":", 1)[1])

    assert [strip(i) for i in fast] == [strip(i) for i in slow[:-1]]
