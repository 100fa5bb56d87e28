"""Settings of the market data service (env prefix ``ATA_MARKETDATA_``).

Examples::

    ATA_MARKETDATA_SOURCE=dataset ATA_MARKETDATA_DATASET=nasdaq ATA_MARKETDATA_SPEED_FACTOR=0
    ATA_MARKETDATA_SOURCE=replay ATA_MARKETDATA_REPLAY_PATHS='["bars/aapl.csv","bars/msft.parquet"]' \\
        ATA_MARKETDATA_TIMEFRAME=1m ATA_MARKETDATA_SPEED_FACTOR=60
    ATA_MARKETDATA_SOURCE=synthetic ATA_MARKETDATA_SEED=7 ATA_MARKETDATA_SYNTHETIC_SYMBOLS=20
    ATA_MARKETDATA_SOURCE=alpaca ATA_MARKETDATA_ALPACA_API_KEY=... ATA_MARKETDATA_ALPACA_SECRET_KEY=... \\
        ATA_MARKETDATA_SYMBOLS='["AAPL","MSFT"]'

List values are JSON. ``speed_factor`` 0 replays as fast as possible; 1 in real time; 60 a
minute per second. ``ATA_MARKETDATA_CLOSED_GAPS=skip`` shortens the market-closed stretches of a
paced replay: each night, weekend or holiday passes in at most ``closed_gap_max_wait_s`` (1 s)
of wall time, and the bars keep their times.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from ata.marketdata.core.integrity import IntegrityConfig
from ata.marketdata.core.records import timeframe_ns
from ata.runtime.config import ServiceSettings

_D = IntegrityConfig()


class MarketDataSettings(ServiceSettings):
    """Everything the market data service reads from the environment."""

    model_config = SettingsConfigDict(env_prefix="ATA_MARKETDATA_", frozen=True, extra="forbid")

    source: Literal["dataset", "replay", "synthetic", "alpaca"] = Field(default="dataset", description="Which source to run.")
    dataset: Literal["sp500", "nasdaq"] = Field(default="sp500", description="Built-in real daily series (source=dataset).")
    replay_paths: tuple[Path, ...] = Field(default=(), description="CSV/Parquet OHLCV files (source=replay), JSON list.")
    replay_name: str = Field(default="", max_length=64, description="Dataset name in event ids; default: the files' stems.")
    reference_paths: tuple[Path, ...] = Field(
        default=(), description="Files of a second source for the same bars; compared with the primary, never published."
    )
    timeframe: str = Field(default="1d", description="Bar size of replayed files, e.g. 1m, 5m, 1h, 1d.")
    symbols: tuple[str, ...] = Field(
        default=(), description="Symbols to replay (empty: all) / to subscribe (alpaca) / to name (synthetic)."
    )
    default_symbol: str = Field(default="", description="Symbol of files without a symbol column; default: the file's stem.")
    speed_factor: float = Field(
        default=0.0, ge=0.0, description="Replay pace: 0 as fast as possible, 1 real time, 60 a minute per second."
    )
    closed_gaps: Literal["wait", "skip"] = Field(
        default="wait", description="Paced replay (speed_factor > 0), market-closed stretches between two records (nights, "
        "weekends, holidays of the calendar): wait: waited out at speed_factor like open hours; skip: all of it "
        "beyond closed_gap_max_wait_s of wall time is skipped. Bar times stay as they are either way.")
    closed_gap_max_wait_s: float = Field(
        default=1.0, ge=0.0, allow_inf_nan=False, description="closed_gaps=skip: the most wall time one closed stretch takes.")
    lockstep_groups: tuple[str, ...] = Field(
        default=(), description="Historical replay in lock step: before each new bar time, wait until these consumer "
        "groups have handled everything on their topics (ata.runtime.quiescence); replaces speed_factor. Empty: off.")
    seed: int = Field(default=0, ge=0, description="Seed of the synthetic generator.")
    synthetic_symbols: int = Field(default=10, ge=1, le=5000, description="Number of synthetic symbols (when symbols is empty).")
    synthetic_timeframe: str = Field(default="1m", description="Bar size of synthetic bars (intraday).")
    synthetic_start: str = Field(default="2024-01-02", description="First session (ISO date) of synthetic bars.")
    synthetic_max_bars: int = Field(default=0, ge=0, description="Stop after this many synthetic bars (0: endless).")
    calendar: str = Field(
        default="XNYS", description="exchange-calendars code for sessions, holidays, early closes; empty: 24/7."
    )
    calendar_start: str = Field(default="1990-01-01", description="First date the calendar covers (ISO).")
    bulk_publish: bool = Field(default=True, description="Publish historical sources with the confluent bulk producer.")
    stale_check_interval_ms: int = Field(default=1000, ge=10, description="How often the stale-feed check runs.")

    spike_window_bars: int = Field(default=_D.spike_window_bars, ge=3, description="Returns in the robust z-score window.")
    spike_min_observations: int = Field(
        default=_D.spike_min_observations, ge=3, description="Returns needed before spikes are judged."
    )
    spike_robust_z_threshold: float = Field(
        default=_D.spike_robust_z_threshold, gt=0, description="|robust z| above this is a spike."
    )
    spike_min_scale: float = Field(default=_D.spike_min_scale, gt=0, description="Floor of the robust scale of log returns.")
    spike_max_consecutive: int = Field(
        default=_D.spike_max_consecutive, ge=1, description="Spikes in a row before a new level is accepted."
    )
    max_staleness_ms: int = Field(
        default=_D.max_staleness_ms, ge=0, description="A bar overdue by more than this is a stale feed."
    )
    detect_gaps: bool = Field(default=_D.detect_gaps, description="Report missing bars within sessions.")
    quarantine_zero_volume: bool = Field(
        default=_D.quarantine_zero_volume, description="Withhold zero-volume bars (else info only)."
    )
    disagreement_tolerance_bps: float = Field(
        default=_D.disagreement_tolerance_bps, ge=0, description="Two-source close tolerance."
    )
    breaker_window_bars: int = Field(default=_D.breaker_window_bars, ge=1, description="Bars the data breaker looks back over.")
    breaker_open_after_anomalies: int = Field(
        default=_D.breaker_open_after_anomalies, ge=1, description="Anomalous bars that open it."
    )
    breaker_close_after_clean_bars: int = Field(
        default=_D.breaker_close_after_clean_bars, ge=1, description="Clean bars that close it."
    )
    on_bad_row: Literal["skip", "stop"] = Field(default=_D.on_bad_row, description="Malformed row: report and go on, or stop.")

    alpaca_api_key: SecretStr | None = Field(default=None, description="Alpaca key id (source=alpaca).")
    alpaca_secret_key: SecretStr | None = Field(default=None, description="Alpaca secret key (source=alpaca).")
    alpaca_feed: Literal["iex", "sip"] = Field(default="iex", description="Alpaca market data feed.")
    alpaca_stream_url: str = Field(default="", description="Override of the Alpaca stream URL (a local fake in tests).")
    alpaca_data_url: str = Field(default="", description="Override of the Alpaca data REST URL.")
    alpaca_timeout_s: float = Field(default=10.0, gt=0, description="Timeout of every Alpaca request and of connect/auth.")
    alpaca_silence_timeout_s: float = Field(
        default=90.0, gt=0, description="No message for this long: the stream is reconnected."
    )
    alpaca_backoff_initial_s: float = Field(default=0.5, gt=0, description="First reconnect wait.")
    alpaca_backoff_cap_s: float = Field(default=30.0, gt=0, description="Longest reconnect wait.")
    alpaca_quotes: bool = Field(default=False, description="Also stream top-of-book quotes (published to market.quotes.v1).")
    alpaca_backfill_bars: int = Field(default=30, ge=0, description="Bars fetched over REST after a reconnect to fill the hole.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for name in ("timeframe", "synthetic_timeframe"):
            try:
                timeframe_ns(getattr(self, name))
            except ValueError as exc:
                raise ValueError(f"ATA_MARKETDATA_{name.upper()} (field {name}): {exc}") from None
        if self.source == "replay" and not self.replay_paths:
            raise ValueError("ATA_MARKETDATA_REPLAY_PATHS (field replay_paths): required when source=replay")
        if self.source == "alpaca" and (self.alpaca_api_key is None or self.alpaca_secret_key is None):
            raise ValueError("ATA_MARKETDATA_ALPACA_API_KEY and ATA_MARKETDATA_ALPACA_SECRET_KEY are required when source=alpaca")
        if self.source == "alpaca" and self.closed_gaps == "skip":
            raise ValueError("ATA_MARKETDATA_CLOSED_GAPS (field closed_gaps): live bars arrive as the market makes them, "
                             "a closed market cannot be skipped; set it to wait (the default) when source=alpaca")
        if self.source == "alpaca" and not self.symbols:
            raise ValueError("ATA_MARKETDATA_SYMBOLS (field symbols): required when source=alpaca")
        try:
            self.integrity()
        except ValueError as exc:
            raise ValueError(f"inconsistent integrity thresholds: {exc}") from None
        return self

    def integrity(self) -> IntegrityConfig:
        """The core's thresholds (same field names)."""
        own = type(self).model_fields
        return IntegrityConfig(**{name: getattr(self, name) for name in IntegrityConfig.__dataclass_fields__ if name in own})
