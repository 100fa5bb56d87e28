"""Targets beyond an exposure limit are sized down to it (denied only when nothing fits, once while the
same target stays at the same limit), and a backlog of targets is judged at its own bar times (rate
throttle, staleness) on the market clock."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ata.events import DenialReason, Message, OrderDenied, RiskLimits, SetRiskLimits, SubmitOrder
from ata.risk.config import RiskSettings
from ata.risk.core import RiskEngine
from ata.risk.testing import EQUITY_SIZING, NS_PER_S, T0, bar, command, fill, fill_for, target

MINUTE = 60 * NS_PER_S


def engine_with(**overrides: Any) -> RiskEngine:
    engine = RiskEngine(RiskSettings(**{"symbols": ("AAA", "BBB"), **EQUITY_SIZING, "max_order_notional": 1e6, **overrides}))
    for symbol in ("AAA", "BBB"):
        engine.handle(bar(symbol, T0, 100.0))
    return engine


def orders(messages: list[Message]) -> list[SubmitOrder]:
    return [m for m in messages if isinstance(m, SubmitOrder)]


def denials(messages: list[Message]) -> list[OrderDenied]:
    return [m for m in messages if isinstance(m, OrderDenied)]


# (limit settings, held (AAA, BBB), AAA target weight, expected signed order quantity, binding limit); leverage
# is not here: sizing already caps a target at max_leverage.
CLIPS = [
    ({"max_position_notional": 300_000.0}, (0, 0), 0.5, 3000, DenialReason.MAX_POSITION),
    ({"max_position_notional": 300_000.0}, (0, 0), -0.5, -3000, DenialReason.MAX_POSITION),
    ({"max_position_notional": 300_000.0}, (1000, 0), 0.5, 2000, DenialReason.MAX_POSITION),
    ({"max_gross_exposure": 600_000.0, "max_net_exposure": 600_000.0, "max_order_notional": 500_000.0}, (0, 4000), 0.5, 2000,
     DenialReason.GROSS_EXPOSURE),
    ({"max_net_exposure": 450_000.0}, (0, 3000), 0.5, 1500, DenialReason.NET_EXPOSURE),
    ({"max_position_notional": 1e6, "max_cluster_exposure_pct": 0.2}, (0, 0), 0.5, 2000, DenialReason.CLUSTER_EXPOSURE),
    ({"max_position_notional": 150_000.0, "max_cluster_exposure_pct": 0.2}, (0, 0), 0.5, 1500, DenialReason.MAX_POSITION),
]


@pytest.mark.parametrize(("limits", "held", "weight", "expected", "binding"), CLIPS)
def test_risk_target_beyond_a_limit_is_sized_down_to_it(limits: dict[str, float], held: tuple[int, int], weight: float,
                                                        expected: int, binding: DenialReason) -> None:
    engine = engine_with(**limits)
    for symbol, qty in zip(("AAA", "BBB"), held, strict=True):
        if qty:
            engine.handle(fill(symbol, T0, qty, 100.0, client_order_id=f"ata-hold-{symbol}"))
    [order] = orders(engine.handle(target("AAA", T0, weight, 100.0)))
    assert order.quantity * order.side.sign == expected
    assert f"clipped by {binding.value}" in order.reason and engine.clips == {binding.value: 1}


def test_risk_position_limit_denies_only_when_nothing_can_be_traded() -> None:
    engine = engine_with(max_position_notional=300_000.0)
    engine.handle(fill("AAA", T0, 3000, 100.0, client_order_id="ata-hold-AAA"))
    [denied] = denials(engine.handle(target("AAA", T0, 0.5, 100.0)))
    assert denied.reason is DenialReason.MAX_POSITION and engine.clips == {}
    [reducing] = orders(engine.handle(target("AAA", T0, 0.1, 100.0, key=1)))  # reducing orders are never clipped
    assert reducing.quantity == 2000 and "clipped" not in reducing.reason


def test_risk_a_target_held_at_its_limit_is_denied_once_until_target_or_limit_changes() -> None:
    """A position already at its limit and a target asking for more, bar after bar: one denial when the limit
    starts binding, then none while target weight and limits stay the same (each repeat counted, also across a
    restore from the cached state); a new weight, new limits, or the limit binding again after an order each get
    their denial."""
    settings = RiskSettings(symbols=("AAA",), **EQUITY_SIZING, max_order_notional=1e6, max_position_notional=300_000.0)
    engine = RiskEngine(settings)
    engine.handle(bar("AAA", T0, 100.0))
    engine.handle(fill("AAA", T0, 3000, 100.0, client_order_id="ata-hold-AAA"))  # 300,000: at the position limit

    def decide(minute: int, weight: float) -> list[Message]:
        """The decisions (orders, denials) on a ``weight`` target for AAA at ``minute``, after its bar."""
        engine.handle(bar("AAA", T0 + minute * MINUTE, 100.0))
        return [m for m in engine.handle(target("AAA", T0 + minute * MINUTE, weight, 100.0))
                if isinstance(m, SubmitOrder | OrderDenied)]

    [first] = decide(1, 0.5)
    assert isinstance(first, OrderDenied) and first.reason is DenialReason.MAX_POSITION
    assert decide(2, 0.5) == [] and decide(3, 0.5) == []
    assert engine.repeats_suppressed == {"MAX_POSITION": 2} and engine.decisions == {"MAX_POSITION": 1}
    engine = RiskEngine.restore(settings, json.loads(json.dumps(engine.snapshot())))
    assert decide(4, 0.5) == [] and engine.repeats_suppressed == {"MAX_POSITION": 3}

    [new_weight] = decide(5, 0.6)
    assert isinstance(new_weight, OrderDenied) and new_weight.reason is DenialReason.MAX_POSITION
    assert decide(6, 0.6) == []
    tighter = RiskLimits(max_position_notional=250_000.0)
    engine.handle(command(SetRiskLimits, T0 + 7 * MINUTE, limits=tighter, symbols=("AAA",), reason="tighten"))
    [new_limits] = decide(7, 0.6)
    assert isinstance(new_limits, OrderDenied) and new_limits.reason is DenialReason.MAX_POSITION
    assert decide(8, 0.6) == []

    [reducing] = decide(9, 0.1)  # to 1,000: trading resumes, the episode ends
    assert isinstance(reducing, SubmitOrder) and reducing.quantity == 2000
    engine.handle(fill_for(reducing, T0 + 10 * MINUTE, 100.0))
    [back_up] = decide(10, 0.6)  # to the 250,000 limit
    assert isinstance(back_up, SubmitOrder) and back_up.quantity == 1500 and "clipped by MAX_POSITION" in back_up.reason
    engine.handle(fill_for(back_up, T0 + 11 * MINUTE, 100.0))
    [again] = decide(11, 0.6)
    assert isinstance(again, OrderDenied) and again.reason is DenialReason.MAX_POSITION
    assert decide(12, 0.6) == []
    assert engine.repeats_suppressed == {"MAX_POSITION": 6} and engine.decisions["MAX_POSITION"] == 4


def test_risk_a_backlog_of_targets_is_throttled_and_judged_stale_at_its_own_bar_times() -> None:
    """Bars ran ahead of strategy (a replay backlog): AAA's bars to T0+60 min and BBB's to T0+5 min
    reached risk before BBB's targets of the first five minutes; each is judged at its bar time."""
    settings = {"max_orders_per_minute": 2, "order_burst": 2, "max_staleness_ms": 120_000}
    market, wall = engine_with(**settings), engine_with(**settings, clock="wall")
    out: dict[str, list[Message]] = {"market": [], "wall": []}
    for name, engine in (("market", market), ("wall", wall)):
        for minute in range(1, 61):
            engine.handle(bar("AAA", T0 + minute * MINUTE, 100.0))
        for minute in range(1, 6):
            engine.handle(bar("BBB", T0 + minute * MINUTE, 100.0))
        for minute in range(1, 6):
            produced = engine.handle(target("BBB", T0 + minute * MINUTE, 0.01 * minute, 100.0))
            out[name] += produced
            out[name] += [m for o in orders(produced) for m in engine.handle(fill_for(o, T0 + minute * MINUTE, 100.0))]
    assert len(orders(out["market"])) == 5 and denials(out["market"]) == []
    # The wall clock's now is the latest time seen: BBB's data is 55 minutes old there.
    assert {d.reason for d in denials(out["wall"])} == {DenialReason.STALE_MARKET_DATA}


def test_risk_order_rate_is_measured_on_the_causes_bar_times() -> None:
    """Twelve targets of one bar time against a burst of ten: ten orders, two rate denials; the
    next bar time refills the bucket, however far ahead the bars risk has seen."""
    engine = engine_with(max_orders_per_minute=10, order_burst=10, target_wait_ms=0)
    for minute in range(1, 31):
        engine.handle(bar("AAA", T0 + minute * MINUTE, 100.0))
    first = [m for k in range(12) for m in engine.handle(target("AAA", T0 + MINUTE, 0.001 * (k + 1), 100.0, key=k))]
    assert len(orders(first)) == 10 and [d.reason for d in denials(first)] == [DenialReason.ORDER_RATE] * 2
    later = engine.handle(target("AAA", T0 + 2 * MINUTE, 0.05, 100.0))
    assert len(orders(later)) == 1
