"""Settings of the regime service (env prefix ``ATA_REGIME_``), frozen and validated at start-up.

Windows and periods count bars of the incoming timeframe, and nothing rescales them by bar size.
The defaults suit daily bars; for one-minute bars scale them up (see
``ata.regime.evaluation.SYNTHETIC_PARAMS``), the refit cadence above all: with the daily
defaults a key is refitted every 250 minutes, and refits then cost far more than the
per-bar work (README, "Refit cadence and bar size").
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ata.regime.core import DetectorParams
from ata.runtime.config import ServiceSettings


class RegimeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ATA_REGIME_", frozen=True, extra="forbid")

    bars_topic: str = Field("market.bars.v1", min_length=1, description="topic of the input bars")
    states_topic: str = Field("regime.states.v1", min_length=1, description="topic of RegimeStateUpdated / RegimeChanged")
    state_key: str = Field("ata:regime:state", min_length=1, description="Redis key of the detector state cache")
    state_save_every_bars: int = Field(500, gt=0, description="bars between state cache writes (and one on stop)")
    refit_executor: Literal["process", "thread"] = Field("process", description="where model fits run, off the event loop")
    refit_workers: int = Field(1, gt=0, le=32)

    momentum_lookbacks: tuple[int, ...] = (20, 60, 120)
    trend_window_bars: int = Field(60, gt=1)
    rv_window_bars: int = Field(20, gt=1)
    rv_history_bars: int = Field(1000, gt=1)
    volume_window_bars: int = Field(60, gt=1)
    amihud_window_bars: int = Field(60, gt=0)
    correlation_window_bars: int = Field(60, gt=2)
    correlation_history_bars: int = Field(1000, gt=1)
    fit_window_bars: int = Field(1000, ge=50)
    min_fit_bars: int = Field(250, ge=50)
    refit_every_bars: int = Field(250, gt=0)
    em_iterations: int = Field(30, gt=0)
    three_state_keys: Literal["none", "market", "all"] = "market"
    crisis_rv_percentile: float = Field(0.9, gt=0, lt=1)
    trend_threshold: float = Field(0.5, ge=0)
    trend_softness: float = Field(0.25, gt=0)
    hysteresis_bars: int = Field(5, gt=0)
    probability_margin: float = Field(0.1, ge=0, lt=1)
    min_bucket_bars: int = Field(3, gt=0)

    def detector_params(self) -> DetectorParams:
        return DetectorParams(
            momentum_lookbacks=self.momentum_lookbacks,
            trend_window=self.trend_window_bars,
            rv_window=self.rv_window_bars,
            rv_history_bars=self.rv_history_bars,
            volume_window=self.volume_window_bars,
            amihud_window=self.amihud_window_bars,
            correlation_window=self.correlation_window_bars,
            correlation_history_bars=self.correlation_history_bars,
            fit_window_bars=self.fit_window_bars,
            min_fit_bars=self.min_fit_bars,
            refit_every_bars=self.refit_every_bars,
            em_iterations=self.em_iterations,
            three_state_keys=self.three_state_keys,
            crisis_rv_percentile=self.crisis_rv_percentile,
            trend_threshold=self.trend_threshold,
            trend_softness=self.trend_softness,
            hysteresis_bars=self.hysteresis_bars,
            probability_margin=self.probability_margin,
            min_bucket_bars=self.min_bucket_bars,
        )
