"""Alpaca News live: alpaca-py's ``NewsDataStream`` (websocket ``v1beta1/news``) with REST catch-up.

The stream runs under :class:`ata.runtime.alpaca_stream.StreamWatchdog`: connect + auth bounded
by ``connect_timeout_s``, rejected keys end the source with :class:`CredentialsRefusedError`, and a
stream silent for ``silence_timeout_s`` is torn down and rebuilt with backoff. News can be
quiet for long stretches, so a restart on silence is cheap by design: it is followed by a catch-up.

No item is lost across a reconnect: after every connect + auth (the first one included, which
covers the time since ``start``) the source asks the REST API
(:meth:`AlpacaNewsSource.catch_up`) for everything created since the newest creation time seen,
minus ``overlap_s`` (an article can reach the stream a little after its creation time), and
yields it in creation order before the stream's next items. If the catch-up fails it is retried
from the same point at the stream's next message or reconnect (at most every ``retry_s``) until
it succeeds, so the hole stays covered.

Repeats are expected — the catch-up re-reads the overlap and what the stream already delivered;
the service's Redis dedup (same ``alpaca-<id>`` key on both paths) keeps them out of the topic.
The only repeat dropped here is alpaca-py's fan-out: an article about two subscribed symbols
reaches the handler once per symbol.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from alpaca.data.live.news import NewsDataStream
from alpaca.data.models.news import News

from ata.runtime.alpaca_stream import CONNECTED, DataStreamLike, StreamCredentialsError, StreamWatchdog
from ata.runtime.resilience import Backoff
from ata.sentiment.core.news import Article
from ata.sentiment.sources.alpaca import AlpacaNewsSource, article_of
from ata.sentiment.sources.base import CredentialsRefusedError, SourceError

log = logging.getLogger(__name__)


class AlpacaNewsStreamSource:
    """Live Alpaca News for the symbols of ``rest`` (see the module contract); ``rest`` does the catch-ups."""

    def __init__(
        self, api_key: str, secret_key: str, rest: AlpacaNewsSource, *, stream_url: str | None = None,
        connect_timeout_s: float = 10.0, silence_timeout_s: float = 300.0, overlap_s: float = 60.0, retry_s: float = 5.0,
        backoff: Backoff | None = None, rng: random.Random | None = None,
    ) -> None:
        self.name = rest.name
        self.rest = rest
        self._key, self._secret = api_key, secret_key
        self.stream_url = stream_url or None
        self.connect_timeout_s = connect_timeout_s
        self.overlap = timedelta(seconds=overlap_s)
        self.retry_s = retry_s
        self.start = rest.since
        self.cursor = rest.since
        self.watchdog = StreamWatchdog(self._stream, name=f"{self.name}-news", connect_timeout_s=connect_timeout_s,
                                       silence_timeout_s=silence_timeout_s, backoff=backoff, rng=rng)
        self.streamed = 0
        self.caught_up = 0
        self.catch_up_failures = 0
        self._hole: datetime | None = None
        self._last_try = float("-inf")

    def _stream(self, on_message: Callable[[Any], Awaitable[None]]) -> DataStreamLike:
        stream = NewsDataStream(
            self._key, self._secret, url_override=self.stream_url,
            websocket_params={"open_timeout": self.connect_timeout_s, "close_timeout": self.connect_timeout_s,
                              "ping_interval": 10, "ping_timeout": self.connect_timeout_s, "max_queue": 1024},
        )
        stream.subscribe_news(on_message, *(self.rest.symbols or ("*",)))
        return stream

    def _advance(self, created: datetime) -> None:
        self.cursor = max(self.cursor, created)

    async def _catch_up(self) -> list[Article]:
        """Fill the open hole from REST; on failure keep it open for a later try."""
        if self._hole is None:
            return []
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_try < self.retry_s:
            return []
        self._last_try = loop.time()
        try:
            found = await self.rest.catch_up(self._hole)
        except CredentialsRefusedError:
            raise
        except SourceError as exc:
            self.catch_up_failures += 1
            log.warning("alpaca news catch-up from %s failed, will retry: %s", self._hole.isoformat(), exc)
            return []
        self._hole = None
        self._advance(self.rest.since)
        self.caught_up += len(found)
        return found

    async def articles(self) -> AsyncIterator[Article]:
        previous_id: int | None = None
        try:
            async for item in self.watchdog:
                if item is CONNECTED:
                    previous_id = None
                    hole = max(self.start, self.cursor - self.overlap)
                    self._hole = hole if self._hole is None else min(self._hole, hole)
                    self._last_try = float("-inf")
                elif isinstance(item, News):
                    self._advance(item.created_at)
                    if item.id != previous_id:
                        previous_id = item.id
                        self.streamed += 1
                        yield article_of(item)
                for article in await self._catch_up():
                    yield article
        except StreamCredentialsError as exc:
            raise CredentialsRefusedError(f"{self.name}: credentials refused ({exc})") from None
        finally:
            await self.watchdog.close()
