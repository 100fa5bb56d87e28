"""The Alpaca adapter against a local fake speaking Alpaca's websocket (msgpack) and REST protocols on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgpack
import pytest
from aiohttp import web
from websockets.asyncio.server import ServerConnection, serve

from ata.marketdata.core import RawBar
from ata.marketdata.sources.alpaca import AlpacaCredentialsError, AlpacaSource
from ata.runtime.resilience import Backoff

KEY, SECRET = "fake-key", "fake-secret"
T0 = 1_704_205_800_000_000_000  # 2024-01-02 14:30 UTC
MIN = 60_000_000_000
WAIT_S = 30.0


def bar_message(symbol: str, minute: int) -> dict[str, Any]:
    price = 100.0 + minute
    return {"T": "b", "S": symbol, "o": price, "h": price + 0.5, "l": price - 0.5, "c": price + 0.1, "v": 1000 + minute,
            "t": msgpack.Timestamp.from_unix_nano(T0 + minute * MIN), "n": 10, "vw": price}


def rest_bar(minute: int) -> dict[str, Any]:
    message = bar_message("AAA", minute)
    iso = datetime.fromtimestamp((T0 + minute * MIN) / 1e9, tz=UTC).isoformat().replace("+00:00", "Z")
    return {**{k: message[k] for k in ("o", "h", "l", "c", "v", "n", "vw")}, "t": iso}


@dataclass
class FakeAlpaca:
    """Per stream connection, a script: the minutes to send, then ``"close"`` (drop) or ``"silent"`` (stay mute)."""

    scripts: list[tuple[list[int], str]]
    backfill_minutes: list[int] = field(default_factory=list)
    connections: int = 0
    auth_failures: int = 0
    rest_calls: list[str] = field(default_factory=list)

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
        await ws.send(msgpack.packb([{"T": "subscription", "trades": [], "quotes": [], "bars": subscribe.get("bars", [])}]))
        minutes, then = self.scripts[min(index, len(self.scripts) - 1)]
        for minute in minutes:
            await ws.send(msgpack.packb([bar_message("AAA", minute)]))
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
        return web.json_response({"bars": {"AAA": [rest_bar(m) for m in self.backfill_minutes]}, "next_page_token": None})


@dataclass
class Endpoints:
    fake: FakeAlpaca
    stream_url: str
    data_url: str


async def start_fake(fake: FakeAlpaca) -> AsyncIterator[Endpoints]:
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


def source(endpoints: Endpoints, *, key: str = KEY, silence_s: float = 5.0) -> AlpacaSource:
    return AlpacaSource(api_key=key, secret_key=SECRET, symbols=["aaa"], stream_url=endpoints.stream_url,
                        data_url=endpoints.data_url, timeout_s=5.0, silence_timeout_s=silence_s,
                        backoff=Backoff(initial_s=0.05, cap_s=0.2, max_attempts=None), backfill_bars=10,
                        now=lambda: datetime.fromtimestamp(T0 / 1e9 + 600, tz=UTC))


async def collect(src: AlpacaSource, count: int) -> list[RawBar]:
    out: list[RawBar] = []
    async with asyncio.timeout(WAIT_S):
        async for item in src:
            assert isinstance(item, RawBar)
            out.append(item)
            if len(out) == count:
                await src.close()
                break
    return out


@pytest.fixture
async def endpoints(request: pytest.FixtureRequest) -> AsyncIterator[Endpoints]:
    scripts, backfill = request.param
    async for ep in start_fake(FakeAlpaca(scripts, backfill)):
        yield ep


@pytest.mark.parametrize("endpoints", [([([0], "silent")], [])], indirect=True)
async def test_bad_credentials_give_a_clear_error(endpoints: Endpoints) -> None:
    with pytest.raises(AlpacaCredentialsError, match=r"rejected the API key/secret.*ATA_MARKETDATA_ALPACA_API_KEY"):
        async with asyncio.timeout(WAIT_S):
            async for _ in source(endpoints, key="wrong"):
                pass
    assert endpoints.fake.rest_calls == ["latest"] and endpoints.fake.connections == 0


@pytest.mark.parametrize("endpoints", [([([0, 1, 2], "close"), ([1, 2, 3, 4], "silent")], [0, 1, 2, 3])], indirect=True)
async def test_dropped_connection_reconnects_backfills_and_never_duplicates(endpoints: Endpoints) -> None:
    src = source(endpoints)
    bars = await collect(src, 5)
    assert [(b.ts_open - T0) // MIN for b in bars] == [0, 1, 2, 3, 4]
    assert bars[0].close == 100.1 and bars[0].ts_close == T0 + MIN and bars[0].symbol == "AAA"
    assert endpoints.fake.connections == 2 and src.health()["reconnects"] == 1
    # Backfill 0-3 after the drop overlaps 0-2; the new stream resends 1-3: six repeats dropped, none yielded.
    assert src.duplicates_dropped == 6
    assert "bars" in endpoints.fake.rest_calls


@pytest.mark.parametrize("endpoints", [([([0], "silent"), ([1], "silent")], [])], indirect=True)
async def test_silent_stream_is_detected_and_reconnected(endpoints: Endpoints) -> None:
    src = source(endpoints, silence_s=0.5)
    bars = await collect(src, 2)
    assert [(b.ts_open - T0) // MIN for b in bars] == [0, 1]
    assert src.silences >= 1 and endpoints.fake.connections >= 2
    assert src.health()["silences"] == src.silences
