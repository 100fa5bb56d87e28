"""Paced replay with market-closed stretches skipped (``closed_gaps=skip``): the night goes, the bar times stay.

Wall time is an injected clock and sleep (the sleep advances the clock), so what the replay
waits is measured exactly, whatever the machine's load.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pytest

from ata.events import REGISTRY, BarClosed
from ata.marketdata.config import MarketDataSettings
from ata.marketdata.core import SessionCalendar
from ata.marketdata.pacing import Pacer, closed_gap_skip
from ata.marketdata.service import MarketDataService
from ata.marketdata.testing import consume, run_to_end
from ata.runtime.config import ConfigError, RuntimeSettings, load_settings
from ata.runtime.heartbeat import HEARTBEAT_TOPIC
from ata.runtime.kafka import provision_topics
from ata.runtime.up_modes import paper_defaults

NS_PER_S = 1_000_000_000
MINUTE = 60 * NS_PER_S
HOUR = 60 * MINUTE
#: The last bars of the 2024-01-02 XNYS session (closes at 21:00 UTC) and the first of the next (opens 14:30 UTC).
OPENS = ("2024-01-02T20:57:00Z", "2024-01-02T20:58:00Z", "2024-01-02T20:59:00Z",
         "2024-01-03T14:30:00Z", "2024-01-03T14:31:00Z", "2024-01-03T14:32:00Z")
SYMBOLS = ("AAA", "BBB")


def ns(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp()) * NS_PER_S


@pytest.fixture(scope="module")
def xnys() -> SessionCalendar:
    return SessionCalendar.from_exchange("XNYS", "2023-06-01")


def test_closed_time_between_two_instants(xnys: SessionCalendar) -> None:
    night = xnys.closed_ns(ns("2024-01-02T21:00:00"), ns("2024-01-03T14:31:00"))
    assert night == 17 * HOUR + 30 * MINUTE  # 16:00 to 09:30 New York time; the first minute of the session is open
    assert xnys.closed_ns(ns("2024-01-02T15:00:00"), ns("2024-01-02T16:00:00")) == 0  # within a session
    weekend = xnys.closed_ns(ns("2024-01-05T21:00:00"), ns("2024-01-08T14:30:00"))
    assert weekend == 2 * 24 * HOUR + night
    holiday = xnys.closed_ns(ns("2024-01-12T21:00:00"), ns("2024-01-16T14:30:00"))  # Martin Luther King Jr. Day
    assert holiday == 3 * 24 * HOUR + night
    assert xnys.closed_ns(ns("2024-01-02T20:00:00"), ns("2024-01-03T15:00:00")) == night  # open parts on both sides
    assert xnys.closed_ns(ns("1980-01-01T00:00:00"), ns("1980-02-01T00:00:00")) == 0  # before the calendar: unknown


def test_the_pacer_takes_the_closed_stretch_beyond_the_allowance_out_of_the_schedule(xnys: SessionCalendar) -> None:
    wall = [0.0]
    pacer = Pacer(600.0, clock=lambda: wall[0], skip=closed_gap_skip(xnys, 0.5, 600.0))
    last_close, first_close = ns("2024-01-02T21:00:00"), ns("2024-01-03T14:31:00")
    assert pacer.wait_s(last_close - MINUTE) == 0.0  # anchors
    assert pacer.wait_s(last_close) == pytest.approx(0.1)  # open minutes pace as before: 60 s / 600
    wall[0] = 0.1
    # The 17.5 closed hours take 0.5 s, the session's first minute 0.1 s (waited out at 600x: 105.1 s).
    assert pacer.wait_s(first_close) == pytest.approx(0.6)
    assert pacer.wait_s(first_close) == pytest.approx(0.6)  # asking again skips nothing more
    assert pacer.skipped_ns == 17 * HOUR + 30 * MINUTE - 300 * NS_PER_S
    assert pacer.now_event_ns() == last_close + pacer.skipped_ns  # the replay clock is past the skipped part at once
    wall[0] = 0.7
    assert pacer.wait_s(first_close) == 0.0 and pacer.now_event_ns() == first_close


def write_bars(path: Path) -> Path:
    rows = [f"{stamp},{symbol},10,10.1,9.9,10,100" for stamp in OPENS for symbol in SYMBOLS]
    path.write_text("timestamp,symbol,open,high,low,close,volume\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


async def replay(bootstrap: str, redis_url: str, unique_name: Callable[[str], str], path: Path,
                 closed_gaps: Literal["wait", "skip"]) -> tuple[list[BarClosed], list[float], MarketDataService]:
    """Replay ``path`` at 600x on an injected clock; the bars read back from the broker, the sleeps, the service."""
    names = {t: unique_name(t.split(".")[1]) for t in ("market.bars.v1", "market.anomalies.v1", HEARTBEAT_TOPIC)}
    await asyncio.to_thread(provision_topics, bootstrap, [dataclasses.replace(REGISTRY.get(t), name=n) for t, n in names.items()])
    wall = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        wall[0] += seconds
        await asyncio.sleep(0)

    runtime = RuntimeSettings(kafka_bootstrap=bootstrap, redis_url=redis_url, instance_id="md-pacing", http_port=0)
    md = MarketDataSettings(source="replay", replay_paths=(path,), timeframe="1m", calendar_start="2023-06-01",
                            speed_factor=600, closed_gaps=closed_gaps, closed_gap_max_wait_s=0.5, stale_check_interval_ms=100)
    service = await run_to_end(runtime, md, names, clock=lambda: wall[0], sleep=sleep)
    bars = [b for b in await consume(bootstrap, names["market.bars.v1"], len(OPENS) * len(SYMBOLS)) if isinstance(b, BarClosed)]
    return bars, slept, service


async def test_skipped_night_keeps_every_bar_and_its_time_and_is_not_slept(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    path = write_bars(tmp_path / "night.csv")
    skipped, skipped_sleeps, service = await replay(kafka_bootstrap, redis_url, unique_name, path, "skip")
    waited, waited_sleeps, _ = await replay(kafka_bootstrap, redis_url, unique_name, path, "wait")

    want = {symbol: [ns(stamp) + MINUTE for stamp in OPENS] for symbol in SYMBOLS}
    for bars in (skipped, waited):
        assert {s: [b.ts_event for b in bars if b.symbol == s] for s in SYMBOLS} == want  # in order per symbol
    assert sorted(b.event_id for b in skipped) == sorted(b.event_id for b in waited)  # the same bars
    assert service.anomalies == {}  # no stale feed over the skipped night, no gap

    # Schedule of the last bar: 5 open minutes (0.5 s at 600x) and the night's 0.5 s allowance;
    # waited out, the night's 17.5 hours are 105 s more.
    assert sum(skipped_sleeps) == pytest.approx(1.0)
    assert sum(waited_sleeps) == pytest.approx((17 * HOUR + 35 * MINUTE) / NS_PER_S / 600)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"ATA_MARKETDATA_CLOSED_GAPS": "compress"}, "ATA_MARKETDATA_CLOSED_GAPS"),
        ({"ATA_MARKETDATA_CLOSED_GAP_MAX_WAIT_S": "-0.5"}, "ATA_MARKETDATA_CLOSED_GAP_MAX_WAIT_S"),
        ({"ATA_MARKETDATA_CLOSED_GAP_MAX_WAIT_S": "nan"}, "ATA_MARKETDATA_CLOSED_GAP_MAX_WAIT_S"),
        ({"ATA_MARKETDATA_SOURCE": "alpaca", "ATA_MARKETDATA_SYMBOLS": '["AAA"]', "ATA_MARKETDATA_ALPACA_API_KEY": "k1",
          "ATA_MARKETDATA_ALPACA_SECRET_KEY": "s1", "ATA_MARKETDATA_CLOSED_GAPS": "skip"}, "ATA_MARKETDATA_CLOSED_GAPS"),
    ],
)
def test_bad_closed_gap_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=named):
        load_settings(MarketDataSettings)


def test_ata_up_replays_with_closed_gaps_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    for data in ("synthetic", "sp500"):
        for key, value in paper_defaults(data).items():
            if key.startswith("ATA_MARKETDATA_"):
                monkeypatch.setenv(key, value)
        settings = load_settings(MarketDataSettings)
        assert settings.closed_gaps == "skip" and settings.closed_gap_max_wait_s == 1.0 and settings.speed_factor > 0
