"""Integrity checks of the market data core on crafted input and on the real S&P 500 / NASDAQ series."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable

import pytest

from ata.events import (
    AnomalyKind,
    BarClosed,
    DataAnomalyDetected,
    DataReliabilityChanged,
    GroundTruthRegimeObserved,
    Message,
    QuoteUpdated,
    Severity,
)
from ata.marketdata.core import (
    BadRecord,
    IntegrityChecker,
    IntegrityConfig,
    MalformedRecordError,
    RawBar,
    RawQuote,
    RegimeObservation,
    SessionCalendar,
    SourceItem,
)
from ata.marketdata.sources import DatasetReplay

MIN = 60_000_000_000
#: 2024-01-02 14:30 UTC, the XNYS open of the first session of 2024.
OPEN_2024 = 1_704_205_800_000_000_000


@pytest.fixture(scope="module")
def xnys() -> SessionCalendar:
    return SessionCalendar.from_exchange("XNYS", "1990-01-01")


def bar(minute: int, close: float = 100.0, *, o: float | None = None, h: float | None = None, low: float | None = None,
        v: float = 1000.0, symbol: str = "AAA", base: int = OPEN_2024, source: str = "crafted") -> RawBar:
    """A 1-minute bar ``minute`` minutes after ``base``; by default a valid bar around ``close``."""
    o = close if o is None else o
    h = max(o, close) * 1.001 if h is None else h
    low = min(o, close) * 0.999 if low is None else low
    ts = base + minute * MIN
    return RawBar(source, symbol, "1m", ts, ts + MIN, o, h, low, close, v)


def wiggle(i: int) -> float:
    """A deterministic, non-constant price path with returns of a few basis points."""
    return 100.0 * math.exp(0.0005 * math.sin(i * 1.7) + 0.0003 * math.cos(i * 0.37))


def run(checker: IntegrityChecker, items: Iterable[SourceItem]) -> list[Message]:
    out: list[Message] = []
    for item in items:
        out.extend(checker.process(item, ts_init=0))
    return out


def anomalies(messages: Iterable[Message], kind: AnomalyKind | None = None) -> list[DataAnomalyDetected]:
    found = [m for m in messages if isinstance(m, DataAnomalyDetected)]
    return [a for a in found if kind is None or a.kind is kind]


def bars(messages: Iterable[Message]) -> list[BarClosed]:
    return [m for m in messages if isinstance(m, BarClosed)]


def checker(calendar: SessionCalendar | None = None, **overrides: object) -> IntegrityChecker:
    return IntegrityChecker(IntegrityConfig(**overrides), calendar=calendar, source="marketdata/test")  # type: ignore[arg-type]


def warm(n: int = 30) -> list[RawBar]:
    return [bar(i, wiggle(i)) for i in range(n)]


def test_clean_bars_pass_unchanged() -> None:
    out = run(checker(), warm(40))
    assert anomalies(out) == []
    assert [b.ts_open for b in bars(out)] == [OPEN_2024 + i * MIN for i in range(40)]
    assert [b.close for b in bars(out)] == [wiggle(i) for i in range(40)]


def test_price_spike_quarantined_and_next_bar_judged_against_last_clean_close() -> None:
    ck = checker()
    run(ck, warm())
    out = run(ck, [bar(30, wiggle(30) * 1.25), bar(31, wiggle(31))])
    spikes = anomalies(out, AnomalyKind.PRICE_SPIKE)
    assert len(spikes) == 1 and spikes[0].quarantined and spikes[0].severity is Severity.WARNING
    assert float(spikes[0].evidence["robust_z"]) > 15  # type: ignore[arg-type]
    assert [b.ts_open for b in bars(out)] == [OPEN_2024 + 31 * MIN]


def test_level_shift_accepted_after_consecutive_spikes() -> None:
    ck = checker(spike_max_consecutive=2)
    run(ck, warm())
    out = run(ck, [bar(30 + i, 2 * wiggle(30 + i)) for i in range(4)])
    spikes = anomalies(out, AnomalyKind.PRICE_SPIKE)
    assert [s.quarantined for s in spikes] == [True, True, False]
    assert spikes[-1].evidence["accepted_level_shift"] is True
    assert [b.ts_open for b in bars(out)] == [OPEN_2024 + 32 * MIN, OPEN_2024 + 33 * MIN]


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (bar(30, 100.0, h=99.0), AnomalyKind.INVALID_OHLC),
        (bar(30, 100.0, low=100.5), AnomalyKind.INVALID_OHLC),
        (bar(30, 100.0, o=101.0, h=100.5), AnomalyKind.INVALID_OHLC),
        (bar(30, 100.0, h=math.nan), AnomalyKind.INVALID_OHLC),
        (bar(30, 0.0, o=0.0, h=0.0, low=0.0), AnomalyKind.NON_POSITIVE),
        (bar(30, 100.0, low=-1.0), AnomalyKind.NON_POSITIVE),
        (bar(30, 100.0, v=-5.0), AnomalyKind.NON_POSITIVE),
    ],
)
def test_invalid_values_are_critical_and_quarantined(raw: RawBar, kind: AnomalyKind) -> None:
    ck = checker()
    run(ck, warm())
    out = run(ck, [raw])
    (found,) = anomalies(out)
    assert found.kind is kind and found.severity is Severity.CRITICAL and found.quarantined
    assert bars(out) == []


def test_zero_volume_reported_as_info_and_published_unless_configured() -> None:
    out = run(checker(), [*warm(), bar(30, wiggle(30), v=0.0)])
    (found,) = anomalies(out)
    assert (found.kind, found.severity, found.quarantined) == (AnomalyKind.NON_POSITIVE, Severity.INFO, False)
    assert bars(out)[-1].volume == 0.0
    strict = run(checker(quarantine_zero_volume=True), [*warm(), bar(30, wiggle(30), v=0.0)])
    assert anomalies(strict)[0].quarantined and len(bars(strict)) == 30


def test_duplicates_and_out_of_order_are_quarantined() -> None:
    ck = checker()
    run(ck, warm())
    out = run(ck, [bar(29, wiggle(29)), bar(29, 123.0), bar(10, 99.0), bar(30, wiggle(30))])
    kinds = [(a.kind, a.severity) for a in anomalies(out)]
    assert kinds == [(AnomalyKind.DUPLICATE, Severity.INFO), (AnomalyKind.DUPLICATE, Severity.WARNING),
                     (AnomalyKind.DUPLICATE, Severity.WARNING)]
    assert all(a.quarantined for a in anomalies(out))
    out2 = run(checker(duplicate_memory_bars=5), [*warm(), bar(3, 99.0)])
    assert [a.kind for a in anomalies(out2)] == [AnomalyKind.OUT_OF_ORDER]
    assert len(bars(out2)) == 30
    assert [b.ts_open for b in bars(out)] == [OPEN_2024 + 30 * MIN]
    ids = [a.event_id for a in anomalies(out)]
    assert len(set(ids)) == len(ids)


def test_correction_of_a_quarantined_bar_is_accepted_once() -> None:
    ck = checker()
    run(ck, warm())
    out = run(ck, [bar(30, wiggle(30), h=1.0), bar(30, wiggle(30), h=1.0), bar(30, wiggle(30)), bar(30, wiggle(30)),
                   bar(31, wiggle(31))])
    assert [a.kind for a in anomalies(out)] == [AnomalyKind.INVALID_OHLC, AnomalyKind.DUPLICATE, AnomalyKind.DUPLICATE]
    assert [b.ts_open for b in bars(out)] == [OPEN_2024 + 30 * MIN, OPEN_2024 + 31 * MIN]
    # The bad bar and the correction, each sent twice: the repeats are identical duplicates.
    assert [a.severity for a in anomalies(out)[1:]] == [Severity.INFO, Severity.INFO]


def test_gap_within_session_counts_missing_minutes(xnys: SessionCalendar) -> None:
    out = run(checker(xnys), [bar(0), bar(1), bar(5)])
    (gap,) = anomalies(out, AnomalyKind.GAP)
    assert gap.evidence["missing_bars"] == 3 and not gap.quarantined
    assert len(bars(out)) == 3


def test_no_gap_across_close_weekend_and_holiday(xnys: SessionCalendar) -> None:
    # 2024-07-03 is an early close (13:00 ET = 17:00 UTC); 07-04 a holiday; next session 07-05.
    last_minute_early_close = 1_720_025_940_000_000_000  # 2024-07-03 16:59 UTC
    next_open = 1_720_186_200_000_000_000  # 2024-07-05 13:30 UTC
    out = run(checker(xnys), [bar(0, base=last_minute_early_close), bar(0, base=next_open)])
    assert anomalies(out) == []
    # Friday close -> Monday open.
    friday_last = 1_704_488_340_000_000_000  # 2024-01-05 20:59 UTC
    monday_open = 1_704_724_200_000_000_000  # 2024-01-08 14:30 UTC
    assert anomalies(run(checker(xnys), [bar(0, base=friday_last), bar(0, base=monday_open)])) == []
    # Skipping Monday's first minute is a gap of one.
    gapped = run(checker(xnys), [bar(0, base=friday_last), bar(1, base=monday_open)])
    assert [a.evidence["missing_bars"] for a in anomalies(gapped, AnomalyKind.GAP)] == [1]


def test_daily_gap_uses_sessions(xnys: SessionCalendar) -> None:
    days = ["2024-01-02", "2024-01-03", "2024-01-05", "2024-01-08"]  # 2024-01-04 missing
    import datetime as dt

    def daily(day: str) -> RawBar:
        midnight = int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp()) * 1_000_000_000
        times = xnys.daily_bar_times(midnight)
        assert times is not None
        return RawBar("crafted", "AAA", "1d", times[0], times[1], 100.0, 101.0, 99.0, 100.0, 1e6)

    (gap,) = anomalies(run(checker(xnys), [daily(d) for d in days]), AnomalyKind.GAP)
    assert gap.evidence["missing_bars"] == 1


def test_stale_feed_once_per_episode_in_event_time(xnys: SessionCalendar) -> None:
    ck = checker(xnys, max_staleness_ms=120_000)
    run(ck, [bar(0), bar(1)])
    due = OPEN_2024 + 3 * MIN  # bar 2 closes at minute 3
    assert ck.tick(due + 120_000_000_000, 0) == []
    stale = anomalies(ck.tick(due + 120_000_000_001, 0))
    assert [(a.kind, a.quarantined) for a in stale] == [(AnomalyKind.STALE_FEED, False)]
    assert ck.tick(due + 10 * MIN, 0) == []
    run(ck, [bar(12)])
    assert anomalies(ck.tick(OPEN_2024 + 14 * MIN + 120_000_000_001, 0), AnomalyKind.STALE_FEED)


def test_crossed_and_non_positive_quotes() -> None:
    ck = checker()
    good = ck.process(RawQuote("crafted", "AAA", OPEN_2024, 99.9, 100.1, 5, 7), 0)
    crossed = ck.process(RawQuote("crafted", "AAA", OPEN_2024 + 1, 100.2, 100.1), 0)
    zero = ck.process(RawQuote("crafted", "AAA", OPEN_2024 + 2, 0.0, 100.1), 0)
    assert [type(m) for m in good] == [QuoteUpdated]
    assert [(a.kind, a.quarantined) for a in anomalies(crossed + zero)] == [
        (AnomalyKind.CROSSED_QUOTE, True), (AnomalyKind.NON_POSITIVE, True)]


def test_two_sources_disagreeing_beyond_tolerance() -> None:
    ck = IntegrityChecker(IntegrityConfig(disagreement_tolerance_bps=50), calendar=None, source="marketdata/test",
                          reference_sources=frozenset({"ref"}))
    out = run(ck, [bar(0, 100.0), bar(0, 100.3, source="ref"), bar(1, 100.0, source="ref"), bar(1, 101.0)])
    (found,) = anomalies(out)
    assert found.kind is AnomalyKind.SOURCE_DISAGREEMENT and found.evidence["difference_bps"] == pytest.approx(100.0)
    assert [b.venue for b in bars(out)] == ["crafted", "crafted"]  # reference bars are never published


def test_malformed_record_skip_reports_and_stop_raises() -> None:
    bad = BadRecord("file", "data/aapl.csv:17", "close is not a number: 'x'", symbol="AAPL")
    (found,) = anomalies(checker().process(bad, 0))
    assert found.kind is AnomalyKind.MALFORMED_RECORD and found.evidence["location"] == "data/aapl.csv:17"
    with pytest.raises(MalformedRecordError, match=r"data/aapl\.csv:17: close is not a number"):
        checker(on_bad_row="stop").process(bad, 0)


def test_breaker_opens_after_repeated_anomalies_and_closes_after_clean_bars() -> None:
    ck = checker(breaker_window_bars=10, breaker_open_after_anomalies=3, breaker_close_after_clean_bars=5)
    items: list[RawBar] = [*warm()]
    items += [bar(30, 100.0, h=1.0), bar(31, wiggle(31)), bar(32, 100.0, h=1.0), bar(33, 100.0, h=1.0)]
    items += [bar(34 + i, wiggle(34 + i)) for i in range(6)]
    out = run(ck, items)
    changes = [m for m in out if isinstance(m, DataReliabilityChanged)]
    assert [c.reliable for c in changes] == [False, True]
    assert changes[0].ts_event == OPEN_2024 + 34 * MIN
    assert changes[1].ts_event == OPEN_2024 + 39 * MIN
    assert ck.reliability() == {"AAA": True}


def test_replaying_twice_gives_identical_ids_and_snapshot_restore_continues_exactly() -> None:
    items: list[SourceItem] = [*warm(), bar(30, 500.0), bar(31, wiggle(31)), bar(31, wiggle(31)), bar(40, wiggle(40))]
    items.append(RegimeObservation("crafted", OPEN_2024, "crisis", "stress"))
    first, second = run(checker(), items), run(checker(), items)
    assert [m.event_id for m in first] == [m.event_id for m in second]
    assert any(isinstance(m, GroundTruthRegimeObserved) for m in first)

    split = 33
    ck = checker()
    head = run(ck, items[:split])
    restored = checker()
    restored.restore(json.loads(json.dumps(ck.snapshot())))
    assert [m.model_dump() for m in head + run(restored, items[split:])] == [m.model_dump() for m in first]


@pytest.mark.parametrize("dataset", ["sp500", "nasdaq"])
def test_real_series_raise_no_spike_or_invalid_ohlc(
    dataset: str, xnys: SessionCalendar, capsys: pytest.CaptureFixture[str]
) -> None:
    ck = checker(xnys)
    out = run(ck, DatasetReplay(dataset, calendar=xnys))
    counts = Counter((a.kind.value, a.severity.value) for a in anomalies(out))
    with capsys.disabled():
        print(f"\n{dataset}: {len(bars(out))} bars published, anomalies {dict(counts) or 'none'}")
    assert not anomalies(out, AnomalyKind.PRICE_SPIKE)
    assert not anomalies(out, AnomalyKind.INVALID_OHLC)
    assert not anomalies(out, AnomalyKind.GAP)  # every XNYS session 1999-2018 is present
    assert len(bars(out)) == 5031
    assert all(a.severity is Severity.INFO for a in anomalies(out))
