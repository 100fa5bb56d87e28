"""Slippage models against their closed forms, and the simulated exchange's fill rules."""

from __future__ import annotations

import math
import uuid

import pytest

from ata.events import BarClosed, OrderStatus, OrderType, QuoteUpdated, Side, TimeInForce
from ata.execution.brokers.simulated import FaultKind, FeeModel, SimConfig, SimulatedExchange
from ata.execution.core.ports import (
    AmbiguousOutcomeError,
    BrokerUnavailableError,
    DuplicateClientOrderIdError,
    OrderRejectedError,
    OrderRequest,
)
from ata.execution.core.slippage import (
    FixedBps,
    HalfSpread,
    MarketState,
    SquareRootImpact,
    cost_bps,
    fixed_bps_price,
    half_spread_price,
    sqrt_impact_price,
)

T0 = 1_700_000_000_000_000_000  # 2023-11-14 22:13:20 UTC
MIN = 60_000_000_000


def quote(symbol: str, bid: float, ask: float, ts: int, *, bid_size: float = 0.0, ask_size: float = 0.0) -> QuoteUpdated:
    return QuoteUpdated.origin(natural_key=(symbol, ts), ts_event=ts, ts_init=ts, source="test", symbol=symbol, bid=bid, ask=ask,
                               bid_size=bid_size, ask_size=ask_size)


def bar(symbol: str, ohlcv: tuple[float, float, float, float, float], ts_open: int) -> BarClosed:
    o, h, low, c, v = ohlcv
    ts = ts_open + MIN
    return BarClosed.origin(natural_key=(symbol, ts), ts_event=ts, ts_init=ts, source="test", symbol=symbol, timeframe="1m",
                            ts_open=ts_open, open=o, high=h, low=low, close=c, volume=v)


def req(qty: float = 100, side: Side = Side.BUY, **kw: object) -> OrderRequest:
    return OrderRequest(client_order_id=f"ata-{uuid.uuid4()}", symbol="AAPL", side=side, quantity=qty, **kw)  # type: ignore[arg-type]


# -- slippage closed forms -------------------------------------------------------------------------
@pytest.mark.parametrize(("side", "expected"), [(Side.BUY, 100.05), (Side.SELL, 99.95)])
def test_fixed_bps_closed_form(side: Side, expected: float) -> None:
    assert fixed_bps_price(100.0, side, 5.0) == pytest.approx(expected)
    assert FixedBps(5.0).fill_price(side, MarketState(bid=99.0, ask=101.0), 1) == pytest.approx(expected)  # from the mid
    assert cost_bps(side, 100.0, expected) == pytest.approx(5.0)


@pytest.mark.parametrize(("side", "expected"), [(Side.BUY, 100.02), (Side.SELL, 99.98)])
def test_half_spread_closed_form(side: Side, expected: float) -> None:
    assert half_spread_price(99.98, 100.02, side) == pytest.approx(expected)
    assert HalfSpread().fill_price(side, MarketState(bid=99.98, ask=100.02), 10) == pytest.approx(expected)
    assert HalfSpread().fill_price(side, MarketState(last=50.0), 10) == 50.0  # no quote: the reference


@pytest.mark.parametrize(("qty", "volume", "sigma", "y"), [(10_000, 1_000_000, 0.02, 1.0), (2_500, 10_000, 0.015, 0.7)])
def test_square_root_impact_closed_form(qty: float, volume: float, sigma: float, y: float) -> None:
    expected_buy = 100.0 * (1 + y * sigma * math.sqrt(qty / volume))
    buy = sqrt_impact_price(100.0, Side.BUY, quantity=qty, volume=volume, volatility=sigma, coefficient=y)
    assert buy == pytest.approx(expected_buy)
    expected_sell = 100.0 * (1 - y * sigma * math.sqrt(qty / volume))
    model = SquareRootImpact(volatility=sigma, coefficient=y)
    assert model.fill_price(Side.SELL, MarketState(last=100.0, volume=volume), qty) == pytest.approx(expected_sell)
    # impact grows with the square root of participation: 4x the size costs 2x
    small = sqrt_impact_price(100.0, Side.BUY, quantity=qty, volume=volume, volatility=sigma, coefficient=y) - 100
    big = sqrt_impact_price(100.0, Side.BUY, quantity=4 * qty, volume=volume, volatility=sigma, coefficient=y) - 100
    assert big == pytest.approx(2 * small)


def test_fee_model() -> None:
    fees = FeeModel(bps=1.0, per_share=0.005, minimum=1.0)
    assert fees.fee(100, 50.0) == pytest.approx(max(1.0, 100 * 50 * 1e-4 + 0.5))
    assert fees.fee(10_000, 50.0) == pytest.approx(10_000 * 50 * 1e-4 + 50)


# -- exchange --------------------------------------------------------------------------------------
def test_market_order_partial_fills_by_participation_then_completes() -> None:
    ex = SimulatedExchange(SimConfig(participation=0.1, fees=FeeModel(per_share=0.01)))
    r = req(100)
    assert ex.submit(r, T0).status is OrderStatus.ACCEPTED
    [u] = ex.on_quote(quote("AAPL", 9.99, 10.01, T0 + 1, ask_size=300))
    assert u.status is OrderStatus.PARTIALLY_FILLED and u.cum_filled_qty == pytest.approx(30)
    assert u.avg_fill_price == pytest.approx(10.01) and u.cum_fee == pytest.approx(0.30)
    ex.on_quote(quote("AAPL", 9.99, 10.03, T0 + 2, ask_size=500))
    [u] = ex.on_quote(quote("AAPL", 9.99, 10.05, T0 + 3, ask_size=5000))
    assert u.status is OrderStatus.FILLED and u.cum_filled_qty == 100
    assert u.avg_fill_price == pytest.approx((30 * 10.01 + 50 * 10.03 + 20 * 10.05) / 100)
    page = ex.fills_since(None)
    assert [f.quantity for f in page.fills] == pytest.approx([30, 50, 20])
    assert ex.fills_since(page.cursor).fills == ()
    [pos] = ex.positions()
    assert pos.quantity == 100 and pos.avg_price == pytest.approx(u.avg_fill_price)


def test_latency_in_event_time_delays_eligibility() -> None:
    ex = SimulatedExchange(SimConfig(latency_ns=5_000))
    ex.submit(req(10), T0)
    assert ex.on_quote(quote("AAPL", 10, 10.02, T0 + 4_999)) == []
    [u] = ex.on_quote(quote("AAPL", 10, 10.02, T0 + 5_000))
    assert u.status is OrderStatus.FILLED


def test_limit_and_stop_orders_on_quotes_and_bars() -> None:
    ex = SimulatedExchange()
    lim = req(10, order_type=OrderType.LIMIT, limit_price=9.95)
    stop = req(10, side=Side.SELL, order_type=OrderType.STOP, stop_price=9.90)
    ex.submit(lim, T0)
    ex.submit(stop, T0)
    assert ex.on_quote(quote("AAPL", 9.96, 9.98, T0 + 1)) == []  # above the limit, above the stop
    [u] = ex.on_quote(quote("AAPL", 9.93, 9.95, T0 + 2))
    assert u.client_order_id == lim.client_order_id and u.avg_fill_price == pytest.approx(9.95)
    # bar trades down through the stop: it triggers and fills at min(open, stop)
    [u] = ex.on_bar(bar("AAPL", (9.94, 9.95, 9.80, 9.85, 1000), T0 + 10))
    assert u.client_order_id == stop.client_order_id and u.avg_fill_price == pytest.approx(9.90)


def test_limit_on_bar_fills_at_better_open() -> None:
    ex = SimulatedExchange()
    lim = req(10, order_type=OrderType.LIMIT, limit_price=10.0)
    ex.submit(lim, T0)
    [u] = ex.on_bar(bar("AAPL", (9.90, 10.1, 9.8, 10.0, 1000), T0))
    assert u.avg_fill_price == pytest.approx(9.90)


def test_day_orders_expire_at_session_close_gtc_do_not() -> None:
    ex = SimulatedExchange(SimConfig(session_close_hour_utc=20))
    day = req(10, order_type=OrderType.LIMIT, limit_price=1.0)
    gtc = req(10, order_type=OrderType.LIMIT, limit_price=1.0, time_in_force=TimeInForce.GTC)
    start = (T0 // 86_400_000_000_000) * 86_400_000_000_000 + 14 * 3_600_000_000_000  # 14:00 UTC
    ex.submit(day, start)
    ex.submit(gtc, start)
    assert ex.advance(start + 5 * 3_600_000_000_000) == []  # 19:00
    [u] = ex.advance(start + 6 * 3_600_000_000_000)  # 20:00
    assert u.client_order_id == day.client_order_id and u.status is OrderStatus.EXPIRED
    assert [o.client_order_id for o in ex.open_orders()] == [gtc.client_order_id]


def test_duplicate_client_order_id_is_refused_and_faults_are_injectable() -> None:
    ex = SimulatedExchange()
    r = req(10)
    ex.submit(r, T0)
    with pytest.raises(DuplicateClientOrderIdError, match="client_order_id must be unique"):
        ex.submit(r, T0)
    ex.inject(FaultKind.REJECT)
    with pytest.raises(OrderRejectedError):
        ex.submit(req(10), T0)
    ex.inject(FaultKind.DISCONNECT)
    lost = req(10)
    with pytest.raises(BrokerUnavailableError):
        ex.submit(lost, T0)
    assert ex.get(lost.client_order_id) is None
    ex.inject(FaultKind.TIMEOUT)
    placed = req(10)
    with pytest.raises(AmbiguousOutcomeError):
        ex.submit(placed, T0)
    found = ex.get(placed.client_order_id)
    assert found is not None and found.status is OrderStatus.ACCEPTED
    ex.inject(FaultKind.DUPLICATE_REPORT)
    dup = req(10)
    seq = ex.update_seq
    ex.submit(dup, T0)
    updates, _ = ex.updates_since(seq)
    assert [u.client_order_id for u in updates] == [dup.client_order_id] * 2


def test_fault_rates_are_seeded_and_reproducible() -> None:
    def outcomes(seed: int) -> list[str]:
        ex = SimulatedExchange(SimConfig(fault_rates={FaultKind.REJECT: 0.3}, seed=seed))
        out = []
        for _ in range(50):
            try:
                ex.submit(req(1), T0)
                out.append("ok")
            except OrderRejectedError:
                out.append("rej")
        return out

    assert outcomes(7) == outcomes(7)
    assert 5 < outcomes(7).count("rej") < 30
