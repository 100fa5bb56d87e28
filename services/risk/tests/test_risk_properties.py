"""Property: over random targets, prices and positions, no order leaving risk violates a configured limit."""

from __future__ import annotations

import math
import random

from hypothesis import event, given, settings
from hypothesis import strategies as st

from ata.events import Side, SubmitOrder
from ata.risk.config import RiskSettings
from ata.risk.core import RiskEngine
from ata.risk.testing import NS_PER_S, T0, bar, fill, fill_for, target

SYMBOLS = ("AAA", "BBB", "CCC")
MINUTE = 60 * NS_PER_S
TOL = 1e-9

limit_sets = st.fixed_dictionaries({
    "max_order_quantity": st.floats(10, 5_000),
    "max_order_notional": st.floats(5_000, 200_000),
    "max_position_notional": st.floats(20_000, 400_000),
    "max_gross_exposure": st.floats(400_000, 1_500_000),
    "net_fraction": st.floats(0.1, 1.0),
    "max_leverage": st.floats(0.3, 3.0),
    "max_cluster_exposure_pct": st.floats(0.2, 2.0),
    "price_collar_pct": st.floats(0.01, 0.2),
})
steps = st.lists(
    st.tuples(st.sampled_from(SYMBOLS), st.floats(-2.0, 2.0), st.floats(-0.03, 0.03), st.floats(0.9, 1.1), st.booleans()),
    min_size=5, max_size=40,
)


@settings(max_examples=120, deadline=None)
@given(limit_sets, steps, st.integers(0, 2**16), st.dictionaries(st.sampled_from(SYMBOLS), st.integers(-3000, 3000), max_size=3))
def test_risk_no_order_violates_a_limit(limits: dict[str, float], plan: list[tuple[str, float, float, float, bool]], seed: int,
                                        start: dict[str, int]) -> None:
    net_fraction = limits.pop("net_fraction")
    # Each target is decided when handled (no waiting for fills), so its orders are checked against the state here.
    config = RiskSettings(symbols=SYMBOLS, max_net_exposure=limits["max_gross_exposure"] * net_fraction, drawdown_enabled=False,
                          stress_enabled=False, correlation_refresh_bars=5, min_trade_notional=0.0, target_wait_ms=0, **limits)
    engine = RiskEngine(config)
    rnd = random.Random(seed)
    prices = {s: 50.0 + 50 * rnd.random() for s in SYMBOLS}
    ts = T0
    for _ in range(25):
        ts += MINUTE
        for s in SYMBOLS:
            prices[s] *= math.exp(rnd.gauss(0, 0.01))
            engine.handle(bar(s, ts, prices[s]))
    for k, (s, qty) in enumerate(start.items()):
        if qty:
            engine.handle(fill(s, ts, qty, prices[s], client_order_id=f"ata-start-{k}"))
    sent = 0
    for step, (symbol, weight, move, ref_ratio, fill_now) in enumerate(plan):
        ts += MINUTE
        prices[symbol] *= math.exp(move)
        engine.handle(bar(symbol, ts, prices[symbol]))
        lim = engine.limits.for_symbol(symbol)
        held = {s: engine.portfolio.quantity(s) + engine._pending(s) for s in SYMBOLS}
        marks = {s: engine.markets[s].last_price for s in SYMBOLS}
        equity = engine.portfolio.equity
        gross = sum(abs(held[s]) * marks[s] for s in SYMBOLS)
        net = sum(held[s] * marks[s] for s in SYMBOLS)
        cluster = [s for s in SYMBOLS if engine.cluster_of.get(s, s) == engine.cluster_of.get(symbol, symbol)]
        out = engine.handle(target(symbol, ts, weight, prices[symbol] * ref_ratio, key=step))
        for order in (m for m in out if isinstance(m, SubmitOrder)):
            sent += 1
            signed = order.quantity * (1 if order.side is Side.BUY else -1)
            price = marks[symbol]
            new = held[symbol] + signed
            increases = abs(new) > abs(held[symbol])
            assert order.quantity <= lim.max_order_quantity * (1 + TOL)
            assert order.quantity * price <= lim.max_order_notional * (1 + TOL)
            assert abs(ref_ratio * price - price) / price <= lim.price_collar_pct + TOL
            if increases:
                new_gross = gross + (abs(new) - abs(held[symbol])) * price
                assert abs(new) * price <= lim.max_position_notional * (1 + TOL)
                assert new_gross <= lim.max_gross_exposure * (1 + TOL)
                assert new_gross / equity <= lim.max_leverage * (1 + TOL)
                cluster_gross = sum(abs(held[s]) * marks[s] for s in cluster if s != symbol) + abs(new) * price
                assert cluster_gross <= lim.max_cluster_exposure_pct * equity * (1 + TOL)
            new_net = net + signed * price
            assert abs(new_net) <= lim.max_net_exposure * (1 + TOL) or abs(new_net) <= abs(net)
            if fill_now:
                engine.handle(fill_for(order, ts, prices[symbol]))
    event(f"orders sent: {'none' if sent == 0 else 'some'}")  # statistics show the property is not vacuous
