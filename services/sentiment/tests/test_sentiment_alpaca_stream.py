"""The Alpaca News stream source against a fake Alpaca (websocket ``v1beta1/news`` + REST) on 127.0.0.1.

The fake speaks the protocol alpaca-py's ``NewsDataStream`` expects — msgpack frames
``connected``, ``auth`` -> ``authenticated`` or error 402 ``auth failed``, ``subscribe`` ->
``subscription``, then news messages ``{"T": "n", ...}`` with msgpack Timestamps — and serves
``/v1beta1/news`` for the catch-up. Each stream connection follows a script: articles to send,
then ``close`` (a dropped connection) or ``silent`` (connected but mute); ``hang`` never says
``connected``; ``after_rest`` holds a step until REST has answered that many requests. REST lags
the stream: what a connection sent, and the articles of its
``then_publish`` (news the stream missed), appear in REST once that connection ended.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack
import pytest
from aiohttp import web
from pydantic import SecretStr
from websockets.asyncio.server import ServerConnection, serve

from ata.events import REGISTRY, NewsPublished
from ata.runtime.config import RuntimeSettings
from ata.runtime.kafka import provision_topics
from ata.runtime.resilience import Backoff
from ata.runtime.testing import read_messages
from ata.sentiment.config import SentimentSettings
from ata.sentiment.core import Article
from ata.sentiment.service import SentimentService
from ata.sentiment.sources.alpaca import AlpacaNewsSource
from ata.sentiment.sources.alpaca_stream import AlpacaNewsStreamSource
from ata.sentiment.sources.base import CredentialsRefusedError

KEY, SECRET = "stream-key", "stream-secret"
WAIT_S = 30.0
HEADLINES = {
    1: ("Halvorsen Motors beats estimates", ["HLVM"]),
    2: ("Corvane wins FDA approval", ["CRVP"]),
    3: ("Halvorsen and Corvane sign supply deal", ["HLVM", "CRVP"]),
    4: ("Corvane recalls inhalers", ["CRVP"]),
}


@dataclass
class Step:
    send: list[int]
    then: str  # "close" | "silent" | "hang"
    then_publish: list[int] = field(default_factory=list)
    #: Send only once REST has answered this many requests (the catch-up of this connect, typically).
    after_rest: int = 0


@dataclass
class FakeAlpacaNews:
    script: list[Step]
    created: dict[int, datetime] = field(default_factory=dict)
    visible: set[int] = field(default_factory=set)
    connections: int = 0
    auth_failures: int = 0
    rest_starts: list[datetime] = field(default_factory=list)
    rest_answered: asyncio.Condition = field(default_factory=asyncio.Condition)

    def publish(self, n: int) -> None:
        # Alpaca's creation times have microsecond precision; a strictly later time per article.
        self.created.setdefault(n, max([datetime.now(UTC), *(t + timedelta(microseconds=1) for t in self.created.values())]))

    def rest_article(self, n: int) -> dict[str, Any]:
        headline, symbols = HEADLINES[n]
        stamp = self.created[n].isoformat().replace("+00:00", "Z")
        return {"id": n, "headline": headline, "source": "benzinga", "url": f"https://example.invalid/{n}", "summary": "",
                "created_at": stamp, "updated_at": stamp, "symbols": symbols, "author": "desk", "content": "", "images": []}

    def stream_article(self, n: int) -> dict[str, Any]:
        stamp = msgpack.Timestamp.from_datetime(self.created[n])
        return {**self.rest_article(n), "T": "n", "created_at": stamp, "updated_at": stamp}

    async def news(self, request: web.Request) -> web.Response:
        if request.headers.get("APCA-API-KEY-ID") != KEY or request.headers.get("APCA-API-SECRET-KEY") != SECRET:
            return web.json_response({"message": "forbidden"}, status=403)
        start = datetime.fromisoformat(request.query["start"].replace("Z", "+00:00"))
        self.rest_starts.append(start)
        async with self.rest_answered:
            self.rest_answered.notify_all()
        found = sorted((self.created[n], n) for n in self.visible if self.created[n] >= start)
        return web.json_response({"news": [self.rest_article(n) for _, n in found], "next_page_token": None})

    async def stream(self, ws: ServerConnection) -> None:
        step = self.script[min(self.connections, len(self.script) - 1)]
        self.connections += 1
        if step.then == "hang":
            await ws.wait_closed()
            return
        await ws.send(msgpack.packb([{"T": "success", "msg": "connected"}]))
        auth = msgpack.unpackb(await ws.recv())
        if auth.get("action") != "auth" or auth.get("key") != KEY or auth.get("secret") != SECRET:
            self.auth_failures += 1
            await ws.send(msgpack.packb([{"T": "error", "code": 402, "msg": "auth failed"}]))
            await ws.close()
            return
        await ws.send(msgpack.packb([{"T": "success", "msg": "authenticated"}]))
        subscribe = msgpack.unpackb(await ws.recv())
        assert subscribe["action"] == "subscribe"
        await ws.send(msgpack.packb([{"T": "subscription", "news": subscribe.get("news", [])}]))
        async with asyncio.timeout(WAIT_S), self.rest_answered:
            await self.rest_answered.wait_for(lambda: len(self.rest_starts) >= step.after_rest)
        for n in step.send:
            self.publish(n)
            await ws.send(msgpack.packb([self.stream_article(n)], datetime=False))
        if step.then == "close":
            await ws.close()
        else:
            await ws.wait_closed()
        for n in step.then_publish:
            self.publish(n)
        self.visible.update(step.send, step.then_publish)


@dataclass
class Endpoints:
    fake: FakeAlpacaNews
    stream_url: str
    data_url: str


async def start(fake: FakeAlpacaNews) -> AsyncIterator[Endpoints]:
    app = web.Application()
    app.router.add_get("/v1beta1/news", fake.news)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rest_port = runner.addresses[0][1]
    async with serve(fake.stream, "127.0.0.1", 0) as server:
        ws_port = next(iter(server.sockets)).getsockname()[1]
        try:
            yield Endpoints(fake, f"ws://127.0.0.1:{ws_port}/v1beta1/news", f"http://127.0.0.1:{rest_port}")
        finally:
            await runner.cleanup()


@pytest.fixture
def fake_factory() -> Callable[[list[Step]], AsyncIterator[Endpoints]]:
    return lambda script: start(FakeAlpacaNews(script))


def source_for(ends: Endpoints, *, secret: str = SECRET, overlap_s: float = 0.0, connect_timeout_s: float = WAIT_S,
               silence_timeout_s: float = WAIT_S) -> AlpacaNewsStreamSource:
    """A source on the fake. Its watchdog's timeouts are long unless a test makes one fire: a short one could fire
    on a loaded machine where the script has no silence or hang, and reconnects would break the exact counts."""
    rest = AlpacaNewsSource(KEY, secret, ["HLVM", "CRVP"], url_override=ends.data_url, timeout_s=WAIT_S)
    return AlpacaNewsStreamSource(KEY, secret, rest, stream_url=ends.stream_url, connect_timeout_s=connect_timeout_s,
                                  silence_timeout_s=silence_timeout_s, overlap_s=overlap_s, retry_s=0.1,
                                  backoff=Backoff(initial_s=0.05, cap_s=0.2, max_attempts=None))


async def collect_ids(source: AlpacaNewsStreamSource, want: set[str]) -> list[Article]:
    """Articles yielded until every id in ``want`` was seen (repeats kept)."""
    out: list[Article] = []
    async with asyncio.timeout(WAIT_S):
        async for article in source.articles():
            out.append(article)
            if want <= {a.article_id for a in out}:
                return out
    raise AssertionError("the source ended")


async def test_items_stream_through(fake_factory: Callable[[list[Step]], AsyncIterator[Endpoints]]) -> None:
    async for ends in fake_factory([Step([1, 2, 3], "silent")]):
        source = source_for(ends)
        articles = await collect_ids(source, {"alpaca-1", "alpaca-2", "alpaca-3"})
        streamed = [a for a in articles if a.article_id == "alpaca-3"]
        assert streamed[0].symbols == ("HLVM", "CRVP")
        assert streamed[0].news_source == "alpaca:benzinga"
        assert streamed[0].headline == HEADLINES[3][0]
        assert streamed[0].published_ns == int(ends.fake.created[3].timestamp() * 1e6) * 1000
        # Article 3 names both subscribed symbols: alpaca-py hands it over twice, the source once.
        assert source.streamed == 3
        assert ends.fake.connections == 1


async def test_bad_credentials_fail_clearly(fake_factory: Callable[[list[Step]], AsyncIterator[Endpoints]]) -> None:
    async for ends in fake_factory([Step([1], "silent")]):
        source = source_for(ends, secret="wrong")
        with pytest.raises(CredentialsRefusedError, match=r"credentials refused .*auth failed"):
            await collect_ids(source, {"alpaca-1"})
        assert ends.fake.auth_failures == 1


async def test_silent_stream_is_restarted(fake_factory: Callable[[list[Step]], AsyncIterator[Endpoints]]) -> None:
    async for ends in fake_factory([Step([], "silent"), Step([1], "silent")]):
        source = source_for(ends, silence_timeout_s=1.0)
        articles = await collect_ids(source, {"alpaca-1"})
        assert [a.article_id for a in articles] == ["alpaca-1"]
        assert source.watchdog.silences >= 1
        assert ends.fake.connections >= 2


async def test_connect_without_hello_times_out_and_retries(
    fake_factory: Callable[[list[Step]], AsyncIterator[Endpoints]],
) -> None:
    async for ends in fake_factory([Step([], "hang"), Step([1], "silent")]):
        source = source_for(ends, connect_timeout_s=1.0)
        await collect_ids(source, {"alpaca-1"})
        assert source.watchdog.connect_timeouts >= 1
        assert ends.fake.connections >= 2


async def test_dropped_connection_reconnects_and_catches_up(
    fake_factory: Callable[[list[Step]], AsyncIterator[Endpoints]],
) -> None:
    # Article 3 is published while the stream is down: only the REST catch-up can bring it.
    script = [Step([1, 2], "close", then_publish=[3], after_rest=1), Step([4], "silent", after_rest=2)]
    async for ends in fake_factory(script):
        source = source_for(ends)
        articles = await collect_ids(source, {"alpaca-1", "alpaca-2", "alpaca-3", "alpaca-4"})
        assert {a.article_id for a in articles} == {"alpaca-1", "alpaca-2", "alpaca-3", "alpaca-4"}
        assert source.watchdog.connects == 2
        assert source.caught_up == 2  # 2 (the overlap: same creation time) and 3
        # The catch-up after the reconnect asked from the newest creation time seen (overlap 0).
        assert ends.fake.created[2] in ends.fake.rest_starts


async def test_service_streams_alpaca_news_without_duplicates(
    fake_factory: Callable[[list[Step]], AsyncIterator[Endpoints]], kafka_bootstrap: str, redis_url: str,
    unique_name: Callable[[str], str],
) -> None:
    topics = ("news.items.v1", "sentiment.scores.v1", "system.heartbeats.v1")
    names = {t: unique_name(t.split(".")[1]) for t in topics}
    await asyncio.to_thread(provision_topics, kafka_bootstrap,
                            [dataclasses.replace(REGISTRY.get(t), name=n) for t, n in names.items()])
    runtime = RuntimeSettings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, instance_id="sentiment-stream", http_port=0)
    # The second connection re-sends article 2 and the catch-up overlap re-reads 1 and 2: repeats for Redis dedup.
    script = [Step([1, 2], "close", then_publish=[3], after_rest=1), Step([2, 4], "silent", after_rest=2)]
    async for ends in fake_factory(script):
        settings = SentimentSettings(
            source="alpaca", alpaca_api_key=SecretStr(KEY), alpaca_secret_key=SecretStr(SECRET),
            alpaca_data_url=ends.data_url, alpaca_stream_url=ends.stream_url, alpaca_symbols=("HLVM", "CRVP"),
            alpaca_silence_timeout_ms=5_000, alpaca_catchup_overlap_ms=3_600_000, http_timeout_ms=2_000,
            poll_interval_ms=100, redis_prefix=f"test:{uuid.uuid4().hex}",
        )
        service = SentimentService(runtime, settings, topic_names=names, heartbeat_topic=names["system.heartbeats.v1"])
        await service.start()
        try:
            source = service._source
            assert isinstance(source, AlpacaNewsStreamSource)
            # Done once both connections were caught up (1, 2, 3 from REST) and the repeats of 1 and 2 were dropped.
            async with asyncio.timeout(WAIT_S):
                while not (source.watchdog.connects >= 2 and source.caught_up >= 3  # noqa: ASYNC110  (no event for these)
                           and service.dedup is not None and service.dedup.hits >= 2 and source.streamed >= 4):
                    await asyncio.sleep(0.05)
        finally:
            await service.stop()
        items = [m for m in await read_messages(kafka_bootstrap, names["news.items.v1"]) if isinstance(m, NewsPublished)]
        assert sorted(i.article_id for i in items) == ["alpaca-1", "alpaca-2", "alpaca-3", "alpaca-4"]
