"""Table-driven tests: every pre-trade check and its stable reason code."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import pytest

from ata.events import (
    DataReliabilityChanged,
    DenialReason,
    FlattenAll,
    HaltTrading,
    JournalAvailabilityChanged,
    TradingState,
)
from ata.risk.config import RiskSettings
from ata.risk.core import RiskEngine
from ata.risk.core.checks import CHECKS, run_checks
from ata.risk.testing import EQUITY_SIZING, NS_PER_S, T0, bar, command, fill

MINUTE = 60 * NS_PER_S
WARM_BARS = 30
NOW = T0 + (WARM_BARS - 1) * MINUTE
BASE: dict[str, Any] = {"symbols": ("AAA", "BBB"), **EQUITY_SIZING, "correlation_refresh_bars": 5}


def warm_engine(**overrides: Any) -> RiskEngine:
    """AAA and BBB move together (one correlation cluster) and close at exactly 100."""
    engine = RiskEngine(RiskSettings(**{**BASE, **overrides}))
    rnd = random.Random(7)
    moves = [math.exp(rnd.gauss(0, 0.01)) for _ in range(WARM_BARS)]
    scale = 100.0 / math.prod(moves)
    price = scale
    for i, move in enumerate(moves):
        price *= move
        close = 100.0 if i == WARM_BARS - 1 else price
        for symbol in ("AAA", "BBB"):
            engine.handle(bar(symbol, T0 + i * MINUTE, close))
    return engine


def hold(symbol: str, qty: float) -> Callable[[RiskEngine], object]:
    return lambda e: e.handle(fill(symbol, NOW, qty, 100.0, client_order_id=f"ata-hold-{symbol}"))


def both(*steps: Callable[[RiskEngine], object]) -> Callable[[RiskEngine], None]:
    def run(engine: RiskEngine) -> None:
        for step in steps:
            step(engine)
    return run


def nothing(engine: RiskEngine) -> None:
    return None


def take_tokens(engine: RiskEngine) -> None:
    while engine.bucket.take(NOW):
        pass


# name, settings overrides, setup, symbol, signed qty, reference price, order ts, expected reason
CASES: list[tuple[str, dict[str, Any], Callable[[RiskEngine], object], str, float, float, int, DenialReason | None]] = [
    ("passes", {}, nothing, "AAA", 100, 100.0, NOW, None),
    ("journal down", {}, lambda e: e.handle(command(JournalAvailabilityChanged, NOW, available=False, reason="disk full")),
     "AAA", 100, 100.0, NOW, DenialReason.JOURNAL_UNAVAILABLE),
    ("halted", {}, lambda e: e.handle(command(HaltTrading, NOW, reason="operator")), "AAA", 100, 100.0, NOW,
     DenialReason.TRADING_HALTED),
    ("unknown symbol", {}, nothing, "ZZZ", 100, 100.0, NOW, DenialReason.UNKNOWN_SYMBOL),
    ("nan quantity", {}, nothing, "AAA", math.nan, 100.0, NOW, DenialReason.INVALID_QUANTITY),
    ("zero quantity", {}, nothing, "AAA", 0.0, 100.0, NOW, DenialReason.INVALID_QUANTITY),
    ("negative price", {}, nothing, "AAA", 100, -1.0, NOW, DenialReason.INVALID_PRICE),
    ("infinite price", {}, nothing, "AAA", 100, math.inf, NOW, DenialReason.INVALID_PRICE),
    ("unreliable data", {},
     lambda e: e.handle(command(DataReliabilityChanged, NOW, symbol="AAA", reliable=False, reason="spikes")), "AAA",
     100, 100.0, NOW, DenialReason.DATA_UNRELIABLE),
    ("stale data", {"max_staleness_ms": 60_000}, nothing, "AAA", 100, 100.0, NOW + 61 * NS_PER_S, DenialReason.STALE_MARKET_DATA),
    ("daily loss", {}, both(hold("AAA", 4000), lambda e: e.handle(bar("AAA", NOW + MINUTE, 80.0))), "BBB", 10, 100.0,
     NOW + MINUTE, DenialReason.DAILY_LOSS),
    ("reducing only", {}, lambda e: e.handle(command(FlattenAll, NOW, reason="operator")), "AAA", 10, 100.0, NOW,
     DenialReason.REDUCING_ONLY),
    ("price collar", {"price_collar_pct": 0.05}, nothing, "AAA", 100, 106.0, NOW, DenialReason.PRICE_COLLAR),
    ("order quantity", {"max_order_quantity": 1000}, nothing, "AAA", 1001, 100.0, NOW, DenialReason.MAX_ORDER_QUANTITY),
    ("order notional", {}, nothing, "AAA", -2501, 100.0, NOW, DenialReason.MAX_ORDER_NOTIONAL),
    ("position", {}, hold("AAA", 4000), "AAA", 1001, 100.0, NOW, DenialReason.MAX_POSITION),
    ("gross exposure", {"max_gross_exposure": 600_000, "max_net_exposure": 600_000}, hold("AAA", 4000), "BBB", 2500, 100.0, NOW,
     DenialReason.GROSS_EXPOSURE),
    ("net exposure", {"max_net_exposure": 450_000}, hold("AAA", 4000), "BBB", 1000, 100.0, NOW, DenialReason.NET_EXPOSURE),
    ("leverage", {"max_leverage": 0.5}, hold("AAA", 4000), "BBB", 2000, 100.0, NOW, DenialReason.LEVERAGE),
    ("cluster", {"max_cluster_exposure_pct": 0.5}, hold("AAA", 4000), "BBB", 2000, 100.0, NOW, DenialReason.CLUSTER_EXPOSURE),
    ("order rate", {"order_burst": 3, "max_orders_per_minute": 1}, take_tokens, "AAA", 100, 100.0, NOW, DenialReason.ORDER_RATE),
    # Reductions pass even when a limit is already exceeded.
    ("reduce over position limit", {"max_position_notional": 300_000}, hold("AAA", 4000), "AAA", -1000, 100.0, NOW, None),
    ("reduce while REDUCING", {}, both(hold("AAA", 100), lambda e: e.states.request("operator", TradingState.REDUCING, "test")),
     "AAA", -50, 100.0, NOW, None),
    ("flip while REDUCING", {}, both(hold("AAA", 100), lambda e: e.states.request("operator", TradingState.REDUCING, "test")),
     "AAA", -150, 100.0, NOW, DenialReason.REDUCING_ONLY),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_risk_check_table(case: tuple[str, dict[str, Any], Callable[[RiskEngine], object], str, float, float, int,
                                      DenialReason | None]) -> None:
    _, overrides, setup, symbol, qty, price, ts, expected = case
    engine = warm_engine(**overrides)
    setup(engine)
    denial = run_checks(engine.order_check(symbol, qty, price, ts))
    assert (denial.reason if denial else None) == expected, denial
    if denial is not None:
        assert denial.detail


def test_risk_every_order_reason_code_is_covered_by_a_check_or_the_engine() -> None:
    from_table = {c[-1] for c in CASES if c[-1] is not None}
    engine_level = {DenialReason.OVERSIGHT_REJECTED, DenialReason.OVERSIGHT_TIMEOUT}  # tested in test_risk_engine.py
    assert from_table | engine_level == set(DenialReason)
    assert len(CHECKS) == len({c.__name__ for c in CHECKS})


def test_risk_cluster_is_built_from_correlations() -> None:
    engine = warm_engine()
    assert engine.cluster_of["AAA"] == engine.cluster_of["BBB"] == "AAA"
    assert engine.states.state is TradingState.ACTIVE
