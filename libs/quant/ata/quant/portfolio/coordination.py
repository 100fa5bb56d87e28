"""Cross-strategy coordination: redundancy, capital allocation, combined signals, fallback.

Redundancy. :func:`strategy_correlation` is the correlation of the strategies' returns over
the last ``window`` bars (never later ones). :func:`redundancy_factors` down-weights a strategy
by the strategies it duplicates: ``f_i = 1 / (1 + Σ_{j≠i} clip((ρ_ij − τ) / (1 − τ), 0, 1))``
with threshold ``τ``. Two identical strategies get 1/2 each (together they count once); a
strategy correlated below ``τ`` with every other keeps 1.

Capital. :func:`allocate_strategy_capital` turns base risk budgets per strategy, multiplied by
regime-performance multipliers (:class:`RegimeTilt` of each strategy's Sharpe ratio in the
regime in force, e.g. tracked by :class:`RegimePerformance`) and redundancy factors, into
capital weights whose risk contributions equal those budgets (risk parity with budgets on the
strategies' return covariance).

Combined signal, conflict rule (:func:`combine_signals`). For each symbol, over the strategies
that have a signal for it: ``net = Σ w_k s_k / Σ w_k`` and ``agreement = |Σ w_k s_k| / Σ w_k |s_k|``.
If ``agreement < min_agreement`` the strategies disagree: the symbol is *flat* (strength 0,
``conflict=True``); strategies that cancel out must not produce a position. Otherwise the
combined strength is ``net`` (in [-1, 1]) and the direction its sign.

Conservative fallback (:class:`GuardedAllocator`). The documented simple allocation is
:func:`fallback_weights`: inverse volatility (equal weight where a volatility is not a positive
finite number), signs from the signals as the optimisers take them, scaled by bisection to the
budget under the per-symbol bounds (capped inverse volatility); clusters above their cap are
scaled down (the excess stays in cash). It takes over when an optimiser raises, does not
converge, or returns non-finite weights or weights that break a constraint, and when a guarded
component (e.g. loading an RL policy) raises or returns something its validator rejects.
Every switch is returned as a :class:`FallbackRecord` and counted in ``counts`` (by component
and reason), for the service to publish and export as a metric.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from ata.quant.portfolio.constraints import TOLERANCE, Constraints
from ata.quant.portfolio.optimisers import Optimiser, risk_parity_allocation, signal_directions

FloatArray = npt.NDArray[np.float64]
T = TypeVar("T")

__all__ = [
    "FALLBACK_METHOD",
    "Allocation",
    "CombinedSignal",
    "FallbackReason",
    "FallbackRecord",
    "GuardedAllocator",
    "RegimePerformance",
    "RegimeTilt",
    "allocate_strategy_capital",
    "combine_signals",
    "fallback_weights",
    "redundancy_factors",
    "strategy_correlation",
]

FALLBACK_METHOD = "capped_inverse_volatility"


# ----------------------------------------------------------------------------- redundancy


def strategy_correlation(returns: npt.ArrayLike, window: int) -> FloatArray:
    """Correlation of the strategies' returns (bars x strategies) over the last ``window`` bars.

    A strategy with constant returns in the window has correlation 0 with the others.
    """
    x = np.asarray(returns, dtype=np.float64)
    if x.ndim != 2 or window < 2 or x.shape[0] < 2:
        raise ValueError("returns must be bars x strategies with at least two bars; window >= 2")
    tail = x[-window:]
    sd = tail.std(axis=0)
    centred = tail - tail.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = (centred.T @ centred / tail.shape[0]) / np.outer(sd, sd)
    corr = np.where(np.isfinite(corr), np.clip(corr, -1.0, 1.0), 0.0)
    np.fill_diagonal(corr, 1.0)
    out: FloatArray = corr
    return out


def redundancy_factors(corr: npt.ArrayLike, threshold: float = 0.5) -> FloatArray:
    """Down-weighting factor per strategy in (0, 1] (see the module docstring)."""
    c = np.asarray(corr, dtype=np.float64)
    if not 0.0 <= threshold < 1.0:
        raise ValueError("threshold must lie in [0, 1)")
    excess = np.clip((c - threshold) / (1.0 - threshold), 0.0, 1.0)
    np.fill_diagonal(excess, 0.0)
    out: FloatArray = 1.0 / (1.0 + excess.sum(axis=1))
    return out


# ----------------------------------------------------------------------------- regime performance


@dataclass
class _Moments:
    mean: float = 0.0
    var: float = 0.0
    count: int = 0


@dataclass(frozen=True)
class RegimeTilt:
    """Budget multiplier from a strategy's annualised Sharpe ratio in the regime in force:
    ``clip(1 + sensitivity · sharpe, floor, cap)``, and 1 where the Sharpe ratio is unknown
    (``None`` or NaN: too little history in that regime)."""

    sensitivity: float = 0.5
    floor: float = 0.25
    cap: float = 2.0

    def __post_init__(self) -> None:
        if not (0 < self.floor <= 1 <= self.cap and self.sensitivity >= 0):
            raise ValueError("need 0 < floor <= 1 <= cap and sensitivity >= 0")

    def multipliers(self, sharpes: Sequence[float | None]) -> FloatArray:
        s = np.array([math.nan if x is None else x for x in sharpes], dtype=np.float64)
        out: FloatArray = np.where(np.isfinite(s), np.clip(1.0 + self.sensitivity * s, self.floor, self.cap), 1.0)
        return out


class RegimePerformance:
    """Exponentially weighted mean and variance of each strategy's returns per regime label.

    :meth:`update` records the return a strategy earned over a bar *in the regime that held
    during that bar* (known at its close). :meth:`multipliers` applies the :class:`RegimeTilt`
    to each strategy's annualised Sharpe ratio in ``regime``; strategies with fewer than
    ``min_observations`` returns in that regime get 1.
    """

    def __init__(self, strategies: Sequence[str], *, halflife_bars: float = 60.0, periods_per_year: float = 252.0,
                 sensitivity: float = 0.5, floor: float = 0.25, cap: float = 2.0, min_observations: int = 20) -> None:
        if not (halflife_bars > 0 and periods_per_year > 0):
            raise ValueError("need halflife_bars, periods_per_year > 0")
        self.strategies = tuple(strategies)
        self._decay = 0.5 ** (1.0 / halflife_bars)
        self._ppy = periods_per_year
        self._tilt = RegimeTilt(sensitivity, floor, cap)
        self._min_obs = min_observations
        self._moments: dict[tuple[str, str], _Moments] = {}

    def update(self, regime: str, returns: Mapping[str, float]) -> None:
        a = 1.0 - self._decay
        for strategy, r in returns.items():
            if strategy not in self.strategies or not math.isfinite(r):
                continue
            m = self._moments.setdefault((strategy, regime), _Moments())
            if m.count == 0:
                m.mean, m.var = r, 0.0
            else:
                d = r - m.mean
                m.mean += a * d
                m.var = (1.0 - a) * (m.var + a * d * d)
            m.count += 1

    def sharpe(self, strategy: str, regime: str) -> float | None:
        m = self._moments.get((strategy, regime))
        if m is None or m.count < self._min_obs or m.var <= 0:
            return None
        return m.mean / math.sqrt(m.var) * math.sqrt(self._ppy)

    def multipliers(self, regime: str) -> FloatArray:
        return self._tilt.multipliers([self.sharpe(s, regime) for s in self.strategies])

    def snapshot(self) -> dict[str, Any]:
        return {"moments": [[s, r, m.mean, m.var, m.count] for (s, r), m in sorted(self._moments.items())]}

    def restore(self, state: Mapping[str, Any]) -> None:
        self._moments = {(s, r): _Moments(float(mean), float(var), int(n)) for s, r, mean, var, n in state["moments"]}


def allocate_strategy_capital(
    strategy_cov: npt.ArrayLike,
    base_budgets: npt.ArrayLike,
    regime_multipliers: npt.ArrayLike | None = None,
    redundancy: npt.ArrayLike | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Capital weights (sum 1) per strategy and the risk budgets they realise (sum 1)."""
    b = np.asarray(base_budgets, dtype=np.float64)
    for adj in (regime_multipliers, redundancy):
        if adj is not None:
            b = b * np.asarray(adj, dtype=np.float64)
    if np.any(b <= 0) or not np.all(np.isfinite(b)):
        raise ValueError("risk budgets must be positive and finite after adjustment")
    budgets = b / b.sum()
    weights, _, _ = risk_parity_allocation(strategy_cov, budgets)
    return weights, budgets


# ----------------------------------------------------------------------------- combined signals


@dataclass(frozen=True)
class CombinedSignal:
    strength: float
    direction: int
    agreement: float
    conflict: bool
    contributions: dict[str, float] = field(default_factory=dict)


def combine_signals(
    signals: Mapping[str, Mapping[str, float]], strategy_weights: Mapping[str, float], *, min_agreement: float = 0.3
) -> dict[str, CombinedSignal]:
    """Per-symbol combined signal from ``signals[strategy][symbol]`` (strengths in [-1, 1]).

    Strategies without a positive weight are ignored. See the module docstring for the rule.
    """
    per_symbol: dict[str, dict[str, float]] = {}
    for strategy, by_symbol in signals.items():
        if strategy_weights.get(strategy, 0.0) <= 0.0:
            continue
        for symbol, s in by_symbol.items():
            per_symbol.setdefault(symbol, {})[strategy] = min(max(float(s), -1.0), 1.0)
    out: dict[str, CombinedSignal] = {}
    for symbol, contrib in sorted(per_symbol.items()):
        w = {k: strategy_weights[k] for k in contrib}
        total_w = sum(w.values())
        signed = sum(w[k] * s for k, s in contrib.items())
        absolute = sum(w[k] * abs(s) for k, s in contrib.items())
        agreement = abs(signed) / absolute if absolute > 0 else 0.0
        conflict = absolute > 0 and agreement < min_agreement
        strength = 0.0 if conflict or absolute == 0 else signed / total_w
        out[symbol] = CombinedSignal(strength, int(np.sign(strength)), agreement, conflict,
                                     {k: w[k] * s / total_w for k, s in contrib.items()})
    return out


# ----------------------------------------------------------------------------- fallback


class FallbackReason(StrEnum):
    EXCEPTION = "exception"
    NOT_CONVERGED = "not_converged"
    NON_FINITE = "non_finite"
    BOUNDS_VIOLATED = "bounds_violated"
    INVALID_OUTPUT = "invalid_output"


@dataclass(frozen=True)
class FallbackRecord:
    component: str
    reason: FallbackReason
    detail: str
    method: str = FALLBACK_METHOD


@dataclass(frozen=True)
class Allocation:
    weights: FloatArray
    method: str
    fallback: FallbackRecord | None = None


def fallback_weights(cov: npt.ArrayLike, constraints: Constraints, expected: npt.ArrayLike | None = None) -> FloatArray:
    """Capped inverse volatility (see the module docstring); never raises on a bad covariance."""
    c = constraints
    diag = np.diag(np.asarray(cov, dtype=np.float64)) if np.ndim(cov) == 2 else np.full(c.n, np.nan)
    vol = np.sqrt(np.where(np.isfinite(diag) & (diag > 0), diag, np.nan)) if diag.shape == (c.n,) else np.full(c.n, np.nan)
    mu = None
    if expected is not None:
        e = np.asarray(expected, dtype=np.float64)
        mu = e if e.shape == (c.n,) and np.all(np.isfinite(e)) else None
    signs = signal_directions(mu, c)
    inv = np.where(np.isfinite(vol), 1.0 / vol, 1.0 / np.nanmedian(vol) if np.any(np.isfinite(vol)) else 1.0)
    shape = signs * inv
    budget = c.gross_max if c.net_target is None or c.net_target == 0.0 else min(abs(c.net_target), c.gross_max)

    def at(tau: float) -> FloatArray:
        out: FloatArray = np.clip(tau * shape, c.lower, c.upper)
        return out

    lo_tau, hi_tau = 0.0, 1.0
    while float(np.abs(at(hi_tau)).sum()) < budget and hi_tau < 1e12:
        hi_tau *= 2.0
    for _ in range(200):  # bisection: gross exposure is non-decreasing in tau
        mid = 0.5 * (lo_tau + hi_tau)
        if float(np.abs(at(mid)).sum()) > budget:
            hi_tau = mid
        else:
            lo_tau = mid
    w = at(lo_tau)
    for cl in c.clusters:
        idx = list(cl.members)
        total = float(w[idx].sum())
        if total > cl.upper + TOLERANCE and total > 0:
            w[idx] *= max(cl.upper, 0.0) / total
        elif total < cl.lower - TOLERANCE and total < 0:
            w[idx] *= min(cl.lower, 0.0) / total
    return w


def _check(weights: FloatArray, constraints: Constraints) -> tuple[FallbackReason, str] | None:
    if weights.shape != (constraints.n,) or not np.all(np.isfinite(weights)):
        return FallbackReason.NON_FINITE, f"weights not a finite vector of length {constraints.n}"
    problems = constraints.violations(weights)
    if problems:
        return FallbackReason.BOUNDS_VIOLATED, "; ".join(problems[:5])
    return None


class GuardedAllocator:
    """Runs an optimiser (or any component) and switches to the fallback when it fails."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def _record(self, component: str, reason: FallbackReason, detail: str) -> FallbackRecord:
        self.counts[(component, reason.value)] += 1
        return FallbackRecord(component, reason, detail[:1000])

    def allocate(
        self,
        optimiser: Optimiser,
        cov: npt.ArrayLike,
        constraints: Constraints,
        expected: npt.ArrayLike | None = None,
        previous: npt.ArrayLike | None = None,
    ) -> Allocation:
        component = f"optimiser:{optimiser.name}"
        try:
            res = optimiser.weights(cov, expected=expected, previous=previous, constraints=constraints)
        except Exception as exc:  # any failure of a pluggable optimiser must not stop trading
            record = self._record(component, FallbackReason.EXCEPTION, f"{type(exc).__name__}: {exc}")
        else:
            w = np.asarray(res.weights, dtype=np.float64)
            problem = _check(w, constraints)
            if problem is None and res.converged:
                return Allocation(w, optimiser.name)
            reason, detail = problem or (FallbackReason.NOT_CONVERGED, str(res.diagnostics))
            record = self._record(component, reason, detail)
        return Allocation(fallback_weights(cov, constraints, expected), FALLBACK_METHOD, record)

    def guard(
        self, component: str, run: Callable[[], T], validate: Callable[[T], str | None] | None = None
    ) -> T | FallbackRecord:
        """``run()``'s result, or a :class:`FallbackRecord` if it raised or ``validate`` returned an error."""
        try:
            value = run()
        except Exception as exc:  # a corrupt model file may raise anything from its parser
            return self._record(component, FallbackReason.EXCEPTION, f"{type(exc).__name__}: {exc}")
        error = validate(value) if validate is not None else None
        if error is not None:
            return self._record(component, FallbackReason.INVALID_OUTPUT, error)
        return value
