"""Settings of the strategy service (env prefix ``ATA_STRATEGY_``), frozen and validated at start-up."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from ata.quant.portfolio.plugins import load_optimiser_plugins
from ata.runtime.config import ServiceSettings
from ata.strategy.core.coordination import CoordinationConfig
from ata.strategy.core.meta import DEFAULT_METHODS, MetaConfig, Method
from ata.strategy.core.portfolio import PortfolioSettings
from ata.strategy.core.strategies import BUILTIN


@cache
def _optimiser_plugins_loaded() -> None:
    """Register ``ata.optimisers`` plugins once, so a config naming one validates."""
    load_optimiser_plugins()


class StrategySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ATA_STRATEGY_", frozen=True, extra="forbid")

    strategies: tuple[str, ...] = Field(tuple(BUILTIN), description="strategies to run, built-in or plugin names")
    params: dict[str, dict[str, float]] = Field(default_factory=dict, description="per-strategy parameter overrides")
    symbols: tuple[str, ...] = Field((), description="universe; empty: every symbol with bars")
    timeframe: str | None = Field(None, description="only bars of this timeframe (e.g. 1d); none: all")
    methods_by_regime: dict[str, Method] = Field(default_factory=lambda: dict(DEFAULT_METHODS))
    default_method: Method = Method.EQUAL
    halflife_bars: float = Field(63.0, gt=0)
    min_history_bars: int = Field(20, ge=1)
    periods_per_year: float = Field(252.0, gt=0)
    min_agreement: float = Field(0.2, ge=0, le=1)
    max_abs_target: float = Field(1.0, gt=0, le=10)
    switching: bool = True
    switch_off_sharpe: float = -0.5
    switch_on_sharpe: float = 0.0
    min_dwell_bars: int = Field(21, ge=0)
    adaptive_parameters: bool = True
    coordination: CoordinationConfig | None = Field(
        None, description="cross-strategy coordination as JSON (rolling strategy correlation down-weights redundant "
                          "strategies; risk budgets per strategy for the risk_budget method); none: off")
    publish_signals: bool = Field(True, description="publish each strategy's SignalGenerated (strategy.signals.v1) "
                                                  "when it changes; targets are published either way")
    policy_path: Path | None = Field(None, description="numpy RL policy (.npz); the rl method falls back without it")
    state_key: str = Field("ata:strategy:state", min_length=1, description="Redis key of the engine state cache")
    state_save_every_messages: int = Field(500, gt=0)
    portfolio: PortfolioSettings | None = Field(
        None, description="optimise the targets of the universe (symbols) together before proposing them, as JSON "
                          "(optimisers by regime, covariance, limits, rebalancing thresholds); none: per-symbol targets")

    @model_validator(mode="before")
    @classmethod
    def _plugins(cls, data: Any) -> Any:
        _optimiser_plugins_loaded()
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        self.meta_config()  # raises ValueError naming the problem
        if self.portfolio is not None and not self.symbols:
            raise ValueError("portfolio construction needs the universe: set symbols")
        return self

    def meta_config(self) -> MetaConfig:
        return MetaConfig(
            strategies=self.strategies, params=self.params, methods_by_regime=dict(self.methods_by_regime),
            default_method=self.default_method, halflife_bars=self.halflife_bars, min_history_bars=self.min_history_bars,
            periods_per_year=self.periods_per_year, min_agreement=self.min_agreement, max_abs_target=self.max_abs_target,
            switching=self.switching, switch_off_sharpe=self.switch_off_sharpe, switch_on_sharpe=self.switch_on_sharpe,
            min_dwell_bars=self.min_dwell_bars, adaptive_parameters=self.adaptive_parameters,
            coordination=self.coordination,
        )
