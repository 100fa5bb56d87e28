"""Sources against real sockets on 127.0.0.1: replay files, RSS/Atom over HTTP, a fake Alpaca News server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from ata.sentiment.core import Article
from ata.sentiment.fixtures import labelled_headlines
from ata.sentiment.sources.alpaca import AlpacaNewsSource
from ata.sentiment.sources.base import SourceError
from ata.sentiment.sources.replay import ReplaySource, load_articles
from ata.sentiment.sources.rss import RssSource

RSS = b"""<?xml version="1.0"?>
<rss version="2.0"><channel><title>Wire</title>
<item><guid>w-1</guid><title>Halvorsen Motors beats estimates</title><link>http://127.0.0.1/a</link>
<pubDate>Tue, 05 Mar 2024 14:30:00 GMT</pubDate><category>earnings</category></item>
<item><guid>w-2</guid><title>Corvane recalls inhalers</title><pubDate>Tue, 05 Mar 2024 13:00:00 GMT</pubDate></item>
<item><guid>w-3</guid><title>An item without a time</title></item>
</channel></rss>"""
ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Desk</title><id>urn:desk</id><updated>2024-03-05T15:00:00Z</updated>
<entry><id>urn:desk:1</id><title>Quantix Semiconductor cuts guidance</title><updated>2024-03-05T15:00:00Z</updated>
<summary>Weak PC demand.</summary><link href="http://127.0.0.1/q"/></entry>
</feed>"""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve(routes: dict[str, Handler]) -> tuple[web.AppRunner, str]:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    # Short shutdown: the stalling handlers must not hold the teardown for their whole sleep.
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def feeds() -> AsyncIterator[str]:
    async def rss(_: web.Request) -> web.Response:
        return web.Response(body=RSS, content_type="application/rss+xml")

    async def atom(_: web.Request) -> web.Response:
        return web.Response(body=ATOM, content_type="application/atom+xml")

    async def stall(_: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(body=RSS)

    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    runner, base = await serve({"/rss": rss, "/atom": atom, "/stall": stall, "/broken": broken})
    try:
        yield base
    finally:
        await runner.cleanup()


async def collect(source: RssSource | ReplaySource | AlpacaNewsSource, n: int) -> list[Article]:
    out: list[Article] = []
    async with asyncio.timeout(20):
        async for article in source.articles():
            out.append(article)
            if len(out) == n:
                break
    return out


async def test_rss_and_atom_feeds_over_http(feeds: str) -> None:
    gated: list[str] = []

    async def gate(name: str) -> None:
        gated.append(name)

    source = RssSource([f"{feeds}/rss", f"{feeds}/atom"], name="desk", timeout_s=2.0, gate=gate)
    articles = await collect(source, 3)
    assert [a.headline for a in articles] == [
        "Corvane recalls inhalers", "Halvorsen Motors beats estimates", "Quantix Semiconductor cuts guidance",
    ]
    assert articles[1].article_id == "w-1"
    assert articles[1].category == "earnings"
    assert articles[1].published_ns == int(datetime(2024, 3, 5, 14, 30, tzinfo=UTC).timestamp()) * 10**9
    assert articles[2].summary == "Weak PC demand."
    assert source.skipped == 1
    assert gated == ["desk", "desk"]


async def test_rss_timeouts_and_errors_are_bounded_and_reported(feeds: str) -> None:
    source = RssSource([f"{feeds}/stall", f"{feeds}/broken", f"{feeds}/atom"], timeout_s=0.5)
    async with httpx.AsyncClient() as client:
        with pytest.raises(SourceError, match="Timeout"):
            await asyncio.wait_for(source.fetch(client, f"{feeds}/stall"), timeout=10)
        with pytest.raises(SourceError, match="500"):
            await source.fetch(client, f"{feeds}/broken")
        # A poll reads the healthy feed and counts the two failures.
        articles = await asyncio.wait_for(source.poll(client), timeout=10)
    assert [a.headline for a in articles] == ["Quantix Semiconductor cuts guidance"]
    assert source.failures == 2


def test_replay_reads_the_shipped_format_and_names_bad_lines(tmp_path: Path) -> None:
    good = tmp_path / "news.jsonl"
    rows = labelled_headlines()[:5]
    good.write_text("".join(
        json.dumps({"id": r.article.article_id, "ts_ns": r.article.published_ns, "headline": r.article.headline,
                    "symbols": list(r.article.symbols), "source": "wire"}) + "\n" for r in reversed(rows)
    ))
    loaded = load_articles(good)
    assert [a.article_id for a in loaded] == [r.article.article_id for r in rows]
    csv_file = tmp_path / "news.csv"
    csv_file.write_text("published_at,headline,symbols\n2024-03-05T14:30:00Z,Halvorsen beats,HLVM;CRVP\n")
    (article,) = load_articles(csv_file)
    assert article.symbols == ("HLVM", "CRVP")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"headline": "ok", "ts_ns": 1}\n{"headline": "no time"}\n')
    with pytest.raises(SourceError, match=r"bad\.jsonl:2: missing published_at"):
        load_articles(bad)
    naive = tmp_path / "naive.csv"
    naive.write_text("published_at,headline\n2024-03-05T14:30:00,x\n")
    with pytest.raises(SourceError, match=r"naive\.csv:2: timestamp without a time zone"):
        load_articles(naive)


async def test_replay_source_yields_in_order() -> None:
    rows = [r.article for r in labelled_headlines()[:10]]
    out = await collect(ReplaySource(rows), 10)
    assert out == rows


KEY, SECRET = "test-key", "test-secret"


def alpaca_article(n: int, created: str, symbols: list[str], headline: str) -> dict[str, object]:
    return {"id": n, "headline": headline, "source": "benzinga", "url": f"https://example.invalid/{n}", "summary": "",
            "created_at": created, "updated_at": created, "symbols": symbols, "author": "desk", "content": "", "images": []}


@pytest.fixture
async def fake_alpaca() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """Alpaca's /v1beta1/news: key headers checked, two pages on the first call, cursor by ``start``."""
    requests: list[dict[str, str]] = []
    articles = [
        alpaca_article(1, "2024-03-05T14:30:00Z", ["HLVM"], "Halvorsen Motors beats estimates"),
        alpaca_article(2, "2024-03-05T14:31:00Z", ["CRVP"], "Corvane wins FDA approval"),
        alpaca_article(3, "2024-03-05T14:35:00Z", ["HLVM", "CRVP"], "Halvorsen and Corvane sign supply deal"),
    ]

    async def news(request: web.Request) -> web.Response:
        if request.headers.get("APCA-API-KEY-ID") != KEY or request.headers.get("APCA-API-SECRET-KEY") != SECRET:
            return web.json_response({"message": "forbidden"}, status=403)
        params = dict(request.query)
        requests.append(params)
        start = datetime.fromisoformat(params["start"].replace("Z", "+00:00"))
        newer = [a for a in articles if datetime.fromisoformat(str(a["created_at"]).replace("Z", "+00:00")) >= start]
        if params.get("page_token") == "p2":
            return web.json_response({"news": newer[2:], "next_page_token": None})
        return web.json_response({"news": newer[:2], "next_page_token": "p2" if len(newer) > 2 else None})

    async def stall(_: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.json_response({"news": []})

    runner, base = await serve({"/v1beta1/news": news, "/slow/v1beta1/news": stall})
    try:
        yield base, requests
    finally:
        await runner.cleanup()


async def test_alpaca_news_pages_cursor_and_no_repeats(fake_alpaca: tuple[str, list[dict[str, str]]]) -> None:
    base, requests = fake_alpaca
    source = AlpacaNewsSource(KEY, SECRET, ["HLVM", "CRVP"], start=datetime(2024, 3, 5, tzinfo=UTC), url_override=base,
                              poll_interval_s=0.05, timeout_s=2.0)
    first = await asyncio.wait_for(source.poll(), timeout=10)
    assert [a.article_id for a in first] == ["alpaca-1", "alpaca-2", "alpaca-3"]
    assert first[2].symbols == ("HLVM", "CRVP")
    assert first[0].news_source == "alpaca:benzinga"
    assert requests[0]["symbols"] == "HLVM,CRVP"
    assert requests[0]["sort"] == "asc"
    # The next poll asks from the newest article seen and yields nothing twice.
    again = await asyncio.wait_for(source.poll(), timeout=10)
    assert again == []
    assert requests[-1]["start"].startswith("2024-03-05T14:35:00")


async def test_alpaca_bad_credentials_fail_clearly(fake_alpaca: tuple[str, list[dict[str, str]]]) -> None:
    base, _ = fake_alpaca
    source = AlpacaNewsSource(KEY, "wrong", ["HLVM"], url_override=base, timeout_s=2.0)
    with pytest.raises(SourceError, match=r"credentials refused \(HTTP 403\)"):
        await asyncio.wait_for(collect(source, 1), timeout=10)


async def test_alpaca_silent_server_times_out(fake_alpaca: tuple[str, list[dict[str, str]]]) -> None:
    base, _ = fake_alpaca
    source = AlpacaNewsSource(KEY, SECRET, ["HLVM"], url_override=f"{base}/slow", timeout_s=0.5)
    with pytest.raises(SourceError, match="Timeout"):
        await asyncio.wait_for(source.poll(), timeout=10)
