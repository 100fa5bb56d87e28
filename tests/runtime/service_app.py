"""A relay service for the service-base tests: re-publishes each bar it consumes, derived, to another topic.

Imported by the tests (in-process services) and run as a script (the SIGTERM test):
``python service_app.py`` reads ``RELAY_SOURCE_TOPIC``, ``RELAY_TARGET_TOPIC``, ``RELAY_GROUP``,
``RELAY_HEARTBEAT_TOPIC`` and ``RELAY_HANDLER_DELAY_S`` besides the usual ``ATA_*`` settings.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Self

from ata.events import BarClosed, HeartbeatEmitted, Message, Topic, TopicRegistry
from ata.runtime.bus import Delivery
from ata.runtime.config import RuntimeSettings, load_settings
from ata.runtime.service import Service, run_service

T0 = 1_700_000_000_000_000_000
MINUTE_NS = 60_000_000_000
BAR_FIELDS = ("symbol", "timeframe", "ts_open", "open", "high", "low", "close", "volume")


def bar(symbol: str, n: int) -> BarClosed:
    """The ``n``-th one-minute bar of ``symbol`` (a distinct id per (symbol, n))."""
    ts = T0 + (n + 1) * MINUTE_NS
    return BarClosed.origin(
        natural_key=("service-test", symbol, n), ts_event=ts, ts_init=ts, source="test/0", symbol=symbol, timeframe="1m",
        ts_open=ts - MINUTE_NS, open=100.0, high=101.0 + n, low=99.0, close=100.0 + n, volume=10.0,
    )


def relay_registry(*bar_topics: str, heartbeat_topic: str) -> TopicRegistry:
    """Test-only topics: bar topics keyed by symbol, a heartbeat topic, and their dead-letter siblings."""
    return TopicRegistry(
        [Topic(name, (BarClosed,), "symbol", 2, (), ()) for name in bar_topics]
        + [Topic(heartbeat_topic, (HeartbeatEmitted,), "service", 1, (), ())]
    )


def relay_class(
    name: str, source: str, target: str | None, registry: TopicRegistry, *, delay_s: float = 0.0
) -> type[Service]:
    """A service consuming ``source`` and re-publishing each bar, derived, to ``target`` (None: publish nothing).

    ``handled`` on an instance lists every (message, delivery) it handled, in order.
    """

    class Relay(Service):
        subscriptions = (source,)

        def __init__(self, settings: RuntimeSettings, **kwargs: object) -> None:
            super().__init__(settings, **kwargs)  # type: ignore[arg-type]
            self.handled: list[tuple[Message, Delivery]] = []

        def route(self, message: Message) -> str:
            assert target is not None
            return target

        async def handle(self, message: Message, delivery: Delivery) -> Sequence[Message]:
            if delay_s:
                await asyncio.sleep(delay_s)
            self.handled.append((message, delivery))
            if target is None:
                return []
            assert isinstance(message, BarClosed)
            fields = {key: getattr(message, key) for key in BAR_FIELDS}
            return [BarClosed.caused_by(message, source=self.source, ts_init=self.now_ns(), **fields)]

    Relay.name = name
    Relay.registry = registry
    return Relay


def _main() -> None:
    source, target = os.environ["RELAY_SOURCE_TOPIC"], os.environ["RELAY_TARGET_TOPIC"]
    heartbeat_topic = os.environ["RELAY_HEARTBEAT_TOPIC"]
    base = relay_class(
        "relay", source, target, relay_registry(source, target, heartbeat_topic=heartbeat_topic),
        delay_s=float(os.environ.get("RELAY_HANDLER_DELAY_S", "0")),
    )

    class ScriptRelay(base):  # type: ignore[valid-type,misc]
        heartbeat_interval_s = 0.5

        @classmethod
        def from_env(cls) -> Self:
            return cls(load_settings(RuntimeSettings), group_id=os.environ["RELAY_GROUP"], heartbeat_topic=heartbeat_topic)

    run_service(ScriptRelay)


if __name__ == "__main__":
    _main()
