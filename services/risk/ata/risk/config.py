"""Settings of the risk service (env prefix ``ATA_RISK_``), frozen and validated at start-up.

Units are in the names: ``*_pct`` are fractions (0.05 == 5 %), ``*_notional`` and
``*_exposure`` are money, ``*_ms`` milliseconds, ``*_annual`` annualised. A feature set to
``0`` where documented is switched off.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from ata.events import RegimeLabel
from ata.runtime.config import ServiceSettings

DEFAULT_REGIME_SCALES: dict[str, float] = {
    RegimeLabel.BULL_QUIET: 1.0,
    RegimeLabel.BULL_VOLATILE: 0.75,
    RegimeLabel.SIDEWAYS: 0.75,
    RegimeLabel.BEAR_QUIET: 0.6,
    RegimeLabel.BEAR_VOLATILE: 0.4,
    RegimeLabel.CRISIS: 0.2,
}


class RiskSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ATA_RISK_", frozen=True, extra="forbid")

    # Account and universe
    initial_cash: float = Field(1_000_000.0, gt=0, description="starting cash of the paper account (money)")
    symbols: tuple[str, ...] = Field((), description="tradable universe; empty: any symbol with market data")
    lot_size: float = Field(1.0, gt=0, description="order quantities are rounded down to this multiple")
    min_trade_notional: float = Field(0.0, ge=0, description="rebalances smaller than this (money) send no order")

    # Limits (portfolio-wide defaults; SetRiskLimits changes them at run time)
    max_order_quantity: float = Field(1_000_000.0, gt=0)
    max_order_notional: float = Field(250_000.0, gt=0)
    max_position_notional: float = Field(500_000.0, gt=0)
    max_gross_exposure: float = Field(2_000_000.0, gt=0)
    max_net_exposure: float = Field(1_500_000.0, gt=0)
    max_cluster_exposure_pct: float = Field(1.0, gt=0, description="gross of one correlation cluster / equity")
    max_orders_per_minute: int = Field(120, gt=0)
    order_burst: int = Field(20, gt=0, description="orders the rate throttle lets through back to back")
    price_collar_pct: float = Field(0.05, gt=0, le=1)
    max_staleness_ms: int = Field(120_000, gt=0, description="market data older than this denies orders")
    max_leverage: float = Field(2.0, gt=0, description="gross exposure / equity")
    daily_loss_limit_pct: float = Field(0.05, gt=0, le=1)

    # Sizing
    bars_per_year: float = Field(252.0, gt=0, description="annualisation factor of the bar series")
    position_vol_target_annual: float = Field(0.15, ge=0, description="vol of a weight-1 position; 0 = off")
    portfolio_vol_target_annual: float = Field(0.0, ge=0, description="cap on estimated portfolio vol; 0 = off")
    max_vol_scale: float = Field(3.0, gt=0)
    default_vol_annual: float = Field(0.30, gt=0, description="assumed vol until the estimate is warm")
    kelly_fraction: float = Field(0.5, ge=0, description="fractional Kelly cap; 0 = off")
    kelly_assumed_sharpe: float = Field(0.5, gt=0)
    atr_stop_multiple: float = Field(3.0, gt=0)
    risk_per_trade_pct: float = Field(0.0, ge=0, le=1, description="equity lost if the ATR stop is hit; 0 = off")
    margin_rate: float = Field(0.5, gt=0, le=1, description="initial margin per unit of gross notional")
    vol_ewma_lambda: float = Field(0.94, gt=0, lt=1)
    min_vol_observations: int = Field(20, ge=1)
    atr_bars: int = Field(14, ge=1)

    # Regime-aware scaling
    regime_scaling_enabled: bool = True
    regime_scales: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_REGIME_SCALES))

    # Drawdown tiers
    drawdown_enabled: bool = True
    drawdown_warning_pct: float = Field(0.05, gt=0, le=1)
    drawdown_critical_pct: float = Field(0.10, gt=0, le=1)
    drawdown_fatal_pct: float = Field(0.20, gt=0, le=1)
    drawdown_warning_scale: float = Field(0.5, ge=0, le=1)

    # Stress early warning, emergency unwind, auto-hedge
    stress_enabled: bool = True
    stress_short_vol_lambda: float = Field(0.80, gt=0, lt=1)
    stress_long_vol_lambda: float = Field(0.99, gt=0, lt=1)
    stress_vol_spike_ratio: float = Field(2.0, gt=1)
    stress_correlation_spike: float = Field(0.85, gt=0, le=1)
    stress_correlation_window_bars: int = Field(10, ge=3)
    stress_liquidity_drop_ratio: float = Field(0.2, gt=0, lt=1)
    stress_spread_spike_ratio: float = Field(3.0, gt=1)
    stress_level_scales: tuple[float, float, float, float, float] = (1.0, 0.75, 0.5, 0.25, 0.0)
    stress_reducing_level: int = Field(2, ge=1, le=4)
    stress_unwind_level: int = Field(3, ge=1, le=4)
    unwind_enabled: bool = False
    unwind_participation_pct: float = Field(0.1, gt=0, le=1, description="share of average bar volume per slice")
    volume_ewma_lambda: float = Field(0.95, gt=0, lt=1)
    hedge_enabled: bool = False
    hedge_symbol: str = "SPY"
    hedge_max_net_beta: float = Field(0.5, gt=0, description="|sum beta x value| / equity that triggers a hedge")

    # Correlation clusters
    correlation_window_bars: int = Field(60, ge=3)
    correlation_refresh_bars: int = Field(20, ge=1, description="recompute clusters every N bar timestamps")
    cluster_threshold: float = Field(0.7, gt=0, le=1)

    # Oversight
    oversight_mode: Literal["off", "advisory", "gating"] = "off"
    oversight_timeout_ms: int = Field(5_000, gt=0)
    oversight_fallback: Literal["deny", "allow"] = "deny"
    oversight_min_notional: float = Field(0.0, ge=0, description="gating: targets at least this large wait for a verdict")

    # Ordering: a bar time's fills and marks before its targets
    target_wait_ms: int = Field(
        2_000, ge=0, description="a target waits for its bar time's fills and marks (see ata.risk.core.engine) at most "
        "this long on the service's wall clock; 0 = targets never wait")

    # Snapshots and service shell
    snapshot_interval_ms: int = Field(60_000, gt=0, description="portfolio snapshot period in event time")
    state_key: str = Field("ata:risk:state", min_length=1, description="Redis key of the engine state cache")
    state_save_every_messages: int = Field(500, gt=0, description="cache the engine state after this many messages")
    clock: Literal["market", "wall"] = Field(
        "market", description="market: now is the latest market data time received (paper trading over replayed data; "
        "an oversight timeout fires on the next event past it); wall: the machine clock, ticked every tick_interval_ms")
    tick_interval_ms: int = Field(250, gt=0, description="wall-clock tick for oversight timeouts (clock=wall)")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not self.drawdown_warning_pct < self.drawdown_critical_pct < self.drawdown_fatal_pct:
            raise ValueError("drawdown tiers must satisfy warning < critical < fatal")
        scales = self.stress_level_scales
        if any(not 0 <= s <= 1 for s in scales) or list(scales) != sorted(scales, reverse=True):
            raise ValueError("stress_level_scales must be within [0, 1] and not increase with the level")
        if self.stress_short_vol_lambda >= self.stress_long_vol_lambda:
            raise ValueError("stress_short_vol_lambda must be below stress_long_vol_lambda")
        if unknown := sorted(set(self.regime_scales) - {label.value for label in RegimeLabel}):
            raise ValueError(f"regime_scales has unknown labels: {', '.join(unknown)}")
        if any(not 0 <= v <= 1 for v in self.regime_scales.values()):
            raise ValueError("regime_scales values must be within [0, 1]")
        return self
