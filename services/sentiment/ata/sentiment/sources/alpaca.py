"""Alpaca News through alpaca-py's ``NewsClient`` (historical REST), polled, with enforced timeouts.

alpaca-py sets no HTTP timeout: its ``RESTClient`` calls ``requests.Session.request`` without one,
so a silent server would hang a poll forever. :class:`_TimeoutSession` gives every request a
timeout, and each poll also runs under ``asyncio.wait_for`` in a worker thread. Each poll asks for
articles created since the newest one seen (``sort=asc``), pages handled by the client; articles
already yielded (by id) are not yielded again. Bad credentials (HTTP 401/403) raise
:class:`SourceError` at once: retrying cannot fix them. Other failures are logged, counted and
retried on the next poll.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import requests
from alpaca.common.exceptions import APIError
from alpaca.data.historical.news import NewsClient
from alpaca.data.models.news import News, NewsSet
from alpaca.data.requests import NewsRequest

from ata.sentiment.core.news import Article
from ata.sentiment.sources.base import CredentialsRefusedError, RequestGate, SourceError, open_gate

log = logging.getLogger(__name__)
#: Most article ids remembered to avoid yielding an article twice across polls.
SEEN_LIMIT = 10_000
#: Articles asked for per poll (alpaca-py pages through them); a full poll means more may be waiting.
POLL_LIMIT = 50


class _TimeoutSession(requests.Session):
    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self.timeout_s = timeout_s

    def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout_s)
        return super().request(method, url, *args, **kwargs)


def article_of(news: News) -> Article:
    return Article(
        news_source=f"alpaca:{news.source}" if news.source else "alpaca",
        headline=news.headline,
        published_ns=int(news.created_at.timestamp() * 1e6) * 1000,
        article_id=f"alpaca-{news.id}",
        summary=news.summary or "",
        url=news.url or "",
        symbols=tuple(news.symbols),
    )


class AlpacaNewsSource:
    """Polls Alpaca News for ``symbols`` every ``poll_interval_s`` (see the module contract)."""

    def __init__(
        self, api_key: str, secret_key: str, symbols: Sequence[str], *, start: datetime | None = None,
        url_override: str | None = None, poll_interval_s: float = 60.0, timeout_s: float = 10.0,
        gate: RequestGate = open_gate, name: str = "alpaca",
    ) -> None:
        self.name = name
        self.symbols = tuple(symbols)
        self.poll_interval_s = poll_interval_s
        self.timeout_s = timeout_s
        self.gate = gate
        self.since = start or datetime.now(UTC)
        self.failures = 0
        self.last_poll_full = False
        self._seen: dict[str, None] = {}
        self._client = NewsClient(api_key=api_key, secret_key=secret_key, url_override=url_override)
        # The client's own session has no timeout (see the module docstring).
        self._client._session = _TimeoutSession(timeout_s)

    def _fetch(self, since: datetime) -> list[News]:
        request = NewsRequest(start=since, symbols=",".join(self.symbols) or None, sort="asc", limit=POLL_LIMIT)
        result = self._client.get_news(request)
        assert isinstance(result, NewsSet)  # raw_data=False
        return list(result.data.get("news", []))

    async def poll(self) -> list[Article]:
        """Articles created since the newest seen; raises :class:`SourceError` on failure."""
        await self.gate(self.name)
        try:
            # The thread keeps its own per-request timeout; wait_for bounds paging and retries too.
            found = await asyncio.wait_for(asyncio.to_thread(self._fetch, self.since), timeout=self.timeout_s * 3)
        except APIError as exc:
            if exc.status_code in (401, 403):
                raise CredentialsRefusedError(f"{self.name}: credentials refused (HTTP {exc.status_code})") from None
            raise SourceError(f"{self.name}: HTTP {exc.status_code}: {exc}") from None
        except (TimeoutError, requests.RequestException) as exc:
            raise SourceError(f"{self.name}: {type(exc).__name__}: {exc}") from None
        self.last_poll_full = len(found) >= POLL_LIMIT
        fresh = []
        for news in found:
            article = article_of(news)
            if article.article_id in self._seen:
                continue
            self._seen[article.article_id] = None
            fresh.append(article)
            self.since = max(self.since, news.created_at)
        while len(self._seen) > SEEN_LIMIT:
            del self._seen[next(iter(self._seen))]
        return fresh

    async def catch_up(self, since: datetime) -> list[Article]:
        """Every article created since ``since`` not yielded before: polls until a poll is not full.

        Raises :class:`SourceError` like :meth:`poll`; a poll that brings nothing new ends it too
        (more than a full page of articles with one creation time cannot be paged by time).
        """
        self.since = since
        found: list[Article] = []
        while True:
            fresh = await self.poll()
            found.extend(fresh)
            if not (self.last_poll_full and fresh):
                return found

    async def articles(self) -> AsyncIterator[Article]:
        while True:
            try:
                for article in await self.poll():
                    yield article
            except CredentialsRefusedError:
                raise
            except SourceError as exc:
                self.failures += 1
                log.warning("alpaca news poll failed: %s", exc)
            await asyncio.sleep(self.poll_interval_s)
