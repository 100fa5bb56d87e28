"""Runtime settings a service reads (log level, heartbeat period), the heartbeat details hook, and
routed publishing in order over the real broker."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ata.events import BarClosed, Topic, TopicRegistry
from ata.runtime.bus import KafkaBus
from ata.runtime.config import ConfigError, RuntimeSettings, load_settings
from ata.runtime.kafka import provision_topics
from ata.runtime.service import DEFAULT_HEARTBEAT_INTERVAL_S, Service
from ata.runtime.testing import numbered_bar, read_messages


def bar(symbol: str, n: int) -> BarClosed:
    return numbered_bar("settings", symbol, n)


class Reporting(Service):
    name = "reporting"

    def heartbeat_details(self) -> dict[str, str | float | int | bool]:
        return {"source": "replay", "phase": "overridden by the base"}


def test_log_level_is_a_validated_case_insensitive_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATA_LOG_LEVEL", "debug")
    assert load_settings(RuntimeSettings).log_level == "DEBUG"
    monkeypatch.setenv("ATA_LOG_LEVEL", "chatty")
    with pytest.raises(ConfigError, match="ATA_LOG_LEVEL"):
        load_settings(RuntimeSettings)


def test_heartbeat_period_comes_from_settings_when_set() -> None:
    assert Reporting(RuntimeSettings(instance_id="a"))._heartbeat.interval_s == DEFAULT_HEARTBEAT_INTERVAL_S
    configured = Reporting(RuntimeSettings(instance_id="b", service_heartbeat_interval_ms=250))
    assert configured._heartbeat.interval_s == 0.25


def test_heartbeat_details_hook_adds_to_the_base_details() -> None:
    details = Reporting(RuntimeSettings(instance_id="c"))._heartbeat_stats().details
    assert details["source"] == "replay"
    assert details["phase"] == "created", "the base's own keys win"


async def test_publish_routed_keeps_order_per_topic_and_key(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    first, second = unique_name("routed_a"), unique_name("routed_b")
    registry = TopicRegistry([Topic(first, (BarClosed,), "symbol", 3, (), ()), Topic(second, (BarClosed,), "symbol", 1, (), ())])
    provision_topics(kafka_bootstrap, registry)
    bars = [bar(symbol, n) for n in range(10) for symbol in ("AAPL", "MSFT")]
    routed = [(first if n % 2 else second, b, b.symbol) for n, b in enumerate(bars)]
    async with KafkaBus(RuntimeSettings(kafka_bootstrap=kafka_bootstrap, instance_id="t"), registry=registry) as bus:
        published = await bus.publish_routed(routed)
    assert [(p.topic, p.key) for p in published] == [(topic, key) for topic, _, key in routed]
    for topic in (first, second):
        on_topic = await read_messages(kafka_bootstrap, topic)
        for symbol in ("AAPL", "MSFT"):
            sent = [b.event_id for t, b, key in routed if t == topic and key == symbol]
            assert [m.event_id for m in on_topic if isinstance(m, BarClosed) and m.symbol == symbol] == sent
