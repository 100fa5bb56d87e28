"""Engine behaviour: targets to orders, oversight gating, drawdown tiers, control, stress, snapshots."""

from __future__ import annotations

import itertools
import json
import math
import random
from typing import Any

import pytest

from ata.events import (
    DenialReason,
    FlattenAll,
    HaltTrading,
    Message,
    OrderDenied,
    PortfolioSnapshotTaken,
    RegimeLabel,
    ResumeTrading,
    RiskLimits,
    RiskLimitsChanged,
    SetRiskLimits,
    Side,
    SubmitOrder,
    TradingState,
    TradingStateChanged,
    Verdict,
    client_order_id_for,
)
from ata.risk.config import RiskSettings
from ata.risk.core import RiskEngine, intent_for
from ata.risk.testing import EQUITY_SIZING, NS_PER_S, T0, bar, command, fill, fill_for, regime, review, target

MINUTE = 60 * NS_PER_S
PLAIN: dict[str, Any] = {"symbols": ("AAA", "BBB", "SPY"), **EQUITY_SIZING, "max_order_notional": 1_000_000.0,
                         "max_position_notional": 1_000_000.0}


def engine_with(**overrides: Any) -> RiskEngine:
    return RiskEngine(RiskSettings(**{**PLAIN, **overrides}))


def warm(engine: RiskEngine, symbols: tuple[str, ...] = ("AAA",), bars: int = 30, seed: int = 3) -> int:
    """Feed ``bars`` minute bars ending at exactly 100; return the last bar's time."""
    rnd = random.Random(seed)
    moves = [math.exp(rnd.gauss(0, 0.01)) for _ in range(bars)]
    price = 100.0 / math.prod(moves)
    for i, move in enumerate(moves):
        price *= move
        for symbol in symbols:
            engine.handle(bar(symbol, T0 + i * MINUTE, 100.0 if i == bars - 1 else price))
    return T0 + (bars - 1) * MINUTE


def only(messages: list[Message], cls: type[Any]) -> list[Any]:
    return [m for m in messages if isinstance(m, cls)]


def test_risk_check_order_decides_like_a_target() -> None:
    """``check_order`` with the quantity sizing chose gives the very order ``handle`` gives; a denial likewise.
    (Targets do not wait for fills here: the first order never fills.)"""
    sized, direct = engine_with(target_wait_ms=0), engine_with(target_wait_ms=0)
    now = warm(sized)
    assert warm(direct) == now
    t = target("AAA", now, 0.25, 100.0)
    [order] = only(sized.handle(t), SubmitOrder)
    assert direct.check_order(t, "AAA", order.quantity, t.reference_price, order.reason) == [order]
    assert direct.open_orders == sized.open_orders and direct.bucket == sized.bucket
    for engine in (sized, direct):
        engine.handle(command(HaltTrading, now + 1, reason="test"))
    later = target("AAA", now + 2, -0.25, 100.0)
    [denied] = only(sized.handle(later), OrderDenied)
    assert direct.check_order(later, "AAA", -2500.0, later.reference_price) == [denied]
    assert denied.reason is DenialReason.TRADING_HALTED


def test_risk_target_becomes_order_with_deterministic_intent() -> None:
    engine = engine_with()
    now = warm(engine)
    t = target("AAA", now, 0.25, 100.0)
    [order] = only(engine.handle(t), SubmitOrder)
    assert order.intent_id == intent_for(t.event_id)
    assert order.client_order_id == client_order_id_for(order.intent_id)
    assert order.side is Side.BUY and order.quantity == 2500  # 25 % of 1,000,000 at 100
    assert order.causation_id == t.event_id and order.correlation_id == t.correlation_id
    # The same target again: the order in flight already covers it, nothing new is sent.
    assert only(engine.handle(t), SubmitOrder) == []
    engine.handle(fill_for(order, now + 1, 100.0))
    assert engine.portfolio.quantity("AAA") == 2500 and engine.open_orders == {}


def test_risk_volatility_targeting_scales_inverse_to_vol() -> None:
    sizes = []
    for vol in (0.005, 0.02):
        engine = engine_with(position_vol_target_annual=0.15, bars_per_year=252)
        rnd = random.Random(1)
        price = 100.0
        for i in range(60):
            price *= math.exp(rnd.gauss(0, vol))
            engine.handle(bar("AAA", T0 + i * MINUTE, price))
        [order] = only(engine.handle(target("AAA", T0 + 59 * MINUTE, 0.3, price)), SubmitOrder)
        sigma = math.sqrt(engine.markets["AAA"].variance * 252)
        weight = order.quantity * price / engine.portfolio.equity
        assert weight == pytest.approx(0.3 * min(3.0, 0.15 / sigma), rel=1e-3)
        sizes.append(weight)
    assert sizes[0] > sizes[1]


def test_risk_regime_scaling_and_kelly_cap() -> None:
    engine = engine_with(regime_scaling_enabled=True)
    now = warm(engine)
    engine.handle(regime("_market", now, RegimeLabel.BEAR_VOLATILE))
    [order] = only(engine.handle(target("AAA", now, 0.5, 100.0)), SubmitOrder)
    assert order.quantity == pytest.approx(0.5 * 0.4 * 10_000)
    capped = engine_with(kelly_fraction=0.5, kelly_assumed_sharpe=0.5, default_vol_annual=0.3, min_vol_observations=1000)
    now = warm(capped)
    [order] = only(capped.handle(target("AAA", now, 1.5, 100.0)), SubmitOrder)
    assert order.quantity == math.floor(0.5 * 0.5 / 0.3 * 10_000)


@pytest.mark.parametrize(("verdict", "cap", "expected"), [
    (Verdict.APPROVE, None, 2500.0),
    (Verdict.MODIFY, 0.1, 1000.0),
    (Verdict.REJECT, None, DenialReason.OVERSIGHT_REJECTED),
    (Verdict.ESCALATE, None, DenialReason.OVERSIGHT_REJECTED),
    (Verdict.UNREVIEWED, None, DenialReason.OVERSIGHT_TIMEOUT),
    (Verdict.MODIFY, None, DenialReason.OVERSIGHT_TIMEOUT),
])
def test_risk_oversight_gating_verdicts(verdict: Verdict, cap: float | None, expected: float | DenialReason) -> None:
    engine = engine_with(oversight_mode="gating", oversight_fallback="deny")
    now = warm(engine)
    t = target("AAA", now, 0.25, 100.0)
    assert engine.handle(t) == []  # waits for the verdict
    out = engine.handle(review(t, now + 1, verdict, cap))
    if isinstance(expected, DenialReason):
        [denied] = only(out, OrderDenied)
        assert denied.reason is expected and denied.intent_id == intent_for(t.event_id)
        assert only(out, SubmitOrder) == []
    else:
        [order] = only(out, SubmitOrder)
        assert order.quantity == expected and order.intent_id == intent_for(t.event_id)


@pytest.mark.parametrize(("fallback", "expect_order"), [("deny", False), ("allow", True)])
def test_risk_oversight_timeout_follows_policy(fallback: str, expect_order: bool) -> None:
    engine = engine_with(oversight_mode="gating", oversight_fallback=fallback, oversight_timeout_ms=5000)
    now = warm(engine)
    t = target("AAA", now, 0.25, 100.0)
    assert engine.handle(t) == []
    assert engine.advance(now + 4_999_000_000) == []
    out = engine.advance(now + 5_000_000_000)
    assert bool(only(out, SubmitOrder)) is expect_order
    if not expect_order:
        assert only(out, OrderDenied)[0].reason is DenialReason.OVERSIGHT_TIMEOUT
    # A late verdict changes nothing.
    assert engine.handle(review(t, now + 6 * NS_PER_S, Verdict.APPROVE)) == []


def test_risk_oversight_verdict_arriving_before_target_is_applied() -> None:
    engine = engine_with(oversight_mode="gating")
    now = warm(engine)
    t = target("AAA", now, 0.25, 100.0)
    assert engine.handle(review(t, now, Verdict.REJECT)) == []
    assert only(engine.handle(t), OrderDenied)[0].reason is DenialReason.OVERSIGHT_REJECTED


def test_risk_drawdown_tiers_scale_reduce_halt_and_flatten() -> None:
    engine = engine_with(drawdown_enabled=True, drawdown_warning_pct=0.05, drawdown_critical_pct=0.10, drawdown_fatal_pct=0.20,
                         daily_loss_limit_pct=0.9)
    now = warm(engine)
    engine.handle(fill("AAA", now, 10_000, 100.0))  # fully invested: drawdown follows the price
    out = engine.handle(bar("AAA", now + MINUTE, 94.0))
    assert only(out, TradingStateChanged) == [] and engine._risk_scale("AAA") == 0.5
    [change] = only(engine.handle(bar("AAA", now + 2 * MINUTE, 89.0)), TradingStateChanged)
    assert change.current is TradingState.REDUCING and "CRITICAL" in change.reason
    out = engine.handle(bar("AAA", now + 3 * MINUTE, 79.0))
    [change] = only(out, TradingStateChanged)
    assert change.current is TradingState.HALTED and "FATAL" in change.reason
    [flatten] = only(out, SubmitOrder)
    assert flatten.side is Side.SELL and flatten.quantity == 10_000
    # Fatal latches: recovery does not resume; the operator does.
    assert only(engine.handle(bar("AAA", now + 4 * MINUTE, 100.0)), TradingStateChanged) == []
    [change] = only(engine.handle(command(ResumeTrading, now + 5 * MINUTE, reason="reviewed")), TradingStateChanged)
    assert change.current is TradingState.ACTIVE and engine.portfolio.drawdown == 0.0


def test_risk_control_commands_and_limits() -> None:
    engine = engine_with()
    now = warm(engine)
    [c] = only(engine.handle(command(HaltTrading, now, reason="maintenance")), TradingStateChanged)
    assert (c.previous, c.current) == (TradingState.ACTIVE, TradingState.HALTED) and "maintenance" in c.reason
    assert only(engine.handle(target("AAA", now, 0.1, 100.0)), OrderDenied)[0].reason is DenialReason.TRADING_HALTED
    [c] = only(engine.handle(command(ResumeTrading, now, reason="done")), TradingStateChanged)
    assert c.current is TradingState.ACTIVE
    bad = command(SetRiskLimits, now, limits=RiskLimits(max_net_exposure=5e6), reason="widen")
    [answer] = only(engine.handle(bad), RiskLimitsChanged)
    assert not answer.accepted and "max_net_exposure" in answer.reason
    per_symbol_bad = command(SetRiskLimits, now, limits=RiskLimits(max_leverage=1.0), symbols=("AAA",), reason="x")
    assert not only(engine.handle(per_symbol_bad), RiskLimitsChanged)[0].accepted
    good = command(SetRiskLimits, now, limits=RiskLimits(max_order_quantity=100), symbols=("AAA",), reason="tighten")
    assert only(engine.handle(good), RiskLimitsChanged)[0].accepted
    [order] = only(engine.handle(target("AAA", now, 0.25, 100.0)), SubmitOrder)
    assert order.quantity == 100  # stepped toward the target within the new per-symbol limit
    [c] = only(engine.handle(command(FlattenAll, now, reason="eod")), TradingStateChanged)
    assert c.current is TradingState.REDUCING


def test_risk_stress_crisis_and_vol_spike_reduce_and_unwind_by_liquidity() -> None:
    engine = engine_with(stress_enabled=True, unwind_enabled=True, stress_reducing_level=2, stress_unwind_level=2,
                         unwind_participation_pct=0.5, min_vol_observations=5)
    rnd = random.Random(5)
    price = {"AAA": 100.0, "BBB": 100.0}
    for i in range(40):
        for s, p in price.items():
            price[s] = p * math.exp(rnd.gauss(0, 0.001))
            engine.handle(bar(s, T0 + i * MINUTE, price[s], volume=1000.0))
    now = T0 + 39 * MINUTE
    engine.handle(fill("AAA", now, 3000, price["AAA"], client_order_id="ata-a"))
    engine.handle(fill("BBB", now, 1000, price["BBB"], client_order_id="ata-b"))
    engine.handle(regime("_market", now, RegimeLabel.CRISIS))
    assert engine.stress.level == 1 and engine.states.state is TradingState.ACTIVE
    out = engine.handle(bar("AAA", now + MINUTE, price["AAA"] * 0.9, volume=1000.0))  # vol spike
    [c] = only(out, TradingStateChanged)
    assert c.current is TradingState.REDUCING and "crisis" in c.reason and "vol_spike" in c.reason
    slices = only(out, SubmitOrder)
    # Largest risk first (AAA), each slice at most half of the average bar volume.
    assert [s.symbol for s in slices] == ["AAA", "BBB"] and all(s.side is Side.SELL for s in slices)
    assert all(s.quantity <= 500 for s in slices)
    sent = sum(s.quantity for s in slices if s.symbol == "AAA")
    for k in range(2, 10):
        sent += sum(s.quantity for s in only(engine.handle(bar("AAA", now + k * MINUTE, 90.0, volume=1000.0)), SubmitOrder))
    assert sent == 3000


def test_risk_auto_hedge_sells_index_when_net_beta_exceeds_limit() -> None:
    engine = engine_with(hedge_enabled=True, hedge_symbol="SPY", hedge_max_net_beta=0.2, correlation_refresh_bars=10)
    rnd = random.Random(9)
    prices = {"AAA": 100.0, "SPY": 100.0}
    for i in range(25):
        move = rnd.gauss(0, 0.01)
        prices["SPY"] *= math.exp(move)
        prices["AAA"] *= math.exp(1.5 * move)
        for s, p in prices.items():
            out = engine.handle(bar(s, T0 + i * MINUTE, p))
        if i == 5:
            engine.handle(fill("AAA", T0 + i * MINUTE, 3000, prices["AAA"]))
    hedges = [m for m in out if isinstance(m, SubmitOrder) and m.symbol == "SPY"]
    assert engine.betas["AAA"] == pytest.approx(1.5, rel=1e-6)
    assert len(hedges) <= 1
    all_hedges = [o for o in engine.open_orders.values() if o[0] == "SPY"]
    assert len(all_hedges) == 1 and all_hedges[0][1] < 0
    beta_value = 1.5 * 3000 * prices["AAA"]
    assert -all_hedges[0][1] * prices["SPY"] == pytest.approx(beta_value, rel=0.05)


def test_risk_portfolio_snapshots_follow_event_time_schedule() -> None:
    engine = engine_with(snapshot_interval_ms=300_000)
    snaps = []
    for i in range(30):
        snaps += only(engine.handle(bar("AAA", T0 + i * MINUTE, 100.0 + i)), PortfolioSnapshotTaken)
    assert len(snaps) == 6  # every 5 minutes of event time
    assert all(b.ts_event - a.ts_event == 300 * NS_PER_S for a, b in itertools.pairwise(snaps))
    assert snaps[-1].equity == engine.portfolio.equity


def _scenario(seed: int) -> list[Message]:
    """A mixed stream: bars, targets, fills of the engine's own orders (via a tiny simulator)."""
    rnd = random.Random(seed)
    events: list[Message] = []
    prices = {"AAA": 100.0, "BBB": 50.0}
    for i in range(120):
        ts = T0 + i * MINUTE
        for s, p in prices.items():
            prices[s] = p * math.exp(rnd.gauss(0, 0.01))
            events.append(bar(s, ts, prices[s]))
        if i > 25 and i % 3 == 0:
            s = rnd.choice(list(prices))
            events.append(target(s, ts, rnd.uniform(-0.6, 0.6), prices[s]))
        if i == 60:
            events.append(command(HaltTrading, ts, reason="pause"))
        if i == 70:
            events.append(command(ResumeTrading, ts, reason="go"))
    return events


def _run(engine: RiskEngine, events: list[Message]) -> list[Message]:
    """Feed events; fill every order at the next bar's price of its symbol (in the stream order)."""
    out: list[Message] = []
    queue: list[SubmitOrder] = []
    for event in events:
        produced = engine.handle(event)
        out += produced
        queue += only(produced, SubmitOrder)
        if queue and hasattr(event, "close"):
            ready = [o for o in queue if o.symbol == event.symbol]
            for k, o in enumerate(ready):
                out += engine.handle(fill_for(o, event.ts_event, event.close, fee=1.0, fill_no=k))
            queue = [o for o in queue if o.symbol != event.symbol]
    return out


@pytest.mark.parametrize("cut", [40, 200, 333])
def test_risk_snapshot_plus_replay_equals_uninterrupted(cut: int) -> None:
    settings = RiskSettings(**{**PLAIN, "stress_enabled": True, "drawdown_enabled": True, "kelly_fraction": 0.5,
                               "position_vol_target_annual": 0.2, "correlation_refresh_bars": 7})
    events = _scenario(11)
    whole = RiskEngine(settings)
    out_whole = _run(whole, events)
    first = RiskEngine(settings)
    _run(first, events[:cut])
    restored = RiskEngine.restore(settings, json.loads(json.dumps(first.snapshot())))
    out_tail = _run(restored, events[cut:])
    assert restored.snapshot() == whole.snapshot()
    tail_ids = [m.event_id for m in out_tail]
    assert tail_ids == [m.event_id for m in out_whole[-len(tail_ids):]] if tail_ids else True
    assert only(out_whole, SubmitOrder) and only(out_whole, PortfolioSnapshotTaken)
