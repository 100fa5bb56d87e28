"""The sentiment service shell: acquire news, dedup, rate-limit, publish items and scores.

All scoring and temporal logic is in :class:`ata.sentiment.core.SentimentEngine`. The shell runs
one news source in :meth:`SentimentService.background`: each article is deduplicated in Redis
(id or content hash, with a TTL), turned into a ``NewsPublished`` on ``news.items.v1``, and fed
to the engine, whose ``SentimentScored`` outputs go to ``sentiment.scores.v1`` (keyed by symbol).
Polling sources ask the Redis token bucket before every request. ``source=alpaca`` streams
(:class:`~ata.sentiment.sources.alpaca_stream.AlpacaNewsStreamSource`, REST catch-up after every
connect) when ``alpaca_stream_url`` is set, else polls REST.

Clock: a replay runs on event time (the engine's clock follows the items; at the end it is
advanced past the last availability delay so every item is scored), so replays are
deterministic and point in time. Live sources (RSS, Alpaca) run on the wall clock: a ticker
advances the engine every second, releasing items whose availability delay has passed.

The engine snapshot is cached in Redis on stop and every ``SNAPSHOT_EVERY`` items; Redis is a
cache only, so the service starts fresh when it is unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Self

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ata.events import Message, SentimentScored
from ata.runtime import metrics
from ata.runtime.config import RuntimeSettings, load_settings
from ata.runtime.service import Service, run_service
from ata.sentiment.config import SentimentSettings
from ata.sentiment.core import Article, EntityMapper, Scorer, SentimentEngine, to_news_event
from ata.sentiment.fixtures import labelled_headlines
from ata.sentiment.redis_state import RedisDeduplicator, RedisRateLimiter, RedisSnapshotStore
from ata.sentiment.sources import NewsSource
from ata.sentiment.sources.alpaca import AlpacaNewsSource
from ata.sentiment.sources.alpaca_stream import AlpacaNewsStreamSource
from ata.sentiment.sources.replay import ReplaySource, load_articles
from ata.sentiment.sources.rss import RssSource

ITEMS = metrics.counter("ata_sentiment_items_total", "News items published after dedup, by news source", ("news_source",))
DEDUP_HITS = metrics.counter("ata_sentiment_dedup_hits_total", "Articles dropped as already seen, by source", ("source",))
RATE_WAITS = metrics.counter("ata_sentiment_rate_limit_waits_total", "Requests that waited for a rate-limit token", ("source",))
ITEMS_RATE = metrics.gauge("ata_sentiment_items_per_second", "News items published per second over the last interval")
SCORES = metrics.counter("ata_sentiment_scores_total", "Per-symbol sentiment scores published")
PENDING = metrics.gauge("ata_sentiment_pending_items", "Items waiting for their availability delay")

SNAPSHOT_EVERY = 200
TICK_S = 1.0
RATE_WINDOW_S = 10.0


class SentimentService(Service):
    name = "sentiment"
    subscriptions: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, settings: RuntimeSettings, sentiment: SentimentSettings, *, topic_names: Mapping[str, str] | None = None,
        source: NewsSource | None = None, **kwargs: Any,
    ) -> None:
        super().__init__(settings, **kwargs)
        self.sentiment = sentiment
        self.topic_names = dict(topic_names or {})
        self.mapper = EntityMapper(sentiment.resolved_universe(), sentiment.cashtag_only)
        self.scorer = Scorer(sentiment.weights())
        self.engine = SentimentEngine(self.scorer, sentiment.engine_params(), source=self.source)
        self._source = source
        self._redis: Redis[Any] | None = None
        self.limiter: RedisRateLimiter | None = None
        self.dedup: RedisDeduplicator | None = None
        self._snapshots: RedisSnapshotStore | None = None
        self._since_snapshot = 0
        self._window: list[float] = []
        self.finished = asyncio.Event()

    @classmethod
    def from_env(cls) -> Self:
        return cls(load_settings(RuntimeSettings), load_settings(SentimentSettings))

    def route(self, message: Message) -> str:
        topic = super().route(message)
        return self.topic_names.get(topic, topic)

    # -- lifecycle ----------------------------------------------------------------------------

    async def on_start(self) -> None:
        s = self.sentiment
        self._redis = Redis.from_url(self.settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self.limiter = RedisRateLimiter(self._redis, s.redis_prefix, s.rate_limit_per_s, s.rate_limit_burst)
        self.dedup = RedisDeduplicator(self._redis, s.redis_prefix, s.dedup_ttl_s)
        self._snapshots = RedisSnapshotStore(self._redis, s.redis_prefix, s.dedup_ttl_s)
        try:
            snapshot = await self._snapshots.load()
        except RedisError as exc:
            self.log.warning("sentiment state cache unreachable, starting fresh: %s", exc)
            snapshot = None
        if snapshot is not None:
            self.engine = SentimentEngine.restore(self.scorer, s.engine_params(), snapshot, source=self.source)
            self.log.info("restored sentiment state from cache")
        if self._source is None:
            self._source = self._make_source()

    async def on_stop(self) -> None:
        await self._save()
        if self._redis is not None:
            await self._redis.aclose()  # type: ignore[attr-defined]  # redis>=5; the stubs predate it

    def _make_source(self) -> NewsSource | None:
        s = self.sentiment
        timeout_s = s.http_timeout_ms / 1000
        poll_s = s.poll_interval_ms / 1000
        if s.source == "replay":
            if s.replay_path is None:
                return ReplaySource([row.article for row in labelled_headlines()], speed=s.replay_speed, name="fixtures")
            return ReplaySource(load_articles(s.replay_path), speed=s.replay_speed, name=f"replay:{s.replay_path.name}")
        if s.source == "rss":
            return RssSource(s.rss_urls, poll_interval_s=poll_s, timeout_s=timeout_s, gate=self._gate)
        if s.source == "alpaca":
            assert s.alpaca_api_key is not None and s.alpaca_secret_key is not None  # checked by the settings
            key, secret = s.alpaca_api_key.get_secret_value(), s.alpaca_secret_key.get_secret_value()
            rest = AlpacaNewsSource(
                key, secret, s.alpaca_symbols or tuple(self.mapper.symbols), url_override=s.alpaca_data_url or None,
                poll_interval_s=poll_s, timeout_s=timeout_s, gate=self._gate,
            )
            if not s.alpaca_stream_url:
                return rest
            return AlpacaNewsStreamSource(
                key, secret, rest, stream_url=s.alpaca_stream_url, connect_timeout_s=timeout_s,
                silence_timeout_s=s.alpaca_silence_timeout_ms / 1000, overlap_s=s.alpaca_catchup_overlap_ms / 1000,
                retry_s=min(poll_s, 5.0),
            )
        return None

    async def _gate(self, source: str) -> None:
        assert self.limiter is not None
        waits = self.limiter.waits
        await self.limiter.acquire(source, timeout_s=max(60.0, 2 / self.sentiment.rate_limit_per_s))
        if self.limiter.waits > waits:
            RATE_WAITS.labels(source).inc(self.limiter.waits - waits)

    # -- the producer loop --------------------------------------------------------------------

    async def background(self) -> None:
        source = self._source
        if source is None:
            self.finished.set()
            return
        event_clock = isinstance(source, ReplaySource)
        ticker = None if event_clock else asyncio.create_task(self._tick(), name="sentiment:tick")
        try:
            async for article in source.articles():
                await self.ingest(article)
            if event_clock:
                # End of the replay: let the last items' availability delay pass in event time.
                await self._emit(self.engine.advance(self.engine.clock + self.sentiment.availability_delay_ms * 1_000_000))
        finally:
            if ticker is not None:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
            self.finished.set()

    async def ingest(self, article: Article) -> None:
        """Dedup, publish the item, score it (when available) and publish the scores."""
        assert self.dedup is not None
        try:
            fresh = await self.dedup.first_seen(article)
        except RedisError as exc:
            # Dedup is a cache: without Redis the deterministic event ids still let consumers drop repeats.
            self.log.warning("dedup unavailable, publishing anyway: %s", exc)
            fresh = True
        if not fresh:
            DEDUP_HITS.labels(article.news_source).inc()
            return
        item = to_news_event(article, self.mapper, source=self.source, ts_init=self.now_ns())
        await self.publish([item])
        ITEMS.labels(item.news_source).inc()
        self._count_rate()
        await self._emit(self.engine.on_news(item))
        self._since_snapshot += 1
        if self._since_snapshot >= SNAPSHOT_EVERY:
            await self._save()

    async def _emit(self, scores: list[SentimentScored]) -> None:
        if scores:
            await self.publish(scores)
            SCORES.inc(len(scores))
        PENDING.set(self.engine.pending)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            await self._emit(self.engine.advance(time.time_ns()))

    def _count_rate(self) -> None:
        now = time.monotonic()
        self._window.append(now)
        self._window = [t for t in self._window if t > now - RATE_WINDOW_S]
        ITEMS_RATE.set(len(self._window) / RATE_WINDOW_S)

    async def _save(self) -> None:
        if self._snapshots is None:
            return
        try:
            await self._snapshots.save(self.engine.snapshot())
            self._since_snapshot = 0
        except RedisError as exc:
            self.log.warning("could not cache sentiment state: %s", exc)


def main() -> None:
    run_service(SentimentService)
