"""A bar time's fills and marks before its targets: a target waits for the fills of orders sent
before its bar time and for the bars of that time of its symbol and the held ones, so its order is
the same whatever reaches risk first."""

from __future__ import annotations

import json
from typing import Any

from ata.events import Message, OrderCanceled, SubmitOrder, TargetProposed
from ata.risk.config import RiskSettings
from ata.risk.core import RiskEngine
from ata.risk.testing import EQUITY_SIZING, NS_PER_S, T0, bar, fill_for, target

MINUTE = 60 * NS_PER_S
#: Sizing on equity alone, so a fill's profit changes the next order's quantity.
SETTINGS: dict[str, Any] = {"symbols": ("AAA", "BBB"), **EQUITY_SIZING, "max_order_notional": 1_000_000.0,
                            "max_position_notional": 1_000_000.0}
T1, T2, T3 = T0 + MINUTE, T0 + 2 * MINUTE, T0 + 3 * MINUTE


def orders(messages: list[Message]) -> list[SubmitOrder]:
    return [m for m in messages if isinstance(m, SubmitOrder)]


def engine_with_orders(**overrides: Any) -> tuple[RiskEngine, list[SubmitOrder]]:
    """An engine that sent one buy of AAA and one of BBB at T1 (both open), marks at 100."""
    engine = RiskEngine(RiskSettings(**{**SETTINGS, **overrides}))
    for symbol in ("AAA", "BBB"):
        engine.handle(bar(symbol, T1, 100.0))
    sent = [o for symbol in ("AAA", "BBB") for o in orders(engine.handle(target(symbol, T1, 0.2, 100.0)))]
    assert [o.quantity for o in sent] == [2000, 2000]
    return engine, sent


def bar_time_two(sent: list[SubmitOrder]) -> dict[str, Message]:
    """T2's inputs: both bars close at 110, both T1 orders fill at the open (100), a new AAA target."""
    return {"bar AAA": bar("AAA", T2, 110.0, open_=100.0), "bar BBB": bar("BBB", T2, 110.0, open_=100.0),
            "fill AAA": fill_for(sent[0], T2, 100.0), "fill BBB": fill_for(sent[1], T2, 100.0),
            "target": target("AAA", T2, 0.5, 110.0)}


def run(engine: RiskEngine, inputs: list[Message]) -> list[Message]:
    return [out for message in inputs for out in engine.handle(message)]


def test_risk_target_is_sized_after_the_fills_and_marks_of_its_bar_time_in_any_arrival_order() -> None:
    reference_engine, sent = engine_with_orders()
    events = bar_time_two(sent)
    reference = orders(run(reference_engine, [events[k] for k in ("fill AAA", "fill BBB", "bar AAA", "bar BBB", "target")]))
    # equity 1,000,000 + 4,000 x 10 profit: half of it at 110 less the 2,000 held
    assert [o.quantity for o in reference] == [int(0.5 * 1_040_000 / 110) - 2000]
    for arrival in (("bar AAA", "bar BBB", "target", "fill AAA", "fill BBB"),
                    ("bar AAA", "bar BBB", "fill AAA", "fill BBB", "target"),  # a fill does not undo its bar's mark
                    ("bar AAA", "bar BBB", "fill AAA", "target", "fill BBB"),
                    ("bar AAA", "bar BBB", "fill BBB", "target", "fill AAA"),
                    ("target", "fill AAA", "bar BBB", "fill BBB", "bar AAA"),  # before its own bar
                    ("fill AAA", "fill BBB", "bar AAA", "target", "bar BBB")):  # before a held symbol's bar
        engine, sent_again = engine_with_orders()
        assert sent_again == sent
        out = []
        for name in arrival:
            produced = engine.handle(events[name])
            if name != arrival[-1]:
                assert orders(produced) == [], f"{name} released the target before the last input ({arrival})"
            out += produced
        assert orders(out) == reference, arrival
        assert engine.waiting_targets == []
    without_waiting, _ = engine_with_orders(target_wait_ms=0)  # the race the rule removes: a smaller order
    early = orders(run(without_waiting, [events[k] for k in ("bar AAA", "bar BBB", "target", "fill AAA", "fill BBB")]))
    assert early[0].quantity < reference[0].quantity


def test_risk_orders_of_the_same_bar_time_do_not_hold_its_targets() -> None:
    engine, sent = engine_with_orders()
    run(engine, [fill_for(sent[0], T2, 100.0), fill_for(sent[1], T2, 100.0), bar("AAA", T2, 100.0), bar("BBB", T2, 100.0)])
    first = orders(engine.handle(target("AAA", T2, 0.5, 100.0)))
    second = orders(engine.handle(target("BBB", T2, 0.5, 100.0)))  # AAA's T2 order is open: sent at T2, not before
    assert len(first) == 1 and len(second) == 1 and engine.waiting_targets == []


def test_risk_a_partial_fill_or_an_end_settles_an_order_for_its_bar_time() -> None:
    engine, sent = engine_with_orders()
    waiting = target("AAA", T2, 0.5, 100.0)
    engine.handle(bar("AAA", T2, 100.0))
    assert orders(engine.handle(waiting)) == [] and engine.waiting_targets == [waiting]
    assert orders(engine.handle(fill_for(sent[0], T2, 100.0, quantity=500.0))) == []  # BBB still unsettled
    canceled = OrderCanceled.origin(natural_key=("test", sent[1].client_order_id), ts_event=T2, ts_init=T2,
                                    source="execution/test", client_order_id=sent[1].client_order_id, broker="sim",
                                    symbol="BBB", side=sent[1].side, quantity=sent[1].quantity)
    [order] = orders(engine.handle(canceled))
    assert order.causation_id == waiting.event_id
    assert sent[0].client_order_id in engine.open_orders  # AAA's rest is still open, but reported at T2


def test_risk_the_next_bar_of_its_symbol_releases_a_waiting_target_before_it_is_applied() -> None:
    """An order that did not fill at T2 will not report for T2: the target's symbol's bar of T3
    decides T2's target with the state of T2, before that bar changes it; another symbol's later
    bar does not (free-running partitions run ahead of each other)."""
    engine, _ = engine_with_orders()
    waiting = target("AAA", T2, 0.5, 100.0)
    run(engine, [bar("AAA", T2, 100.0), bar("BBB", T2, 100.0), waiting])
    assert engine.waiting_targets == [waiting]
    same_state, _ = engine_with_orders(target_wait_ms=0)
    run(same_state, [bar("AAA", T2, 100.0), bar("BBB", T2, 100.0)])
    assert orders(run(engine, [bar("BBB", T3, 100.0)])) == [] and engine.waiting_targets == [waiting]
    same_state.handle(bar("BBB", T3, 100.0))
    expected = orders(same_state.handle(waiting))
    released = run(engine, [bar("AAA", T3, 150.0)])  # at 150 the order would be smaller
    assert orders(released) == expected and engine.waiting_targets == []


def test_risk_release_waiting_decides_every_waiting_target_and_waiting_survives_a_snapshot() -> None:
    engine, _ = engine_with_orders()
    waiting = [target("AAA", T2, 0.5, 100.0), target("BBB", T2, 0.5, 100.0)]
    run(engine, waiting)
    assert engine.waiting_for() == sorted([*engine.open_orders, "bar AAA", "bar BBB"])
    restored = RiskEngine.restore(engine.settings, json.loads(json.dumps(engine.snapshot())))
    assert restored.waiting_targets == waiting and restored.snapshot() == engine.snapshot()
    released = orders(restored.release_waiting())
    assert [o.causation_id for o in released] == [t.event_id for t in waiting]
    assert restored.waiting_targets == [] and restored.waiting_for() == []


def test_risk_targets_do_not_wait_when_the_wait_is_off() -> None:
    engine, _ = engine_with_orders(target_wait_ms=0)
    later: TargetProposed = target("AAA", T2, 0.5, 100.0)
    assert len(orders(engine.handle(later))) == 1 and engine.waiting_targets == []
