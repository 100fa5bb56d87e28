"""Portfolio construction in the engine: optimised targets from past bars only, by regime, through
the rebalancing policy, with the conservative fallback; strategy-switch events."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any

import numpy as np
import pytest

from ata.events import AllocationFallbackEngaged, BarClosed, Message, RegimeLabel, StrategySwitched, TargetProposed
from ata.quant.portfolio.coordination import FALLBACK_METHOD, GuardedAllocator
from ata.quant.portfolio.covariance import estimate_covariance
from ata.quant.portfolio.optimisers import expected_returns_from_signals, make_optimiser
from ata.quant.portfolio.rebalancing import RebalancePolicy
from ata.strategy.core import MetaConfig, MetaStrategy, StrategyEngine
from ata.strategy.core.portfolio import PortfolioConstructor, PortfolioSettings
from ata.strategy.data import load_bars
from ata.strategy.testing import bar_event, interleaved, regime_state, universe_bars

PARAMS = {"ma_crossover": {"fast": 3, "slow": 8}, "ts_momentum": {"lookback": 10, "vol_window": 5},
          "mean_reversion": {"window": 5}, "donchian_breakout": {"window": 6}, "vol_managed": {"vol_window": 5}}
META = MetaConfig(params=PARAMS, min_history_bars=5)
BARS = universe_bars(140, synthetic=1)
UNIVERSE = tuple(sorted(BARS))
EVENTS = interleaved(BARS)
SETTINGS = PortfolioSettings(covariance_window_bars=60, covariance_min_bars=20)


def engine(settings: PortfolioSettings = SETTINGS, meta: MetaConfig = META) -> StrategyEngine:
    portfolio = PortfolioConstructor(settings, UNIVERSE, max_abs_target=meta.max_abs_target,
                                     periods_per_year=meta.periods_per_year)
    return StrategyEngine(MetaStrategy(meta), portfolio=portfolio)


def run(eng: StrategyEngine, events: list[Message]) -> list[Message]:
    return [out for e in events for out in eng.handle(e)]


def of_type(messages: list[Message], kind: type[Any]) -> list[Any]:
    return [m for m in messages if isinstance(m, kind)]


def test_targets_are_the_optimised_weights_from_past_bars_only() -> None:
    targets = of_type(run(engine(), EVENTS), TargetProposed)
    assert targets and {t.method for t in targets} == {"risk_parity"}
    # Reference for the first proposing cross-section, from the library directly: covariance of the
    # returns up to and including that bar, strengths from the plain per-symbol meta-strategy.
    first_ts = targets[0].ts_event
    plain = of_type(run(StrategyEngine(MetaStrategy(META)), EVENTS), TargetProposed)
    strength = np.array([next(t.target_weight for t in plain if t.symbol == s and t.ts_event == first_ts)
                         for s in UNIVERSE])
    closes = np.array([[b.close for b in BARS[s]] for s in UNIVERSE]).T
    t_index = [b.ts_ns for b in BARS["SPX"]].index(first_ts)
    returns = closes[1 : t_index + 1] / closes[:t_index] - 1.0
    cov = estimate_covariance(returns[-SETTINGS.covariance_window_bars:], SETTINGS.covariance_config())
    expected = expected_returns_from_signals(strength, np.sqrt(np.diag(cov)), SETTINGS.information_coefficient)
    constraints = SETTINGS.limits.constraints_for(UNIVERSE, cov)
    ref = GuardedAllocator().allocate(make_optimiser("risk_parity"), cov, constraints, expected, np.zeros(3))
    assert ref.fallback is None
    got = {t.symbol: t.target_weight for t in targets if t.ts_event == first_ts}
    assert got == pytest.approx({s: w for s, w in zip(UNIVERSE, ref.weights, strict=True) if abs(w) >= 0.005}, abs=1e-12)
    for t in targets:  # contributions still explain the proposed weight
        if t.contributions:
            assert t.target_weight == pytest.approx(sum(c.weight * c.strength for c in t.contributions), abs=1e-12)


def test_no_look_ahead_changing_later_bars_changes_nothing_before() -> None:
    cut = EVENTS[len(EVENTS) // 2].ts_event
    rng = np.random.default_rng(3)
    changed = [e if e.ts_event <= cut else e.model_copy(update={"close": e.close * float(rng.uniform(0.9, 1.1))})
               for e in EVENTS]
    before = [m for m in run(engine(), EVENTS) if m.ts_event <= cut]
    after = [m for m in run(engine(), changed) if m.ts_event <= cut]
    assert before == after and of_type(before, TargetProposed)


def test_arrival_order_of_symbols_does_not_change_the_outcome() -> None:
    reference = run(engine(), EVENTS)
    reversed_order = run(engine(), interleaved(BARS, order=UNIVERSE[::-1]))
    # SYN0's bars arrive three bars late (another partition lagging behind).
    lag = 3
    others = [e for e in EVENTS if e.symbol != "SYN0"]
    syn = [e for e in EVENTS if e.symbol == "SYN0"]
    lagged: list[BarClosed] = []
    for i in range(len(BARS["SPX"])):
        lagged += others[2 * i : 2 * i + 2]
        if i >= lag:
            lagged.append(syn[i - lag])
    lagged += syn[len(BARS["SPX"]) - lag :]
    for variant in (reversed_order, run(engine(), lagged)):
        assert {m.event_id: m for m in variant} == {m.event_id: m for m in reference}


def test_rebalancing_thresholds_hold_back_tiny_changes() -> None:
    eager = PortfolioSettings(covariance_window_bars=60, covariance_min_bars=20,
                              rebalance=RebalancePolicy(drift_threshold=0.0, total_drift_threshold=0.0, min_trade_weight=0.0))
    every = of_type(run(engine(eager), EVENTS), TargetProposed)
    held = of_type(run(engine(), EVENTS), TargetProposed)
    policy = SETTINGS.rebalance

    def changes(targets: list[TargetProposed]) -> list[float]:
        last: dict[str, float] = defaultdict(float)
        out = []
        for t in targets:
            out.append(abs(t.target_weight - last[t.symbol]) if t.target_weight != 0.0 else np.inf)
            last[t.symbol] = t.target_weight
        return out

    assert min(changes(held)) >= policy.min_trade_weight
    assert min(changes(every)) < policy.min_trade_weight  # the tiny changes exist, and are held back
    assert len(held) < len(every)


def test_the_optimiser_follows_the_market_regime() -> None:
    settings = PortfolioSettings(
        covariance_window_bars=60, covariance_min_bars=20,
        optimisers={"default": "risk_parity", "by_regime": {"crisis": "hrp"}},
        rebalance=RebalancePolicy(drift_threshold=0.0, total_drift_threshold=0.0, min_trade_weight=0.0))
    switch_at = EVENTS[2 * len(EVENTS) // 3].ts_event
    outputs = run(engine(settings), [regime_state("_market", switch_at - 1, RegimeLabel.CRISIS), *EVENTS])
    targets = of_type(outputs, TargetProposed)
    assert {t.method for t in targets if t.ts_event < switch_at} == {"risk_parity"}
    assert {t.method for t in targets if t.ts_event >= switch_at} == {"hrp"}


@pytest.mark.parametrize(("optimisers", "reason"), [
    ({"default": "risk_parity", "params": {"risk_parity": {"tol": 0.5}}}, "not_converged"),  # stops short of equal risk
    ({"default": "minimum_variance"}, "exception"),  # needs a net target, the limits have none
])
def test_a_failing_optimiser_falls_back_and_targets_keep_flowing(optimisers: dict[str, Any], reason: str) -> None:
    settings = PortfolioSettings(covariance_window_bars=60, covariance_min_bars=20, optimisers=optimisers)
    outputs = run(engine(settings), EVENTS)
    fallbacks = of_type(outputs, AllocationFallbackEngaged)
    targets = of_type(outputs, TargetProposed)
    assert fallbacks and {(f.reason, f.fallback_method) for f in fallbacks} == {(reason, FALLBACK_METHOD)}
    assert all(f.component == f"optimiser:{optimisers['default']}" and f.symbols == UNIVERSE for f in fallbacks)
    fell_back = {f.ts_event for f in fallbacks}
    assert targets and {t.method for t in targets if t.ts_event in fell_back} == {FALLBACK_METHOD}
    assert {t.method for t in targets if t.ts_event not in fell_back} <= {optimisers["default"]}
    assert max(t.ts_event for t in targets) > EVENTS[-10].ts_event  # still proposing at the end
    gross_by_ts: dict[int, float] = defaultdict(float)
    latest: dict[str, float] = {}
    for t in targets:
        latest[t.symbol] = t.target_weight
        gross_by_ts[t.ts_event] = sum(abs(w) for w in latest.values())
    assert max(gross_by_ts.values()) <= settings.limits.gross_max + 1e-9


def test_a_symbol_without_a_bar_at_some_time_does_not_stall_the_others() -> None:
    holiday = BARS["SYN0"][80].ts_ns
    events = [e for e in EVENTS if not (e.symbol == "SYN0" and e.ts_event == holiday)]
    outputs = run(engine(PortfolioSettings(covariance_window_bars=60, covariance_min_bars=20,
                                           rebalance=RebalancePolicy(drift_threshold=0.0, total_drift_threshold=0.0,
                                                                     min_trade_weight=0.0))), events)
    targets = of_type(outputs, TargetProposed)
    at_holiday = {t.symbol for t in targets if t.ts_event == holiday}
    assert at_holiday and "SYN0" not in at_holiday
    assert {t.symbol for t in targets if t.ts_event == EVENTS[-1].ts_event} == set(UNIVERSE)


def test_snapshot_and_restore_continue_identically() -> None:
    half = len(EVENTS) // 2 + 1  # mid cross-section: a pending section is in the snapshot
    expected = run(engine(), EVENTS)
    first = engine()
    head = run(first, EVENTS[:half])
    resumed = engine()
    resumed.restore(first.snapshot())
    assert head + run(resumed, EVENTS[half:]) == expected
    with pytest.raises(ValueError, match="portfolio"):
        StrategyEngine(MetaStrategy(META)).restore(first.snapshot())


def test_strategy_switches_are_published_with_the_active_sets() -> None:
    meta = MetaConfig(min_dwell_bars=21)
    events = [bar_event("SPX", b) for b in load_bars("sp500")[:1500]]
    eng = StrategyEngine(MetaStrategy(meta))
    switches = of_type(run(eng, events), StrategySwitched)
    assert len(switches) >= 4
    active = set(meta.strategies)
    last_at: dict[str, int] = {}
    bar_index = {e.event_id: i for i, e in enumerate(events)}
    for s in switches:
        assert s.previous_strategy == "+".join(sorted(active))
        (active.add if s.active else active.discard)(s.strategy)
        assert s.current_strategy == "+".join(sorted(active))
        threshold = meta.switch_on_sharpe if s.active else meta.switch_off_sharpe
        assert (s.tracked_sharpe > threshold) if s.active else (s.tracked_sharpe < threshold)
        i = bar_index[s.causation_id]
        assert i - last_at.get(s.strategy, -10**9) >= meta.min_dwell_bars  # hysteresis in time
        last_at[s.strategy] = i
    assert active == {n for n, on in eng.meta.books["SPX"].active.items() if on}
    quiet = StrategyEngine(MetaStrategy(dataclasses.replace(meta, switching=False)))
    assert not of_type(run(quiet, events), StrategySwitched)
