"""Walk-forward evaluation of an optimiser over a matrix of per-period returns.

At the close of bar ``t`` (from the first bar with ``min_periods`` returns on) and then every
``rebalance_every`` bars, the covariance is estimated from bars ``t - window + 1 .. t`` only
(:mod:`ata.quant.portfolio.covariance`), the expected returns (when an ``expected`` function is
given) from bars ``..t`` only, and the optimiser runs through a
:class:`~ata.quant.portfolio.coordination.GuardedAllocator` (a failure falls back and is
counted; the run goes on). The new weights, after the rebalancing policy (small changes are
not traded), earn bar ``t + 1``'s returns. Between rebalances weights drift with prices; the
remainder ``1 - Σw`` is cash earning nothing. Costs: ``cost_bps`` per unit of weight traded.

Turnover is the one-sided traded weight per year, ``Σ_trades Σ_i |Δw_i| / 2 / years`` (moving
the whole book once a year is 1.0), drift excluded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ata.quant.metrics import PerformanceSummary, summarize
from ata.quant.portfolio.constraints import Constraints
from ata.quant.portfolio.coordination import GuardedAllocator
from ata.quant.portfolio.covariance import CovarianceConfig, estimate_covariance
from ata.quant.portfolio.optimisers import Optimiser, expected_returns_from_signals
from ata.quant.portfolio.rebalancing import RebalancePolicy

FloatArray = npt.NDArray[np.float64]
ExpectedFn = Callable[[FloatArray], FloatArray]

__all__ = ["WalkForwardConfig", "WalkForwardResult", "momentum_expected_returns", "walk_forward"]


@dataclass(frozen=True)
class WalkForwardConfig:
    covariance: CovarianceConfig = field(default_factory=lambda: CovarianceConfig("ledoit_wolf", 252, 126))
    rebalance_every: int = 21
    cost_bps: float = 1.0
    periods_per_year: float = 252.0
    policy: RebalancePolicy = field(default_factory=lambda: RebalancePolicy(drift_threshold=0.01, min_trade_weight=0.002))


@dataclass(frozen=True)
class WalkForwardResult:
    name: str
    equity: FloatArray
    weights: FloatArray
    turnover_annual: float
    fallbacks: int
    summary: PerformanceSummary


def momentum_expected_returns(lookback: int = 126, information_coefficient: float = 0.05) -> ExpectedFn:
    """Signal-derived expected returns for evaluation: the strength is ``tanh`` of the
    ``lookback``-bar mean return over its standard error (a time-series momentum score), turned
    into returns by :func:`~ata.quant.portfolio.optimisers.expected_returns_from_signals`."""

    def expected(history: FloatArray) -> FloatArray:
        tail = history[-lookback:]
        vol = tail.std(axis=0, ddof=1)
        score = np.divide(tail.mean(axis=0) * np.sqrt(tail.shape[0]), vol, out=np.zeros(tail.shape[1]), where=vol > 0)
        return expected_returns_from_signals(np.tanh(score), vol, information_coefficient)

    return expected


def walk_forward(
    returns: npt.ArrayLike,
    optimiser: Optimiser,
    constraints: Constraints,
    config: WalkForwardConfig | None = None,
    expected: ExpectedFn | None = None,
) -> WalkForwardResult:
    """Run ``optimiser`` walk-forward over ``returns`` (bars x symbols); see the module docstring."""
    cfg = config or WalkForwardConfig()
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 2 or r.shape[1] != constraints.n or not np.all(np.isfinite(r)):
        raise ValueError("returns must be a finite bars x symbols matrix matching the constraints")
    start = cfg.covariance.min_periods - 1
    if start >= r.shape[0] - 1:
        raise ValueError("not enough bars for one out-of-sample period")
    guard = GuardedAllocator()
    n_eval = r.shape[0] - 1 - start
    equity = np.empty(n_eval + 1)
    equity[0] = 1.0
    held = np.empty((n_eval, constraints.n))
    w = np.zeros(constraints.n)
    traded = 0.0
    cost = cfg.cost_bps * 1e-4
    for k, t in enumerate(range(start, r.shape[0] - 1)):
        step_cost = 0.0
        if k % cfg.rebalance_every == 0:
            window = r[max(0, t - cfg.covariance.window + 1) : t + 1]
            mu = expected(r[: t + 1]) if expected is not None else None
            alloc = guard.allocate(optimiser, estimate_covariance(window, cfg.covariance), constraints, mu, w)
            current = dict(enumerate(w.tolist()))
            target = {i: float(x) for i, x in enumerate(alloc.weights) if x != 0.0}
            decision = cfg.policy.decide({str(i): v for i, v in current.items() if v != 0.0},
                                         {str(i): v for i, v in target.items()}, k)
            if decision.rebalance:
                new = w.copy()
                for sym, value in decision.trades.items():
                    new[int(sym)] = value
                step = float(np.abs(new - w).sum())
                traded += step
                step_cost = cost * step
                w = new
        held[k] = w
        port = float(w @ r[t + 1])
        equity[k + 1] = equity[k] * (1.0 + port - step_cost)
        w = w * (1.0 + r[t + 1]) / (1.0 + port)
    years = n_eval / cfg.periods_per_year
    summary = summarize(equity, cfg.periods_per_year)
    return WalkForwardResult(optimiser.name, equity, held, traded / 2.0 / years, sum(guard.counts.values()), summary)
