"""Volatility targeting on the real S&P 500 series lands within ±20 % of the target volatility."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from arch.data import sp500

from ata.events import SubmitOrder
from ata.risk.config import RiskSettings
from ata.risk.core import RiskEngine
from ata.risk.testing import bar, fill_for, target

BIG = 1e12
OPEN_OFFSET = pd.Timedelta(hours=14, minutes=30)
CLOSE_OFFSET = pd.Timedelta(hours=21)


@pytest.mark.parametrize("vol_target", [0.08, 0.12])
def test_risk_sp500_volatility_targeting_hits_target(vol_target: float) -> None:
    data = sp500.load()
    engine = RiskEngine(RiskSettings(
        symbols=("SPX",), bars_per_year=252, position_vol_target_annual=vol_target, kelly_fraction=0.0,
        regime_scaling_enabled=False, drawdown_enabled=False, stress_enabled=False, max_leverage=3.0, margin_rate=0.25,
        max_order_quantity=BIG, max_order_notional=BIG, max_position_notional=BIG, max_gross_exposure=BIG, max_net_exposure=BIG,
        max_orders_per_minute=1000, price_collar_pct=0.5, max_staleness_ms=10 * 86_400_000, daily_loss_limit_pct=1.0,
        snapshot_interval_ms=86_400_000 * 365, initial_cash=1_000_000.0, lot_size=0.0001,
    ))
    equity = []
    pending: list[SubmitOrder] = []
    orders = 0
    for day, row in data.iterrows():
        ts_open = int((pd.Timestamp(day).tz_localize("UTC") + OPEN_OFFSET).value)
        ts_close = int((pd.Timestamp(day).tz_localize("UTC") + CLOSE_OFFSET).value)
        for k, order in enumerate(pending):  # yesterday's orders fill at today's open
            engine.handle(fill_for(order, ts_open, float(row["Open"]), fill_no=k))
        pending = []
        close = float(row["Close"])
        engine.handle(bar("SPX", ts_close, close, open_=float(row["Open"]), high=float(row["High"]), low=float(row["Low"]),
                          volume=float(row["Volume"]), timeframe="1d"))
        equity.append(engine.portfolio.equity)
        pending = [m for m in engine.handle(target("SPX", ts_close, 1.0, close)) if isinstance(m, SubmitOrder)]
        orders += len(pending)
    returns = np.diff(np.log(equity))[60:]  # skip the estimator's warm-up
    realised = float(returns.std(ddof=1) * np.sqrt(252))
    buy_and_hold = float(np.diff(np.log(data["Close"].to_numpy())).std(ddof=1) * np.sqrt(252))
    assert orders > 1000  # rebalanced continually, not a single buy
    assert abs(buy_and_hold - vol_target) > 0.2 * vol_target  # the target is not met by doing nothing
    assert abs(realised / vol_target - 1) <= 0.20, (realised, vol_target)
