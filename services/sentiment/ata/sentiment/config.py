"""Settings of the sentiment service (env prefix ``ATA_SENTIMENT_``), frozen and validated at start-up.

Units are in the names (``*_ms`` milliseconds, ``*_s`` seconds, ``*_per_s`` rates). The
universe (symbol → company name and aliases) defaults to the shipped fictional universe; set
``ATA_SENTIMENT_UNIVERSE`` to a JSON object or ``ATA_SENTIMENT_UNIVERSE_FILE`` to a JSON file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from ata.runtime.config import ServiceSettings
from ata.sentiment.core import EngineParams, ScoringWeights
from ata.sentiment.fixtures import default_universe

NS_PER_MS = 1_000_000
SourceKind = Literal["none", "replay", "rss", "alpaca"]


class SentimentSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ATA_SENTIMENT_", frozen=True, extra="forbid")

    # Universe and entity mapping
    universe: dict[str, list[str]] = Field(default_factory=dict, description="symbol -> [company name, aliases...]")
    universe_file: Path | None = Field(None, description="JSON file with the universe (used when `universe` is empty)")
    cashtag_only: tuple[str, ...] = Field((), description="symbols recognised only as $CASHTAG (tickers that are words)")

    # Scoring and temporal model
    half_life_ms: int = Field(4 * 3600 * 1000, gt=0, description="decayed sentiment and volume halve in this time")
    availability_delay_ms: int = Field(60_000, ge=0, description="an item is usable from publication + this delay")
    novelty_items: int = Field(20, ge=1, description="recent items per symbol compared for novelty")
    novelty_window_ms: int = Field(24 * 3600 * 1000, gt=0, description="only items this recent count for novelty")
    decay_tick_ms: int = Field(0, ge=0, description="emit a decay update per symbol this often without news; 0 = off")
    neutral_band: float = Field(0.15, gt=0, lt=1, description="|score| at or below this is labelled neutral")

    # Sources
    source: SourceKind = Field("replay", description="where news comes from")
    replay_path: Path | None = Field(None, description="JSONL/CSV of timestamped headlines; empty: the shipped fixtures")
    replay_speed: float = Field(0.0, ge=0, description="1 = real time, 60 = a minute per second, 0 = as fast as possible")
    rss_urls: tuple[str, ...] = Field((), description="RSS/Atom feed URLs")
    poll_interval_ms: int = Field(60_000, gt=0, description="RSS and Alpaca REST polling period")
    http_timeout_ms: int = Field(10_000, gt=0, description="timeout of every HTTP request to a news source")
    alpaca_api_key: SecretStr | None = Field(None, description="Alpaca key id; unset: Alpaca source unavailable")
    alpaca_secret_key: SecretStr | None = Field(None, description="Alpaca secret key")
    alpaca_data_url: str = Field("", description="override of the Alpaca data REST base URL (testing, proxies)")
    alpaca_stream_url: str = Field("", description="Alpaca news stream URL (wss://.../v1beta1/news); empty: REST polling only")
    alpaca_silence_timeout_ms: int = Field(
        300_000, gt=0, description="restart the news stream when it brings nothing (message or connect) for this long"
    )
    alpaca_catchup_overlap_ms: int = Field(
        60_000, ge=0, description="after a (re)connect, REST catch-up starts this long before the newest item seen"
    )
    alpaca_symbols: tuple[str, ...] = Field((), description="symbols to ask Alpaca news for; empty: the universe")

    # Redis: rate limits and dedup
    rate_limit_per_s: float = Field(5.0, gt=0, description="requests per second each source may make (token bucket)")
    rate_limit_burst: int = Field(10, ge=1, description="token bucket capacity")
    dedup_ttl_s: int = Field(7 * 24 * 3600, gt=0, description="how long a seen article id/hash is remembered")
    redis_prefix: str = Field("ata:sentiment", min_length=1, description="prefix of every Redis key this service writes")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.source == "alpaca" and (self.alpaca_api_key is None or self.alpaca_secret_key is None):
            raise ValueError(
                "ATA_SENTIMENT_SOURCE=alpaca needs ATA_SENTIMENT_ALPACA_API_KEY and ATA_SENTIMENT_ALPACA_SECRET_KEY"
            )
        if self.source == "rss" and not self.rss_urls:
            raise ValueError("ATA_SENTIMENT_SOURCE=rss needs ATA_SENTIMENT_RSS_URLS")
        return self

    def resolved_universe(self) -> dict[str, list[str]]:
        """The configured universe: inline, else from ``universe_file``, else the shipped default."""
        if self.universe:
            return self.universe
        if self.universe_file is not None:
            data: dict[str, list[str]] = json.loads(self.universe_file.read_text(encoding="utf-8"))
            return dict(data)
        return default_universe()

    def engine_params(self) -> EngineParams:
        return EngineParams(
            half_life_ns=self.half_life_ms * NS_PER_MS,
            availability_delay_ns=self.availability_delay_ms * NS_PER_MS,
            novelty_items=self.novelty_items,
            novelty_window_ns=self.novelty_window_ms * NS_PER_MS,
            decay_tick_ns=self.decay_tick_ms * NS_PER_MS,
        )

    def weights(self) -> ScoringWeights:
        return ScoringWeights(neutral_band=self.neutral_band)
