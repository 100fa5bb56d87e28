"""Event builders for tests and benchmarks that drive the risk core (deterministic ids)."""

from __future__ import annotations

import uuid
from typing import Any

from ata.events import (
    BarClosed,
    FillReported,
    OversightReviewed,
    QuoteUpdated,
    RegimeLabel,
    RegimeStateUpdated,
    Side,
    SubmitOrder,
    TargetProposed,
    Verdict,
)

NS_PER_S = 1_000_000_000
T0 = 1_700_000_000 * NS_PER_S
#: ``RiskSettings`` fields for sizing on equity alone: no volatility targeting, Kelly cap, regime
#: scaling, drawdown tiers or stress response, so a target weight becomes weight x equity / price.
EQUITY_SIZING: dict[str, Any] = {"position_vol_target_annual": 0.0, "kelly_fraction": 0.0, "regime_scaling_enabled": False,
                                 "drawdown_enabled": False, "stress_enabled": False}


def bar(symbol: str, ts: int, close: float, *, open_: float | None = None, high: float | None = None,
        low: float | None = None, volume: float = 1_000_000.0, timeframe: str = "1m") -> BarClosed:
    o = close if open_ is None else open_
    return BarClosed.origin(
        natural_key=("test", symbol, ts), ts_event=ts, ts_init=ts, source="marketdata/test", symbol=symbol, timeframe=timeframe,
        ts_open=ts, open=o, high=max(o, close) if high is None else high, low=min(o, close) if low is None else low,
        close=close, volume=volume,
    )


def quote(symbol: str, ts: int, bid: float, ask: float) -> QuoteUpdated:
    return QuoteUpdated.origin(natural_key=("test", symbol, ts), ts_event=ts, ts_init=ts, source="marketdata/test",
                               symbol=symbol, bid=bid, ask=ask)


def target(symbol: str, ts: int, weight: float, price: float, *, key: object = 0) -> TargetProposed:
    return TargetProposed.origin(natural_key=("test", symbol, ts, key), ts_event=ts, ts_init=ts, source="strategy/test",
                                 symbol=symbol, target_weight=weight, reference_price=price, method="test")


def regime(symbol: str, ts: int, label: RegimeLabel) -> RegimeStateUpdated:
    return RegimeStateUpdated.origin(natural_key=("test", symbol, ts), ts_event=ts, ts_init=ts, source="regime/test",
                                     symbol=symbol, label=label, confirmed_label=label, probabilities={label.value: 1.0},
                                     confidence=1.0)


def review(subject: TargetProposed, ts: int, verdict: Verdict, max_target_weight: float | None = None) -> OversightReviewed:
    return OversightReviewed.origin(natural_key=("test", subject.event_id), ts_event=ts, ts_init=ts, source="oversight/test",
                                    subject_event_id=subject.event_id, subject_type="TargetProposed", symbol=subject.symbol,
                                    verdict=verdict, rationale="test", confidence=1.0, max_target_weight=max_target_weight,
                                    provider="test", latency_ms=1.0)


def fill_for(order: SubmitOrder, ts: int, price: float, *, quantity: float | None = None, fee: float = 0.0,
             fill_no: int = 0) -> FillReported:
    qty = order.quantity if quantity is None else quantity
    return FillReported.origin(natural_key=("test", order.client_order_id, fill_no), ts_event=ts, ts_init=ts,
                               source="execution/test", fill_id=f"{order.client_order_id}-{fill_no}",
                               client_order_id=order.client_order_id, broker="sim", symbol=order.symbol, side=order.side,
                               quantity=qty, price=price, fee=fee)


def fill(symbol: str, ts: int, signed_quantity: float, price: float, *, client_order_id: str = "ata-manual",
         fill_no: int = 0, fee: float = 0.0) -> FillReported:
    """A fill not caused by a risk order (e.g. a position adopted at start)."""
    return FillReported.origin(natural_key=("test", client_order_id, fill_no, ts), ts_event=ts, ts_init=ts,
                               source="execution/test", fill_id=f"{client_order_id}-{fill_no}", client_order_id=client_order_id,
                               broker="sim", symbol=symbol, side=Side.BUY if signed_quantity > 0 else Side.SELL,
                               quantity=abs(signed_quantity), price=price, fee=fee)


def command(cls: Any, ts: int, **fields: Any) -> Any:
    """An operator command with a unique id."""
    return cls.origin(natural_key=("test", uuid.uuid4()), ts_event=ts, ts_init=ts, source="gateway/test", **fields)
