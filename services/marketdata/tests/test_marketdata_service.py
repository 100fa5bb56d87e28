"""The market data service on the real embedded broker: replay a file, consume exactly its bars."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from ata.events import (
    REGISTRY,
    AnomalyKind,
    BarClosed,
    DataAnomalyDetected,
    GroundTruthRegimeObserved,
    HeartbeatEmitted,
    QuoteUpdated,
)
from ata.marketdata.config import MarketDataSettings
from ata.marketdata.core import BadRecord, IntegrityChecker, RawBar, RawQuote, RegimeObservation, SessionCalendar
from ata.marketdata.service import BulkPublisher, MarketDataService, Pacer, PublishError
from ata.marketdata.sources import FileReplay
from ata.marketdata.testing import KEY, MIN, SECRET, T0, FakeAlpaca, consume, run_to_end, start_fake
from ata.marketdata.wire import wire_bytes
from ata.runtime.codec import decode, encode
from ata.runtime.config import ConfigError, RuntimeSettings, load_settings
from ata.runtime.heartbeat import HEARTBEAT_TOPIC
from ata.runtime.kafka import provision_topics

MARKET_TOPICS = ("market.bars.v1", "market.quotes.v1", "market.anomalies.v1", "market.ground_truth.v1")


def write_file(path: Path, minutes: int) -> Path:
    """Two symbols of 1-minute bars from the 2024-01-02 open, one invalid-OHLC row and one unreadable row."""
    lines = ["timestamp,symbol,open,high,low,close,volume"]
    for i in range(minutes):
        hh, mm = divmod(30 + i, 60)
        stamp = f"2024-01-02T{14 + hh:02d}:{mm:02d}:00Z"
        for symbol, base in (("AAA", 100.0), ("BBB", 20.0)):
            close = base + (i % 7) * 0.01
            if symbol == "BBB" and i == 10:
                lines.append(f"{stamp},{symbol},{close},{close - 1},{close - 0.5},{close},10")  # high below close
            elif symbol == "AAA" and i == 20:
                lines.append(f"{stamp},{symbol},{close},n/a,{close},{close},10")
            else:
                lines.append(f"{stamp},{symbol},{close},{close + 0.02},{close - 0.02},{close},{100 + i}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def isolated_topics(unique_name: Callable[[str], str], bootstrap: str) -> dict[str, str]:
    """Fresh names for the service's output topics and heartbeats, created with their registry partitions."""
    names = {t: unique_name(t.split(".")[1]) for t in (*MARKET_TOPICS, HEARTBEAT_TOPIC)}
    provision_topics(bootstrap, [dataclasses.replace(REGISTRY.get(t), name=n) for t, n in names.items()])
    return names


async def run_replay(bootstrap: str, redis_url: str, path: Path, names: dict[str, str], *, bulk: bool) -> MarketDataService:
    runtime = RuntimeSettings(kafka_bootstrap=bootstrap, redis_url=redis_url, instance_id="md-test", http_port=0)
    md = MarketDataSettings(source="replay", replay_paths=(path,), timeframe="1m", calendar="XNYS", calendar_start="2023-06-01",
                            bulk_publish=bulk)
    return await run_to_end(runtime, md, names)


async def test_replay_into_the_broker_publishes_exactly_the_files_bars(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    path = write_file(tmp_path / "two.csv", 120)
    calendar = SessionCalendar.from_exchange("XNYS", "2023-06-01")
    checker = IntegrityChecker(MarketDataSettings().integrity(), calendar=calendar, source="x")
    expected = [m for item in FileReplay([path], timeframe="1m", calendar=calendar) for m in checker.process(item, 0)]
    expected_bars = [m for m in expected if isinstance(m, BarClosed)]
    assert len(expected_bars) == 2 * 120 - 2

    ids_per_run = []
    for bulk in (True, False):
        names = await asyncio.to_thread(isolated_topics, unique_name, kafka_bootstrap)
        service = await run_replay(kafka_bootstrap, redis_url, path, names, bulk=bulk)
        assert service.bars_published == len(expected_bars)

        bars = await consume(kafka_bootstrap, names["market.bars.v1"], len(expected_bars))
        assert all(isinstance(b, BarClosed) for b in bars)
        assert len(bars) == len(expected_bars) and len({b.event_id for b in bars}) == len(bars)
        for symbol in ("AAA", "BBB"):
            got = [(b.event_id, b.ts_open, b.close) for b in bars if isinstance(b, BarClosed) and b.symbol == symbol]
            want = [(b.event_id, b.ts_open, b.close) for b in expected_bars if b.symbol == symbol]
            assert got == want  # same bars, same ids, in file order per symbol (one partition per key)

        anomalies = await consume(kafka_bootstrap, names["market.anomalies.v1"], 3)
        kinds = sorted(a.kind.value for a in anomalies if isinstance(a, DataAnomalyDetected))
        assert kinds == sorted([AnomalyKind.INVALID_OHLC.value, AnomalyKind.MALFORMED_RECORD.value, AnomalyKind.GAP.value])

        beats = [h for h in await consume(kafka_bootstrap, names[HEARTBEAT_TOPIC], 1) if isinstance(h, HeartbeatEmitted)]
        assert beats and beats[-1].details["source"] == "replay" and beats[-1].details["source_finished"] is True
        ids_per_run.append([b.event_id for b in bars])

    assert sorted(ids_per_run[0]) == sorted(ids_per_run[1])


def test_pacer_maps_event_time_to_wall_time_at_the_speed_factor() -> None:
    wall = [100.0]
    pacer = Pacer(60.0, clock=lambda: wall[0])
    minute = 60_000_000_000
    assert pacer.wait_s(10 * minute) == 0.0  # anchors
    assert pacer.wait_s(11 * minute) == 1.0  # one event minute is one wall second at 60x
    wall[0] = 100.5
    assert pacer.wait_s(11 * minute) == 0.5
    assert pacer.now_event_ns() == 10 * minute + 30_000_000_000
    wall[0] = 200.0
    assert pacer.wait_s(11 * minute) == 0.0


async def test_synthetic_source_publishes_bars_and_ground_truth(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]
) -> None:
    names = await asyncio.to_thread(isolated_topics, unique_name, kafka_bootstrap)
    runtime = RuntimeSettings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, instance_id="md-syn", http_port=0)
    md = MarketDataSettings(source="synthetic", seed=4, synthetic_symbols=3, synthetic_max_bars=300, calendar_start="2023-06-01")
    service = await run_to_end(runtime, md, names)
    truth = await consume(kafka_bootstrap, names["market.ground_truth.v1"], 100)
    assert len(truth) == 100 and all(isinstance(t, GroundTruthRegimeObserved) and t.symbol == "_market" for t in truth)
    bars = await consume(kafka_bootstrap, names["market.bars.v1"], service.bars_published)
    assert len(bars) == service.bars_published >= 295
    assert {b.symbol for b in bars if isinstance(b, BarClosed)} == {"SYN000", "SYN001", "SYN002"}


async def test_live_alpaca_source_through_the_service(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]
) -> None:
    names = await asyncio.to_thread(isolated_topics, unique_name, kafka_bootstrap)
    async for endpoints in start_fake(FakeAlpaca([([0, 1, 2], "silent")], quotes=[(0, 99.9, 100.1), (0, 100.2, 100.1)])):
        runtime = RuntimeSettings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, instance_id="md-live", http_port=0)
        md = MarketDataSettings(source="alpaca", symbols=("AAA",), alpaca_api_key=KEY, alpaca_secret_key=SECRET,
                                alpaca_stream_url=endpoints.stream_url, alpaca_data_url=endpoints.data_url, calendar="",
                                max_staleness_ms=3_600_000_000, alpaca_quotes=True)
        service = MarketDataService(runtime, md, topic_names=names, heartbeat_topic=names[HEARTBEAT_TOPIC])
        await service.start()
        try:
            bars = await consume(kafka_bootstrap, names["market.bars.v1"], 3)
            quotes = await consume(kafka_bootstrap, names["market.quotes.v1"], 1)
            anomalies = await consume(kafka_bootstrap, names["market.anomalies.v1"], 1)
        finally:
            await service.stop()
        assert [(q.bid, q.ask) for q in quotes if isinstance(q, QuoteUpdated)] == [(99.9, 100.1)]
        crossed = [(a.kind, a.quarantined) for a in anomalies if isinstance(a, DataAnomalyDetected)]
        assert crossed == [(AnomalyKind.CROSSED_QUOTE, True)]
        assert [(b.ts_open - T0) // MIN for b in bars if isinstance(b, BarClosed)] == [0, 1, 2]
        assert all(isinstance(b, BarClosed) and b.venue == "alpaca-iex" for b in bars)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"ATA_MARKETDATA_SPEED_FACTOR": "-1"}, "ATA_MARKETDATA_SPEED_FACTOR"),
        ({"ATA_MARKETDATA_SOURCE": "replay"}, "ATA_MARKETDATA_REPLAY_PATHS"),
        ({"ATA_MARKETDATA_TIMEFRAME": "7x"}, "ATA_MARKETDATA_TIMEFRAME"),
        ({"ATA_MARKETDATA_SOURCE": "alpaca", "ATA_MARKETDATA_SYMBOLS": '["AAA"]'}, "ATA_MARKETDATA_ALPACA_API_KEY"),
        ({"ATA_MARKETDATA_ON_BAD_ROW": "ignore"}, "ATA_MARKETDATA_ON_BAD_ROW"),
    ],
)
def test_bad_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=named):
        load_settings(MarketDataSettings)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATA_MARKETDATA_SOURCE", "replay")
    monkeypatch.setenv("ATA_MARKETDATA_REPLAY_PATHS", '["a.csv", "b.parquet"]')
    monkeypatch.setenv("ATA_MARKETDATA_SPIKE_ROBUST_Z_THRESHOLD", "20")
    settings = load_settings(MarketDataSettings)
    assert settings.replay_paths == (Path("a.csv"), Path("b.parquet"))
    assert settings.integrity().spike_robust_z_threshold == 20.0


def test_bulk_wire_bytes_equal_the_codec() -> None:
    calendar = SessionCalendar.from_exchange("XNYS", "2023-06-01")
    checker = IntegrityChecker(MarketDataSettings(breaker_open_after_anomalies=1).integrity(), calendar=calendar, source="md/x")
    items = [
        RawBar("f", "AAA", "1m", T0, T0 + MIN, 10.0, 10.5, 9.5, 10.2, 100.0, venue="f", location="f.csv:2"),
        RawBar("f", "AAA", "1m", T0 + 5 * MIN, T0 + 6 * MIN, 10.0, 9.0, 9.5, 10.2, 100.0, location="f.csv:3"),
        RawQuote("f", "AAA", T0, 9.9, 10.1, 3.0, 4.0),
        RegimeObservation("synthetic-1", T0 + MIN, "crisis", "stress"),
        BadRecord("f", "f.csv:9", "close is not a number: 'x'"),
    ]
    messages = [m for item in items for m in checker.process(item, ts_init=T0)]
    assert {type(m).__name__ for m in messages} == {"BarClosed", "DataAnomalyDetected", "DataReliabilityChanged", "QuoteUpdated",
                                                    "GroundTruthRegimeObserved"}
    for message in messages:
        assert wire_bytes(message) == encode(message)
        assert decode(wire_bytes(message)) == message


async def test_bulk_publisher_raises_when_records_are_not_acknowledged() -> None:
    """Failures come only through the producer's default callback: nothing delivered must not pass as published."""
    with socket.socket() as probe:  # a port nobody listens on: every record times out undelivered
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bulk = BulkPublisher(f"127.0.0.1:{port}", "md-test-bulk", lambda _m: ("market.bars.v1", "AAA"), "marketdata",
                         message_timeout_ms=300)
    bulk.produce_payloads("market.bars.v1", "AAA", [b"{}"] * 3)
    assert bulk.produced == 3
    with pytest.raises(PublishError, match="timed out"):
        await bulk.flush()
    await bulk.close()


async def test_paced_replay_reports_a_stale_feed_on_the_replay_clock(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    rows = [f"2024-01-02T14:{30 + m:02d}:00Z,AAA,10,10.1,9.9,10,100" for m in (0, 1, 2, 15, 16)]
    path = tmp_path / "hole.csv"
    path.write_text("timestamp,symbol,open,high,low,close,volume\n" + "\n".join(rows) + "\n", encoding="utf-8")
    names = await asyncio.to_thread(isolated_topics, unique_name, kafka_bootstrap)
    runtime = RuntimeSettings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, instance_id="md-paced", http_port=0)
    # 600x: the 13-minute hole lasts 1.3 s of wall time, checked every 50 ms.
    md = MarketDataSettings(source="replay", replay_paths=(path,), timeframe="1m", speed_factor=600, stale_check_interval_ms=50,
                            max_staleness_ms=120_000, calendar_start="2023-06-01")
    await run_to_end(runtime, md, names)
    anomalies = [a for a in await consume(kafka_bootstrap, names["market.anomalies.v1"], 2) if isinstance(a, DataAnomalyDetected)]
    assert [a.kind for a in anomalies] == [AnomalyKind.STALE_FEED, AnomalyKind.GAP]
    stale = anomalies[0]
    assert stale.evidence["due_ns"] == T0 + 4 * MIN  # the bar opening at 14:33 was due at its close
    assert len(await consume(kafka_bootstrap, names["market.bars.v1"], 5)) == 5
