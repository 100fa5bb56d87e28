"""The batch path of historical replay equals the per-record path: same clean bars (byte for byte on the wire,
same event ids), same anomalies and reliability events, same checker state afterwards."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ata.events import Message, origin_id
from ata.marketdata.core import BarBatch, CleanBars, IntegrityChecker, IntegrityConfig, RawBar, SessionCalendar
from ata.marketdata.core.batch import RollingWindows
from ata.marketdata.core.integrity import _median
from ata.marketdata.sources import DatasetReplay, FileReplay
from ata.marketdata.wire import clean_bar_payloads, origin_id_prefix, uuid5_text
from ata.runtime.codec import encode

MIN = 60_000_000_000
OPEN_2024 = 1_704_205_800_000_000_000  # 2024-01-02 14:30 UTC, an XNYS session open
SOURCE = "marketdata/test"


@pytest.fixture(scope="module")
def xnys() -> SessionCalendar:
    return SessionCalendar.from_exchange("XNYS", "1990-01-01")


def batch_of(raws: list[RawBar]) -> BarBatch:
    """The records as one columnar batch (all of one source and timeframe)."""
    symbols = tuple(dict.fromkeys(r.symbol for r in raws))
    return BarBatch(
        raws[0].source, raws[0].timeframe, raws[0].venue, symbols,
        np.array([symbols.index(r.symbol) for r in raws], dtype=np.int64),
        np.array([r.ts_open for r in raws], dtype=np.int64), np.array([r.ts_close for r in raws], dtype=np.int64),
        *(np.array([getattr(r, f) for r in raws], dtype=np.float64) for f in ("open", "high", "low", "close", "volume")),
        location=lambda i: raws[i].location,
    )


def per_record(checker: IntegrityChecker, raws: list[RawBar]) -> dict[str, list[bytes]]:
    """Codec bytes of every output, per symbol, record by record."""
    out: dict[str, list[bytes]] = defaultdict(list)
    for raw in raws:
        for message in checker.process(raw, ts_init=7):
            out[message.symbol].append(encode(message))  # type: ignore[attr-defined]
    return dict(out)


def batched(checker: IntegrityChecker, batches: list[BarBatch]) -> tuple[dict[str, list[bytes]], int]:
    """Codec bytes of every output of the batch path, per symbol, and how many bars took the bulk encoder."""
    out: dict[str, list[bytes]] = defaultdict(list)
    bulk = 0
    for batch in batches:
        for item in checker.process_batch(batch, ts_init=7):
            if isinstance(item, CleanBars):
                symbol = batch.symbols[batch.symbol_index[item.rows[0]]]
                out[symbol].extend(clean_bar_payloads(item, source=SOURCE, ts_init=7))
                bulk += len(item.rows)
            else:
                assert isinstance(item, Message)
                out[item.symbol].append(encode(item))  # type: ignore[attr-defined]
    return dict(out), bulk


def same_state(a: IntegrityChecker, b: IntegrityChecker) -> bool:
    """Snapshots equal, NaN included (a bad bar's values are remembered for duplicate detection)."""
    return json.dumps(a.snapshot()) == json.dumps(b.snapshot())


def assert_same(config: IntegrityConfig, calendar: SessionCalendar | None, raws: list[RawBar], chunk: int) -> int:
    one = IntegrityChecker(config, calendar=calendar, source=SOURCE)
    two = IntegrityChecker(config, calendar=calendar, source=SOURCE)
    expected = per_record(one, raws)
    got, bulk = batched(two, [batch_of(raws[i:i + chunk]) for i in range(0, len(raws), chunk)])
    assert got == expected
    assert same_state(two, one)
    return bulk


# One step of a symbol's stream: (minutes to the next bar, log return, what is wrong with the bar).
STEP = st.tuples(
    st.sampled_from([1] * 12 + [0, -1, -3, 2, 5, 400]),
    st.floats(-0.004, 0.004),
    st.sampled_from(["ok"] * 30 + ["spike", "zero_volume", "low_above_open", "negative", "nan", "huge"]),
)


def stream(symbol: str, steps: list[tuple[int, float, str]], start: int) -> list[RawBar]:
    raws, minute, close = [], 0, 100.0
    for step, ret, flaw in steps:
        minute += step
        close *= math.exp(ret)
        c = close * (1.25 if flaw == "spike" else 1.0)
        o, h, low, v = close, max(close, c) * 1.001, min(close, c) * 0.999, 1000.0
        if flaw == "zero_volume":
            v = 0.0
        elif flaw == "low_above_open":
            low = o * 1.01
        elif flaw == "negative":
            c = -c
        elif flaw == "nan":
            h = math.nan
        elif flaw == "huge":
            o = h = c = 1.7e308
        ts = start + minute * MIN
        raws.append(RawBar("crafted", symbol, "1m", ts, ts + MIN, o, h, low, c, v, venue="crafted",
                           location=f"f.csv:{len(raws) + 2}"))
    return raws


def interleave(streams: list[list[RawBar]]) -> list[RawBar]:
    """Round robin, as a multi-symbol file lists them."""
    out = []
    for i in range(max(map(len, streams), default=0)):
        out.extend(s[i] for s in streams if i < len(s))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    steps=st.lists(st.lists(STEP, min_size=1, max_size=160), min_size=1, max_size=3),
    window=st.sampled_from([(5, 3), (8, 8), (50, 20)]),
    chunk=st.sampled_from([7, 64, 1000]),
    with_calendar=st.booleans(),
    detect_gaps=st.booleans(),
)
def test_batch_path_equals_per_record_path(steps: list[list[tuple[int, float, str]]], window: tuple[int, int], chunk: int, *,
                                           with_calendar: bool, detect_gaps: bool, xnys: SessionCalendar) -> None:
    config = IntegrityConfig(spike_window_bars=window[0], spike_min_observations=window[1], detect_gaps=detect_gaps,
                             duplicate_memory_bars=16, breaker_window_bars=10)
    raws = interleave([stream(f"S{k}", s, OPEN_2024) for k, s in enumerate(steps)])
    assert_same(config, xnys if with_calendar else None, raws, chunk)


@pytest.mark.parametrize("dataset", ["sp500", "nasdaq"])
def test_batch_path_equals_per_record_path_on_real_series(dataset: str, xnys: SessionCalendar) -> None:
    config = IntegrityConfig()
    one = IntegrityChecker(config, calendar=xnys, source=SOURCE)
    two = IntegrityChecker(config, calendar=xnys, source=SOURCE)
    replay = DatasetReplay(dataset, calendar=xnys)
    expected = per_record(one, list(replay))  # type: ignore[arg-type]
    got, bulk = batched(two, list(replay.batches(1000)))
    assert got == expected
    assert same_state(two, one)
    rows = sum(len(v) for v in expected.values())
    assert bulk > 0.9 * rows  # the comparison exercised the bulk path, not only the fallback


def test_anomalies_inside_long_clean_runs_interrupt_and_resume_the_bulk_path(xnys: SessionCalendar) -> None:
    steps = [(1, 0.0005 * math.sin(i), "ok") for i in range(600)]
    for at, step in ((150, (1, 0.0, "spike")), (300, (0, 0.0, "ok")), (301, (3, 0.0, "ok")), (450, (1, 0.0, "zero_volume"))):
        steps[at] = step
    raws = interleave([stream("AAA", steps, OPEN_2024), stream("BBB", steps[:400], OPEN_2024)])
    bulk = assert_same(IntegrityConfig(), xnys, raws, 250)
    assert bulk > 800


def test_batch_path_without_a_steady_state_falls_back_record_by_record() -> None:
    raws = stream("AAA", [(1, 0.001, "ok")] * 10, OPEN_2024)
    assert assert_same(IntegrityConfig(), None, raws, 4) == 0  # the window never fills: nothing is bulk-encoded


@settings(max_examples=200, deadline=None)
@given(window=st.integers(3, 60), rows=st.integers(1, 300), seed=st.integers(0, 2**32 - 1),
       spike_share=st.sampled_from([0.0, 0.02, 0.2]), threshold=st.sampled_from([0.0, 1e-4, 0.001, 0.003, 0.015]))
def test_rolling_windows_find_exactly_the_rows_far_from_their_median(window: int, rows: int, seed: int, spike_share: float,
                                                                     threshold: float) -> None:
    """The min/max pre-screen never drops a row the exact median test flags, and medians are the per-record ones."""
    rng = np.random.default_rng(seed)
    values = rng.normal(0.0, 0.001, window + rows)
    values += np.where(rng.random(window + rows) < spike_share, rng.normal(0.0, 0.02, window + rows), 0.0)
    history, returns = values[:window].tolist(), values[window:].tolist()
    merged = history + returns
    expected = [(i, m) for i in range(rows) if abs(returns[i] - (m := _median(sorted(merged[i:i + window])))) > threshold]
    flagged, medians = RollingWindows(history, returns, window).beyond(threshold)
    assert list(zip(flagged, medians, strict=True)) == expected


@given(head=st.lists(st.one_of(st.text(max_size=20), st.integers()), max_size=4),
       last=st.one_of(st.integers(), st.text(max_size=20)))
def test_uuid5_text_equals_origin_id(head: list[object], last: object) -> None:
    assert uuid5_text(origin_id_prefix(*head), last) == str(origin_id(*head, last))


@given(stamps=st.lists(st.integers(OPEN_2024 - 400 * 86_400 * 10**9, OPEN_2024 + 400 * 86_400 * 10**9), max_size=50),
       timeframe=st.sampled_from(["1m", "5m", "1h", "1d", "1w"]))
def test_calendar_slots_equal_slot(stamps: list[int], timeframe: str, xnys: SessionCalendar) -> None:
    expected = [xnys.slot(ts, timeframe) for ts in stamps]
    got = xnys.slots(np.array(stamps, dtype=np.int64), timeframe).tolist()
    assert got == [-1 if s is None else s for s in expected]


def write_csv(path: Path, rows: list[tuple[int, str, float]]) -> None:
    path.write_text("timestamp,symbol,open,high,low,close,volume\n" +
                    "".join(f"{ts},{sym},{c},{c * 1.01},{c * 0.99},{c},100\n" for ts, sym, c in rows), encoding="utf-8")


def test_file_batches_yield_the_records_of_iteration(tmp_path: Path, xnys: SessionCalendar) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    write_csv(a, [(OPEN_2024 + i * MIN, "AAA" if i % 3 else "CCC", 10.0 + i) for i in range(40)])
    write_csv(b, [(OPEN_2024 + i * MIN, "BBB", 20.0 + i) for i in range(0, 40, 2)])
    for symbols in (None, ["AAA", "BBB"]):
        replay = FileReplay([a, b], timeframe="1m", calendar=xnys, symbols=symbols)
        batches = replay.batches(9)
        assert batches is not None
        assert [raw for batch in batches for raw in batch.items()] == list(FileReplay([a, b], timeframe="1m", calendar=xnys,
                                                                                     symbols=symbols))


def test_file_batches_decline_what_only_record_by_record_reproduces(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    write_csv(a, [(OPEN_2024 + m * MIN, "AAA", 10.0) for m in (0, 5, 3)])  # out of order within a file
    write_csv(b, [(OPEN_2024 + 4 * MIN, "BBB", 20.0)])
    assert FileReplay([a, b], timeframe="1m", calendar=None).batches(100) is None
    a.write_text("timestamp,symbol,open,high,low,close,volume\nnot-a-time,AAA,1,1,1,1,1\n", encoding="utf-8")
    assert FileReplay([a], timeframe="1m", calendar=None).batches(100) is None
