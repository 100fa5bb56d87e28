"""Operator control commands, published on the control topic."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ata.events.envelope import Command
from ata.events.values import Symbol


class HaltTrading(Command):
    reason: str = Field(min_length=1, max_length=1000)


class ResumeTrading(Command):
    reason: str = Field(min_length=1, max_length=1000)


class FlattenAll(Command):
    reason: str = Field(min_length=1, max_length=1000)


class RiskLimits(BaseModel):
    """A partial update of risk limits; only the fields given change. Validated by risk."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_order_quantity: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_order_notional: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_position_notional: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_gross_exposure: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_net_exposure: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_orders_per_minute: int | None = Field(default=None, gt=0)
    price_collar_pct: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)
    max_leverage: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    daily_loss_limit_pct: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)


class SetRiskLimits(Command):
    limits: RiskLimits
    symbols: tuple[Symbol, ...] = Field(default=(), description="empty = portfolio-wide")
    reason: str = Field(min_length=1, max_length=1000)
