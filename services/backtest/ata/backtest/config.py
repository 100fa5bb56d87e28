"""Backtest configuration: which cores run, and each core's own settings.

A config file (TOML or JSON) has one table per part; every table is optional::

    stages = ["regime", "strategy", "oversight", "risk", "execution"]   # the pipeline
    periods_per_year = 252        # annualisation of the equity curve (one point per bar time)

    [strategy]                    # ata.strategy.core.MetaConfig fields, plus the strategy service's
    strategies = ["ma_crossover", "ts_momentum"]     # symbols, timeframe, publish_signals and portfolio
    symbols = ["SYNA", "SYNB"]    # the universe (needed by portfolio construction)

    [strategy.portfolio]          # ata.strategy.core.portfolio.PortfolioSettings (ATA_STRATEGY_PORTFOLIO)
    covariance_window_bars = 126

    [risk]                        # ata.risk.config.RiskSettings fields (ATA_RISK_* names without prefix)
    initial_cash = 1000000

    [execution]                   # simulated broker: slippage model, bps, fees, latency, participation
    slippage = "fixed_bps"
    slippage_bps = 1.0

    [oversight]                   # ata.oversight.config.OversightSettings fields; the provider is always the rules
    mode = "advisory"

    [regime]                      # ata.regime.core.DetectorParams fields
    refit_every_bars = 250

    [sentiment]                   # news replay for the sentiment core
    news = "news.jsonl"

Stage names are the live services' names; a stage left out is simply not composed (its
inputs go nowhere, its outputs are never produced), so the pipeline can run before every core
has landed, or without sentiment when there is no news. Market data and portfolio accounting
always run. The settings classes are the services' own, so a value valid for a live service is
valid here, validated the same way.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ata.execution.config import ExecutionSettings

StageName = Literal["regime", "sentiment", "strategy", "oversight", "risk", "execution"]
#: Pipeline order (also the order handlers subscribe, which fixes delivery order per message).
STAGE_ORDER: tuple[StageName, ...] = ("execution", "regime", "sentiment", "strategy", "oversight", "risk")
DEFAULT_STAGES: tuple[StageName, ...] = ("regime", "sentiment", "strategy", "oversight", "risk", "execution")


def _live(field: str) -> Any:
    """The execution service's default of ``ATA_EXECUTION_<FIELD>``: a backtest trades like paper trading unless told
    otherwise (a default of its own would break backtest/live parity without anyone noticing)."""
    return ExecutionSettings.model_fields[field].default


class ExecutionConfig(BaseModel):
    """The simulated broker of the backtest (execution's ``ATA_EXECUTION_SIM_*`` settings and defaults)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    slippage: Literal["fixed_bps", "half_spread", "sqrt_impact"] = _live("sim_slippage")
    slippage_bps: float = Field(_live("sim_slippage_bps"), ge=0)
    fee_bps: float = Field(_live("sim_fee_bps"), ge=0)
    latency_ms: float = Field(_live("sim_latency_ms"), ge=0)
    participation: float = Field(_live("sim_participation"), gt=0, le=1)


class BacktestConfig(BaseModel):
    """Everything a run needs besides the data. Unknown keys are refused, naming the key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stages: tuple[StageName, ...] = DEFAULT_STAGES
    periods_per_year: float = Field(252.0, gt=0)
    bus: Literal["direct", "memory"] = Field(
        "direct", description="direct: lean in-process dispatcher; memory: ata.runtime.bus.InMemoryBus (encodes every message)"
    )
    strategy: dict[str, Any] = Field(default_factory=dict)
    risk: dict[str, Any] = Field(default_factory=dict)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    oversight: dict[str, Any] = Field(default_factory=lambda: {"mode": "advisory"})
    regime: dict[str, Any] = Field(default_factory=dict)
    sentiment: dict[str, Any] = Field(default_factory=dict)

    @field_validator("stages")
    @classmethod
    def _unique(cls, stages: tuple[StageName, ...]) -> tuple[StageName, ...]:
        if len(set(stages)) != len(stages):
            raise ValueError("stages must not repeat")
        return stages

    def has(self, stage: StageName) -> bool:
        return stage in self.stages

    def stages_in_order(self) -> list[StageName]:
        """The configured stages in :data:`STAGE_ORDER` (the order they subscribe)."""
        return [name for name in STAGE_ORDER if name in self.stages]

    @classmethod
    def load(cls, path: Path | None) -> BacktestConfig:
        """Read a TOML (``.toml``) or JSON file; ``None`` gives the defaults."""
        if path is None:
            return cls()
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
        return cls.model_validate(data)
