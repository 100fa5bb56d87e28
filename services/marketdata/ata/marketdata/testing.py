"""Test support: a local fake of Alpaca's market data stream and REST API, a topic reader, a service runner.

:class:`FakeAlpaca` speaks the protocol alpaca-py's ``StockDataStream`` expects (msgpack
frames: ``connected``, ``auth`` -> ``authenticated`` or an error, ``subscribe`` ->
``subscription``, then bar messages ``{"T": "b", "S": ..., "t": <msgpack Timestamp>, ...}``)
and the two REST endpoints the adapter uses (``/v2/stocks/bars/latest``, ``/v2/stocks/bars``),
on 127.0.0.1 only. Each stream connection follows a script: the bar minutes to send, then
``"close"`` (a dropped connection) or ``"silent"`` (connected but mute).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgpack
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from websockets.asyncio.server import ServerConnection, serve

from ata.events import Message
from ata.marketdata.config import MarketDataSettings
from ata.marketdata.service import MarketDataService
from ata.runtime.codec import decode
from ata.runtime.config import RuntimeSettings
from ata.runtime.heartbeat import HEARTBEAT_TOPIC

#: Bound of every wait in the tests that use this module.
WAIT_S = 60.0
KEY, SECRET = "fake-key", "fake-secret"
T0 = 1_704_205_800_000_000_000  # 2024-01-02 14:30 UTC
MIN = 60_000_000_000


def bar_message(symbol: str, minute: int, t0_ns: int = T0) -> dict[str, Any]:
    """The stream's bar message for ``minute`` minutes after ``t0_ns``."""
    price = 100.0 + minute
    return {"T": "b", "S": symbol, "o": price, "h": price + 0.5, "l": price - 0.5, "c": price + 0.1, "v": 1000 + minute,
            "t": msgpack.Timestamp.from_unix_nano(t0_ns + minute * MIN), "n": 10, "vw": price}


def rest_bar(minute: int, t0_ns: int = T0) -> dict[str, Any]:
    """The same bar as the REST API returns it (ISO time)."""
    message = bar_message("AAA", minute, t0_ns)
    iso = datetime.fromtimestamp((t0_ns + minute * MIN) / 1e9, tz=UTC).isoformat().replace("+00:00", "Z")
    return {**{k: message[k] for k in ("o", "h", "l", "c", "v", "n", "vw")}, "t": iso}


@dataclass
class FakeAlpaca:
    """Per stream connection, a script: the minutes to send, then ``"close"`` (drop) or ``"silent"`` (stay mute).

    Minute 0 opens at ``t0_ns`` (default :data:`T0`; a test of live trading passes a recent time).
    """

    scripts: list[tuple[list[int], str]]
    backfill_minutes: list[int] = field(default_factory=list)
    #: Quotes ``(minute, bid, ask)`` sent on the first connection if quotes were subscribed.
    quotes: list[tuple[int, float, float]] = field(default_factory=list)
    connections: int = 0
    auth_failures: int = 0
    rest_calls: list[str] = field(default_factory=list)
    t0_ns: int = T0

    def authorised(self, headers: Any) -> bool:
        if headers.get("APCA-API-KEY-ID") == KEY and headers.get("APCA-API-SECRET-KEY") == SECRET:
            return True
        expected = "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
        return bool(headers.get("Authorization") == expected)

    async def stream(self, ws: ServerConnection) -> None:
        index = self.connections
        self.connections += 1
        await ws.send(msgpack.packb([{"T": "success", "msg": "connected"}]))
        auth = msgpack.unpackb(await ws.recv())
        if auth.get("key") != KEY or auth.get("secret") != SECRET:
            self.auth_failures += 1
            await ws.send(msgpack.packb([{"T": "error", "code": 402, "msg": "auth failed"}]))
            await ws.close()
            return
        await ws.send(msgpack.packb([{"T": "success", "msg": "authenticated"}]))
        subscribe = msgpack.unpackb(await ws.recv())
        await ws.send(msgpack.packb([{"T": "subscription", "trades": [], "quotes": subscribe.get("quotes", []),
                                      "bars": subscribe.get("bars", [])}]))
        if index == 0 and subscribe.get("quotes"):
            for minute, bid, ask in self.quotes:
                await ws.send(msgpack.packb([{"T": "q", "S": "AAA", "bx": "V", "bp": bid, "bs": 3, "ax": "V", "ap": ask, "as": 4,
                                              "c": ["R"], "z": "C", "t": msgpack.Timestamp.from_unix_nano(T0 + minute * MIN)}]))
        minutes, then = self.scripts[min(index, len(self.scripts) - 1)]
        for minute in minutes:
            await ws.send(msgpack.packb([bar_message("AAA", minute, self.t0_ns)]))
        if then == "close":
            await ws.close()
            return
        await ws.wait_closed()  # "silent": connected but mute until the client gives up

    async def latest(self, request: web.Request) -> web.Response:
        self.rest_calls.append("latest")
        if not self.authorised(request.headers):
            return web.json_response({"message": "forbidden."}, status=403)
        return web.json_response({"bars": {"AAA": rest_bar(0)}})

    async def bars(self, request: web.Request) -> web.Response:
        self.rest_calls.append("bars")
        if not self.authorised(request.headers):
            return web.json_response({"message": "forbidden."}, status=403)
        bars = [rest_bar(m, self.t0_ns) for m in self.backfill_minutes]
        return web.json_response({"bars": {"AAA": bars}, "next_page_token": None})


@dataclass
class Endpoints:
    fake: FakeAlpaca
    stream_url: str
    data_url: str


async def start_fake(fake: FakeAlpaca) -> AsyncIterator[Endpoints]:
    """Serve ``fake`` on free 127.0.0.1 ports for the duration of the iteration (one item)."""
    app = web.Application()
    app.router.add_get("/v2/stocks/bars/latest", fake.latest)
    app.router.add_get("/v2/stocks/bars", fake.bars)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rest_port = runner.addresses[0][1]
    async with serve(fake.stream, "127.0.0.1", 0) as server:
        ws_port = next(iter(server.sockets)).getsockname()[1]
        try:
            yield Endpoints(fake, f"ws://127.0.0.1:{ws_port}", f"http://127.0.0.1:{rest_port}")
        finally:
            await runner.cleanup()


async def consume(bootstrap: str, topic: str, expected: int) -> list[Message]:
    """Every message of ``topic`` from the beginning, once ``expected`` arrived and the partitions are drained."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        received: list[Message] = []
        async with asyncio.timeout(WAIT_S):
            while True:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    received.extend(decode(record.value) for record in records)
                caught_up = all([await consumer.position(tp) >= (consumer.highwater(tp) or 0) for tp in partitions])
                if len(received) >= expected and caught_up:
                    return received
    finally:
        await consumer.stop()


async def run_to_end(runtime: RuntimeSettings, settings: MarketDataSettings, topic_names: dict[str, str], *,
                     clock: Callable[[], float] = time.monotonic,
                     sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> MarketDataService:
    """Start the service on ``topic_names`` (registry name -> name used, heartbeats included) with the wall time
    ``clock`` and ``sleep`` of its pacing, wait until its historical source is exhausted and everything is
    acknowledged, stop it, and return it (for its counters)."""
    service = MarketDataService(runtime, settings, topic_names=topic_names, heartbeat_topic=topic_names[HEARTBEAT_TOPIC],
                                clock=clock, sleep=sleep)
    await service.start()
    try:
        async with asyncio.timeout(WAIT_S * 10):
            await service.source_finished.wait()
    finally:
        await service.stop()
    return service
