"""Rebalancing policy and cross-strategy coordination: redundancy, regime-adjusted capital,
the combined-signal conflict rule, and the conservative fallback (non-convergence, invalid
output, a corrupt RL policy file)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ata.quant.portfolio import coordination as co
from ata.quant.portfolio.constraints import ClusterBound, Constraints
from ata.quant.portfolio.optimisers import OptimisationResult, RiskParity, risk_contributions
from ata.quant.portfolio.rebalancing import RebalancePolicy

# ----------------------------------------------------------------------------- rebalancing


def test_tiny_changes_produce_no_orders_and_large_ones_trade_only_what_moved() -> None:
    policy = RebalancePolicy(every_n_bars=1, drift_threshold=0.02, total_drift_threshold=0.05, min_trade_weight=0.005)
    current = {"A": 0.30, "B": 0.30, "C": 0.40}
    tiny = policy.decide(current, {"A": 0.305, "B": 0.295, "C": 0.40}, bar=10)
    assert (tiny.rebalance, tiny.trades, tiny.reason) == (False, {}, "below_threshold")
    big = policy.decide(current, {"A": 0.35, "B": 0.252, "C": 0.398}, bar=10)
    assert big.rebalance and big.reason == "drift"
    assert big.trades == {"A": 0.35, "B": 0.252}  # C moved by 0.002 < min_trade_weight: kept
    assert big.max_drift == pytest.approx(0.05) and big.total_drift == pytest.approx(0.1)


def test_schedule_urgent_drift_and_exits() -> None:
    policy = RebalancePolicy(every_n_bars=5, drift_threshold=0.02, urgent_drift=0.2)
    current = {"A": 0.5, "B": 0.5}
    off = policy.decide(current, {"A": 0.45, "B": 0.55}, bar=3)
    assert (off.rebalance, off.reason) == (False, "off_schedule")
    assert policy.decide(current, {"A": 0.45, "B": 0.55}, bar=5).trades == {"A": 0.45, "B": 0.55}
    urgent = policy.decide(current, {"A": 0.25, "B": 0.75}, bar=3)
    assert (urgent.rebalance, urgent.reason) == (True, "urgent_drift")
    exit_only = policy.decide({"A": 0.5, "B": 0.001}, {"A": 0.5}, bar=3)
    assert (exit_only.rebalance, exit_only.reason, exit_only.trades) == (True, "exit", {"B": 0.0})
    with pytest.raises(ValidationError, match="min_trade_weight"):
        RebalancePolicy(drift_threshold=0.01, min_trade_weight=0.02)


@settings(max_examples=100, deadline=None)
@given(
    current=st.dictionaries(st.sampled_from("ABCDEF"), st.floats(-1, 1), max_size=6),
    noise=st.lists(st.floats(-0.0049, 0.0049), min_size=6, max_size=6),
    bar=st.integers(0, 100),
)
def test_changes_below_min_trade_weight_never_trade(current: dict[str, float], noise: list[float], bar: int) -> None:
    policy = RebalancePolicy()
    target = {s: w + noise[i] for i, (s, w) in enumerate(sorted(current.items())) if w + noise[i] != 0.0}
    decision = policy.decide(current, target, bar)
    assert all(current.get(s, 0.0) != 0.0 and target.get(s, 0.0) == 0.0 for s in decision.trades)


# ----------------------------------------------------------------------------- redundancy, capital


def test_duplicate_strategy_is_down_weighted_and_independent_ones_are_not() -> None:
    rng = np.random.default_rng(0)
    a, b, c = rng.normal(size=(3, 250)) * 0.01
    returns = np.column_stack([a, a * 2.0, b, c])  # strategy 1 is a levered copy of strategy 0
    returns[:100] = rng.normal(size=(100, 4))  # older bars outside the window must not matter
    corr = co.strategy_correlation(returns, window=150)
    assert corr[0, 1] == pytest.approx(1.0)
    f = co.redundancy_factors(corr, threshold=0.5)
    assert f[:2] == pytest.approx([0.5, 0.5])
    assert f[2:] == pytest.approx([1.0, 1.0], abs=0.05)


def test_capital_allocation_realises_regime_adjusted_risk_budgets() -> None:
    rng = np.random.default_rng(1)
    perf = co.RegimePerformance(["trend", "reversion"], halflife_bars=30, min_observations=20)
    for _ in range(200):
        perf.update("bull", {"trend": 0.002 + rng.normal() * 0.005, "reversion": -0.001 + rng.normal() * 0.005})
        perf.update("bear", {"trend": -0.001 + rng.normal() * 0.005, "reversion": 0.002 + rng.normal() * 0.005})
    bull, bear = perf.multipliers("bull"), perf.multipliers("bear")
    assert bull[0] > 1 > bull[1] and bear[1] > 1 > bear[0]
    assert np.all(perf.multipliers("crisis") == 1.0)  # no history in that regime
    restored = co.RegimePerformance(["trend", "reversion"], halflife_bars=30, min_observations=20)
    restored.restore(perf.snapshot())
    assert restored.multipliers("bull") == pytest.approx(bull, rel=0, abs=0)
    cov = np.array([[4e-4, 1e-4], [1e-4, 1e-4]])
    weights, budgets = co.allocate_strategy_capital(cov, [0.5, 0.5], bull)
    assert budgets == pytest.approx(bull / bull.sum())
    assert risk_contributions(weights, cov) == pytest.approx(budgets, abs=1e-9)


# ----------------------------------------------------------------------------- combined signals


def test_conflict_rule_goes_flat_when_strategies_cancel() -> None:
    signals = {"trend": {"AAPL": 0.8, "MSFT": 0.6}, "reversion": {"AAPL": -0.7, "MSFT": 0.2}, "off": {"AAPL": -1.0}}
    weights = {"trend": 0.5, "reversion": 0.5, "off": 0.0}
    out = co.combine_signals(signals, weights, min_agreement=0.3)
    assert out["AAPL"].conflict and out["AAPL"].strength == 0.0 and out["AAPL"].direction == 0
    assert out["AAPL"].agreement == pytest.approx(0.1 / 1.5)
    assert not out["MSFT"].conflict and out["MSFT"].strength == pytest.approx(0.4) and out["MSFT"].direction == 1
    assert out["MSFT"].contributions == pytest.approx({"trend": 0.3, "reversion": 0.1})


# ----------------------------------------------------------------------------- fallback


@dataclass(frozen=True)
class _Broken:
    name: ClassVar[str] = "broken"
    mode: str

    def weights(self, cov: npt.ArrayLike, expected: npt.ArrayLike | None = None, previous: npt.ArrayLike | None = None,
                constraints: Constraints | None = None) -> OptimisationResult:
        n = np.shape(cov)[0]
        if self.mode == "raise":
            raise np.linalg.LinAlgError("singular matrix")
        if self.mode == "nan":
            return OptimisationResult(np.full(n, np.nan), True, self.name)
        if self.mode == "bounds":
            return OptimisationResult(np.full(n, 2.0 / n), True, self.name)
        return OptimisationResult(np.full(n, 1.0 / n), False, self.name, {"iterations": 100.0})


@pytest.mark.parametrize(("mode", "reason"), [
    ("raise", co.FallbackReason.EXCEPTION),
    ("nan", co.FallbackReason.NON_FINITE),
    ("bounds", co.FallbackReason.BOUNDS_VIOLATED),
    ("no_convergence", co.FallbackReason.NOT_CONVERGED),
])
def test_fallback_engages_on_optimiser_failure_and_is_counted(mode: str, reason: co.FallbackReason) -> None:
    cov = np.diag([0.04, 0.01, 0.01, 0.0025])
    cons = Constraints.long_only_portfolio(4, max_weight=0.35)
    guard = co.GuardedAllocator()
    alloc = guard.allocate(_Broken(mode), cov, cons)
    assert alloc.fallback is not None and alloc.fallback.reason is reason
    assert alloc.method == co.FALLBACK_METHOD == alloc.fallback.method
    assert cons.violations(alloc.weights) == []
    # capped inverse volatility: 1/σ ∝ 5, 10, 10, 20 -> the last is capped at 0.35, the rest share 0.65 as 1:2:2
    assert alloc.weights == pytest.approx([0.13, 0.26, 0.26, 0.35], abs=1e-9)
    assert guard.counts == {("optimiser:broken", reason.value): 1}
    ok = guard.allocate(RiskParity(), cov, Constraints.long_only_portfolio(4))
    assert ok.fallback is None and ok.method == "risk_parity"
    assert sum(guard.counts.values()) == 1


def test_fallback_respects_clusters_and_survives_a_broken_covariance() -> None:
    cons = Constraints(np.zeros(4), np.full(4, 1.0), 1.0, None, (ClusterBound("tech", (0, 1), 0.0, 0.3),))
    w = co.fallback_weights(np.full((4, 4), np.nan), cons)
    assert cons.violations(w) == [] and w == pytest.approx([0.15, 0.15, 0.25, 0.25])


def test_fallback_engages_when_the_rl_policy_file_is_corrupt(tmp_path: Path) -> None:
    good, corrupt = tmp_path / "policy.npz", tmp_path / "corrupt.npz"
    np.savez(good, w=np.eye(2))
    corrupt.write_bytes(good.read_bytes()[:40] + b"\x00garbage")

    def load(path: Path) -> dict[str, np.ndarray]:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    guard = co.GuardedAllocator()
    loaded = guard.guard("rl_policy", lambda: load(good), lambda arrays: None if "w" in arrays else "no weights")
    assert isinstance(loaded, dict) and loaded["w"].shape == (2, 2)
    record = guard.guard("rl_policy", lambda: load(corrupt))
    assert isinstance(record, co.FallbackRecord) and record.reason is co.FallbackReason.EXCEPTION
    invalid = guard.guard("rl_policy", lambda: load(good), lambda arrays: "no bias" if "b" not in arrays else None)
    assert isinstance(invalid, co.FallbackRecord) and invalid.reason is co.FallbackReason.INVALID_OUTPUT
    assert guard.counts == {("rl_policy", "exception"): 1, ("rl_policy", "invalid_output"): 1}
