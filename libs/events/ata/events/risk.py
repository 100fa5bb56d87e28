"""Risk decisions, trading state and portfolio snapshots."""

from __future__ import annotations

import uuid
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from ata.events.control import RiskLimits
from ata.events.envelope import Event
from ata.events.values import Money, NonNegativeFloat, Price, SignedQuantity, Symbol


class DenialReason(StrEnum):
    """Stable reason codes. Never renumber or rename: dashboards and alerts key on them."""

    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
    INVALID_QUANTITY = "INVALID_QUANTITY"
    INVALID_PRICE = "INVALID_PRICE"
    MAX_ORDER_QUANTITY = "MAX_ORDER_QUANTITY"
    MAX_ORDER_NOTIONAL = "MAX_ORDER_NOTIONAL"
    MAX_POSITION = "MAX_POSITION"
    GROSS_EXPOSURE = "GROSS_EXPOSURE"
    NET_EXPOSURE = "NET_EXPOSURE"
    CLUSTER_EXPOSURE = "CLUSTER_EXPOSURE"
    ORDER_RATE = "ORDER_RATE"
    PRICE_COLLAR = "PRICE_COLLAR"
    STALE_MARKET_DATA = "STALE_MARKET_DATA"
    DATA_UNRELIABLE = "DATA_UNRELIABLE"
    TRADING_HALTED = "TRADING_HALTED"
    REDUCING_ONLY = "REDUCING_ONLY"
    OVERSIGHT_REJECTED = "OVERSIGHT_REJECTED"
    OVERSIGHT_TIMEOUT = "OVERSIGHT_TIMEOUT"
    JOURNAL_UNAVAILABLE = "JOURNAL_UNAVAILABLE"
    LEVERAGE = "LEVERAGE"
    DAILY_LOSS = "DAILY_LOSS"


class OrderDenied(Event):
    """Risk refused an intent. ``reason`` is a stable code, ``detail`` is for humans."""

    intent_id: uuid.UUID
    symbol: Symbol
    reason: DenialReason
    detail: str = Field(default="", max_length=1000)


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class TradingStateChanged(Event):
    previous: TradingState | None
    current: TradingState
    reason: str = Field(max_length=1000)


class PositionView(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: Symbol
    quantity: SignedQuantity
    avg_price: NonNegativeFloat
    mark_price: Price | None = None
    realized_pnl: Money = 0.0
    unrealized_pnl: Money = 0.0


class PortfolioSnapshotTaken(Event):
    positions: tuple[PositionView, ...]
    cash: Money
    equity: Money
    realized_pnl: Money
    unrealized_pnl: Money
    fees: NonNegativeFloat = 0.0
    gross_exposure: NonNegativeFloat = 0.0
    net_exposure: Money = 0.0
    drawdown: float = Field(default=0.0, ge=0.0, le=1.0, allow_inf_nan=False)
    trading_state: TradingState = TradingState.ACTIVE


class RiskLimitsChanged(Event):
    """Risk's answer to ``SetRiskLimits``: applied (``accepted``) or refused with the reason."""

    accepted: bool
    requested: RiskLimits
    symbols: tuple[Symbol, ...] = Field(default=(), description="empty = portfolio-wide")
    reason: str = Field(max_length=1000, description="why it was refused, or the operator's reason when applied")
