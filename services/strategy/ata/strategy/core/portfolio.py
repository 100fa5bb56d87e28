"""Portfolio construction before target proposals: the meta-strategy's per-symbol targets of a
universe in, one optimised, rebalancing-filtered set of target weights out.

**Cross-sections.** Bars of the configured universe are grouped by close time (``ts_event``).
A cross-section is *decided* once every universe symbol has its bar at that time; or, when a
symbol had no bar then (a holiday of its market, a halt), once every universe symbol has a bar
at a later time; or when more than ``max_pending_sections`` wait (a symbol that never trades).
Cross-sections are decided in time order, each once. A bar at or before the last decided time
joins nothing (it is counted in ``late_bars``). Each symbol's bars arrive in order (one
partition per symbol), so what is decided does not depend on how symbols interleave.

**Per decided cross-section at close time t** (:meth:`PortfolioConstructor.add`):

1. *Returns.* Each present symbol's close over its previous close (0 for a missing symbol);
   the row goes into a :class:`~ata.quant.portfolio.covariance.RollingCovariance`, whose
   estimate at t uses rows up to t only, never a later bar.
2. *Signals.* A symbol's strength is its meta-strategy target divided by ``max_abs_target``
   (its latest decision at or before t; 0 while it warms up). Expected returns per bar are
   Grinold–Kahn ``information_coefficient · σ · strength``.
3. *Optimiser.* ``optimisers.by_regime[regime at t]``, else ``optimisers.default``, under the
   constraints of ``limits`` (volatility-target caps from the covariance), through a
   :class:`~ata.quant.portfolio.coordination.GuardedAllocator`: if it raises, does not converge
   or returns weights breaking a constraint, the documented simple allocation (capped inverse
   volatility, :func:`~ata.quant.portfolio.coordination.fallback_weights`) decides instead and
   the step carries the :class:`FallbackRecord`. Limits that the volatility caps make infeasible
   fall back to the limits without caps, also recorded.
4. *Rebalancing.* :class:`~ata.quant.portfolio.rebalancing.RebalancePolicy` compares the new
   weights with the last proposed ones (bar index = decided cross-sections): tiny changes
   produce no proposal. If the symbols it holds back would leave the book over a limit (the
   gross budget, a cluster cap), every symbol moves to its new weight instead. Only symbols
   with a bar at t are proposed (the bar causes the proposal); the others keep their last
   proposed weight until their next bar.

Nothing is proposed before the covariance has ``covariance_min_bars`` rows (warm-up).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ata.events import BarClosed
from ata.quant.portfolio.constraints import Constraints, PortfolioRiskConfig
from ata.quant.portfolio.coordination import FallbackRecord, GuardedAllocator
from ata.quant.portfolio.covariance import CovarianceConfig, RollingCovariance
from ata.quant.portfolio.optimisers import OptimiserSelection, expected_returns_from_signals
from ata.quant.portfolio.rebalancing import RebalancePolicy
from ata.strategy.core.meta import Contribution, Decision

__all__ = ["PortfolioConstructor", "PortfolioSettings", "PortfolioStep", "Proposal"]


class PortfolioSettings(BaseModel):
    """How the strategy service turns per-symbol targets into a portfolio (see the module contract).

    The default limits are long-short (the meta-strategy's targets are signed) with a gross
    budget of 1 and no net target; ``minimum_variance`` needs ``limits.net_target`` set.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    optimisers: OptimiserSelection = Field(default_factory=OptimiserSelection,
                                           description="optimiser by regime label, else default")
    covariance_method: Literal["ledoit_wolf", "ewma", "sample"] = "ledoit_wolf"
    covariance_window_bars: int = Field(126, ge=2)
    covariance_min_bars: int = Field(30, ge=2)
    covariance_halflife_bars: float = Field(30.0, gt=0)
    limits: PortfolioRiskConfig = Field(default_factory=lambda: PortfolioRiskConfig(long_only=False, net_target=None))
    rebalance: RebalancePolicy = Field(default_factory=RebalancePolicy)
    information_coefficient: float = Field(0.05, gt=0, le=1)
    max_pending_sections: int = Field(256, ge=1, description="cross-sections waiting for missing symbols")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        self.covariance_config()  # raises ValueError naming the problem
        return self

    def covariance_config(self) -> CovarianceConfig:
        if self.covariance_min_bars > self.covariance_window_bars:
            raise ValueError("covariance_min_bars must be <= covariance_window_bars")
        return CovarianceConfig(self.covariance_method, self.covariance_window_bars, self.covariance_min_bars,
                                self.covariance_halflife_bars)


@dataclass(frozen=True, slots=True)
class Proposal:
    """A symbol's bar in a cross-section, with the meta-strategy's decision on it (if any)."""

    bar: BarClosed
    target: float | None
    regime: str
    contributions: tuple[Contribution, ...]

    @classmethod
    def of(cls, bar: BarClosed, decision: Decision | None) -> Proposal:
        if decision is None:
            return cls(bar, None, "", ())
        return cls(bar, decision.target_weight, decision.regime, decision.contributions)

    def snapshot(self) -> dict[str, Any]:
        return {"bar": self.bar.model_dump(mode="json"), "target": self.target, "regime": self.regime,
                "contributions": [[c.strategy, c.strength, c.weight] for c in self.contributions]}

    @classmethod
    def restore(cls, state: Mapping[str, Any]) -> Proposal:
        return cls(BarClosed.model_validate(state["bar"]), state["target"], state["regime"],
                   tuple(Contribution(str(s), float(st), float(w)) for s, st, w in state["contributions"]))


@dataclass(frozen=True, slots=True)
class PortfolioStep:
    """One decided cross-section: the proposals to publish and the fallback that engaged, if any.

    ``weights`` holds the new weight of each symbol to propose (only symbols present in the
    section); ``method`` is what decided them (the optimiser's name, or the fallback's).
    """

    ts_ns: int
    regime: str
    present: Mapping[str, Proposal]
    weights: Mapping[str, float]
    method: str
    fallback: FallbackRecord | None
    reason: str

    def contributions_of(self, symbol: str) -> tuple[Contribution, ...]:
        """The meta-strategy's contributions rescaled so that ``Σ weight_i · strength_i`` equals the
        proposed weight (the attribution invariant); empty when the meta target was 0."""
        proposal = self.present[symbol]
        if not proposal.target:
            return ()
        k = self.weights[symbol] / proposal.target
        return tuple(Contribution(c.strategy, c.strength, c.weight * k) for c in proposal.contributions)


class PortfolioConstructor:
    """The cross-section state machine of the module contract. ``snapshot()`` / ``restore()``."""

    def __init__(self, settings: PortfolioSettings, universe: Sequence[str], *, max_abs_target: float,
                 periods_per_year: float) -> None:
        if not universe:
            raise ValueError("portfolio construction needs a universe of symbols")
        self.settings = settings
        self.universe = tuple(sorted(set(universe)))
        self._index = {s: i for i, s in enumerate(self.universe)}
        self.max_abs_target = max_abs_target
        self.periods_per_year = periods_per_year
        self.base_constraints = settings.limits.constraints_for(self.universe)  # validates the limits
        self.optimisers = settings.optimisers.all_optimisers()
        self.guard = GuardedAllocator()
        self.covariance = RollingCovariance(len(self.universe), settings.covariance_config())
        self.pending: dict[int, dict[str, Proposal]] = {}
        self.latest_ts: dict[str, int] = {}
        self.last_close: dict[str, float] = {}
        self.strength: dict[str, float] = {}
        self.weights: dict[str, float] = {}
        self.decided_ts = -1
        self.sections = 0
        self.late_bars = 0

    def add(self, bar: BarClosed, decision: Decision | None, regime_at: Callable[[int], str]) -> list[PortfolioStep]:
        """Record a universe symbol's bar (and the meta decision on it); the cross-sections it decides."""
        if bar.symbol not in self._index:
            return []
        if bar.ts_event <= self.decided_ts:
            self.late_bars += 1
            return []
        self.pending.setdefault(bar.ts_event, {})[bar.symbol] = Proposal.of(bar, decision)
        self.latest_ts[bar.symbol] = max(self.latest_ts.get(bar.symbol, -1), bar.ts_event)
        steps: list[PortfolioStep] = []
        while self.pending:
            ts = min(self.pending)
            section = self.pending[ts]
            complete = len(section) == len(self.universe)
            superseded = all(self.latest_ts.get(s, -1) > ts for s in self.universe if s not in section)
            if not (complete or superseded or len(self.pending) > self.settings.max_pending_sections):
                break
            del self.pending[ts]
            step = self._decide(ts, section, regime_at(ts))
            if step is not None:
                steps.append(step)
        return steps

    # -- one cross-section -------------------------------------------------------------------

    def _decide(self, ts: int, section: dict[str, Proposal], regime: str) -> PortfolioStep | None:
        self.decided_ts = ts
        row = np.zeros(len(self.universe))
        complete_row = True
        for symbol, proposal in section.items():
            previous = self.last_close.get(symbol)
            close = proposal.bar.close
            if previous is None:
                complete_row = False
            else:
                row[self._index[symbol]] = close / previous - 1.0
            self.last_close[symbol] = close
            if proposal.target is not None:
                self.strength[symbol] = max(-1.0, min(1.0, proposal.target / self.max_abs_target))
        if complete_row and len(self.last_close) == len(self.universe):
            self.covariance.update(row)
        cov = self.covariance.covariance()
        if cov is None:
            return None
        bar_index = self.sections
        self.sections += 1
        strength = np.array([self.strength.get(s, 0.0) for s in self.universe])
        expected = expected_returns_from_signals(strength, np.sqrt(np.clip(np.diag(cov), 0.0, None)),
                                                 self.settings.information_coefficient)
        previous_w = np.array([self.weights.get(s, 0.0) for s in self.universe])
        constraints, fallback = self._constraints(cov)
        name = self.settings.optimisers.name_for(regime or None)
        allocation = self.guard.allocate(self.optimisers[name], cov, constraints, expected, previous_w)
        fallback = allocation.fallback or fallback
        target = {s: float(w) for s, w in zip(self.universe, allocation.weights, strict=True) if w != 0.0}
        current = {s: w for s, w in self.weights.items() if w != 0.0}
        decision = self.settings.rebalance.decide(current, target, bar_index)
        trades = {s: w + 0.0 for s, w in decision.trades.items() if s in section}
        book = {**current, **trades}
        if trades and constraints.violations(np.array([book.get(s, 0.0) for s in self.universe])):
            # Symbols held back below min_trade_weight can leave the book over a limit (the gross
            # budget, a cluster cap): then every present symbol moves to its new weight.
            trades = {s: target.get(s, 0.0) + 0.0 for s in section if target.get(s, 0.0) != current.get(s, 0.0)}
        self.weights.update(trades)
        return PortfolioStep(ts, regime, dict(section), trades, allocation.method, fallback, decision.reason)

    def _constraints(self, cov: np.ndarray[Any, np.dtype[np.float64]]) -> tuple[Constraints, FallbackRecord | None]:
        limits = self.settings.limits
        resolved = self.guard.guard("portfolio_limits",
                                    lambda: limits.constraints_for(self.universe, cov, self.periods_per_year))
        if isinstance(resolved, FallbackRecord):
            return self.base_constraints, resolved
        return resolved, None

    # -- state -------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "universe": list(self.universe),
            "covariance": self.covariance.snapshot(),
            "pending": [[ts, {s: p.snapshot() for s, p in section.items()}] for ts, section in sorted(self.pending.items())],
            "latest_ts": dict(self.latest_ts),
            "last_close": dict(self.last_close),
            "strength": dict(self.strength),
            "weights": dict(self.weights),
            "decided_ts": self.decided_ts,
            "sections": self.sections,
            "late_bars": self.late_bars,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load ``snapshot()`` output into this (identically configured) constructor."""
        if list(state["universe"]) != list(self.universe):
            raise ValueError("the cached portfolio state is for another universe")
        self.covariance = RollingCovariance.restore(state["covariance"])
        self.pending = {int(ts): {s: Proposal.restore(p) for s, p in section.items()} for ts, section in state["pending"]}
        self.latest_ts = {s: int(t) for s, t in state["latest_ts"].items()}
        self.last_close = {s: float(c) for s, c in state["last_close"].items()}
        self.strength = {s: float(v) for s, v in state["strength"].items()}
        self.weights = {s: float(v) for s, v in state["weights"].items()}
        self.decided_ts = int(state["decided_ts"])
        self.sections = int(state["sections"])
        self.late_bars = int(state["late_bars"])

