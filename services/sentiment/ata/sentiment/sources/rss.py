"""RSS/Atom feeds: fetched with httpx (bounded by a timeout), parsed by feedparser from bytes.

feedparser is never given a URL (it would fetch without a timeout); it parses the bytes httpx
returned. Each entry becomes an :class:`Article`: ``id``/``guid`` (else the link) as the article
id, ``title`` as the headline, ``summary``, ``link``, ``published``/``updated`` as the publication
time, tags as the category. Entries without a title or a time are skipped and counted in
:attr:`RssSource.skipped` (a feed item without a time cannot be placed in time). A fetch that fails
(timeout, HTTP error, unparseable body) raises :class:`SourceError` from :meth:`RssSource.fetch`;
:meth:`RssSource.poll` logs and counts it (:attr:`RssSource.failures`), reads the other feeds, and
the feed is tried again on the next poll.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import feedparser
import httpx

from ata.sentiment.core.news import Article
from ata.sentiment.sources.base import RequestGate, SourceError, open_gate

log = logging.getLogger(__name__)


def parse_feed(body: bytes, source: str) -> tuple[list[Article], int]:
    """Articles of an RSS/Atom document and how many entries were skipped."""
    parsed: Any = feedparser.parse(body)
    if parsed.get("bozo") and not parsed.get("entries"):
        raise SourceError(f"{source}: unparseable feed: {parsed.get('bozo_exception')!r}")
    articles, skipped = [], 0
    for entry in parsed.entries:
        moment = entry.get("published_parsed") or entry.get("updated_parsed")
        title = (entry.get("title") or "").strip()
        if not title or moment is None:
            skipped += 1
            continue
        tags = entry.get("tags") or []
        articles.append(
            Article(
                news_source=source,
                headline=title,
                published_ns=calendar.timegm(moment) * 10**9,
                article_id=str(entry.get("id") or entry.get("link") or ""),
                summary=(entry.get("summary") or "").strip(),
                url=entry.get("link") or "",
                category=str(tags[0].get("term", "")) if tags else "",
            )
        )
    return articles, skipped


class RssSource:
    """Polls feeds every ``poll_interval_s``; each request gated and bounded by ``timeout_s``."""

    def __init__(
        self, urls: Sequence[str], *, name: str = "rss", poll_interval_s: float = 60.0, timeout_s: float = 10.0,
        gate: RequestGate = open_gate,
    ) -> None:
        self.name = name
        self.urls = tuple(urls)
        self.poll_interval_s = poll_interval_s
        self.timeout_s = timeout_s
        self.gate = gate
        self.skipped = 0
        self.failures = 0

    async def fetch(self, client: httpx.AsyncClient, url: str) -> list[Article]:
        await self.gate(self.name)
        try:
            response = await client.get(url, timeout=self.timeout_s)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise SourceError(f"{self.name}: {url}: {type(exc).__name__}: {exc}") from None
        articles, skipped = parse_feed(response.content, self.name)
        self.skipped += skipped
        return articles

    async def poll(self, client: httpx.AsyncClient) -> list[Article]:
        """One pass over every feed in publication order; a failing feed is logged and counted, the others still read."""
        found: list[Article] = []
        for url in self.urls:
            try:
                found.extend(await self.fetch(client, url))
            except SourceError as exc:
                self.failures += 1
                log.warning("rss fetch failed: %s", exc)
        return sorted(found, key=lambda a: a.published_ns)

    async def articles(self) -> AsyncIterator[Article]:
        async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=True) as client:
            while True:
                for article in await self.poll(client):
                    yield article
                await asyncio.sleep(self.poll_interval_s)
