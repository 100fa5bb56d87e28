"""Cross-strategy coordination inside the meta-strategy (optional, ``MetaConfig.coordination``).

Per symbol, the meta-strategy keeps a :class:`ReturnWindow`: each strategy's return over each of
the last ``correlation_window_bars`` bars (its strength at the previous bar times the bar's simple
return; 0 while it had no signal), appended when the bar is tracked, so the window at bar ``t``
holds bars up to ``t`` and never a later one. From it, at every bar (pure functions of
:mod:`ata.quant.portfolio.coordination`):

- **Correlation and redundancy.** The strategies' return correlation over the window
  (``strategy_correlation``) and, among the strategies in use at this bar, the redundancy factors
  ``f_i = 1 / (1 + Σ_{j≠i} clip((ρ_ij − τ) / (1 − τ), 0, 1))`` (``redundancy_factors``, threshold
  ``τ = redundancy_threshold``): two identical strategies get 1/2 each, so together they count
  once. With ``down_weight_redundant`` every aggregation method's weights are multiplied by them.
  With fewer than ``min_correlation_bars`` rows nothing is known and every factor is 1.
- **Capital by risk budget** (the ``risk_budget`` aggregation method). Base budgets
  (``risk_budgets``, 1 for a strategy not listed) times the regime tilt of each strategy's tracked
  Sharpe ratio in the regime in force (:class:`~ata.quant.portfolio.coordination.RegimeTilt`;
  1 with fewer than ``min_history_bars`` observations there) times the redundancy factors, made
  to sum 1, are the strategies' shares of the risk; the weights are those whose risk
  contributions on the window's return covariance equal these shares
  (``allocate_strategy_capital``). The method cannot answer (the meta-strategy falls back to
  ``inverse_volatility``) before ``min_correlation_bars`` rows, when a strategy in use had
  constant returns over the window (no risk to budget), or when no weights realise the budgets
  within ``RISK_SHARE_TOLERANCE`` (strategies that hedge each other exactly).

Each decision reports, per strategy with a signal, its highest correlation with another strategy
in use, its redundancy factor and, when ``risk_budget`` decided the weights, its risk share
(:class:`StrategyCoordination`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ata.quant.portfolio.coordination import (
    RegimeTilt,
    allocate_strategy_capital,
    redundancy_factors,
    strategy_correlation,
)
from ata.quant.portfolio.optimisers import risk_contributions

__all__ = ["RISK_SHARE_TOLERANCE", "CoordinationConfig", "CoordinationView", "ReturnWindow", "StrategyCoordination"]

#: Largest gap between a strategy's realised and budgeted share of the risk that counts as met.
RISK_SHARE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class CoordinationConfig:
    """Settings of cross-strategy coordination (see the module contract)."""

    correlation_window_bars: int = 63
    min_correlation_bars: int = 20
    redundancy_threshold: float = 0.5
    down_weight_redundant: bool = True
    risk_budgets: Mapping[str, float] = field(default_factory=dict)
    regime_tilt: RegimeTilt = field(default_factory=RegimeTilt)

    def __post_init__(self) -> None:
        if not 2 <= self.min_correlation_bars <= self.correlation_window_bars:
            raise ValueError("need 2 <= min_correlation_bars <= correlation_window_bars")
        if not 0.0 <= self.redundancy_threshold < 1.0:
            raise ValueError("redundancy_threshold must lie in [0, 1)")
        bad = sorted(name for name, b in self.risk_budgets.items() if not (np.isfinite(b) and b > 0.0))
        if bad:
            raise ValueError(f"risk_budgets must be positive and finite: {', '.join(bad)}")

    def budget(self, strategy: str) -> float:
        return float(self.risk_budgets.get(strategy, 1.0))


@dataclass(frozen=True, slots=True)
class StrategyCoordination:
    """What coordination decided for one strategy at one bar (``None``: not known yet / not used)."""

    strategy: str
    max_correlation: float | None
    redundancy: float
    risk_share: float | None = None


class ReturnWindow:
    """The strategies' per-bar returns over the last ``window`` bars, oldest first."""

    __slots__ = ("rows", "window")

    def __init__(self, window: int) -> None:
        self.window = window
        self.rows: deque[tuple[float, ...]] = deque(maxlen=window)

    def add(self, row: tuple[float, ...]) -> None:
        self.rows.append(row)

    def snapshot(self) -> list[list[float]]:
        return [list(r) for r in self.rows]

    def restore(self, rows: Sequence[Sequence[float]]) -> None:
        self.rows = deque((tuple(float(x) for x in r) for r in rows), maxlen=self.window)


class CoordinationView:
    """Correlation and redundancy among the strategies ``used`` at one bar (see the module contract)."""

    def __init__(self, config: CoordinationConfig, window: ReturnWindow, columns: Mapping[str, int],
                 used: Sequence[str]) -> None:
        self.config = config
        self.used = list(used)
        self.redundancy = dict.fromkeys(self.used, 1.0)
        self.max_correlation: dict[str, float | None] = dict.fromkeys(self.used)
        self.returns: np.ndarray[Any, np.dtype[np.float64]] | None = None
        self.risk_share: dict[str, float] | None = None
        if len(window.rows) < config.min_correlation_bars:
            return
        self.returns = np.array(window.rows, dtype=np.float64)[:, [columns[n] for n in self.used]]
        if len(self.used) < 2:
            return
        corr = strategy_correlation(self.returns, config.correlation_window_bars)
        factors = redundancy_factors(corr, config.redundancy_threshold)
        np.fill_diagonal(corr, -np.inf)
        for i, name in enumerate(self.used):
            self.redundancy[name] = float(factors[i])
            self.max_correlation[name] = float(corr[i].max())

    def capital(self, sharpes: Sequence[float | None]) -> dict[str, float] | None:
        """Risk-budget weights of the used strategies (``sharpes``: each one's in the regime in
        force, in ``used`` order); ``None`` when they cannot be computed yet."""
        x = self.returns
        if x is None:
            return None
        centred = x - x.mean(axis=0)
        cov = centred.T @ centred / x.shape[0]
        if np.any(np.diag(cov) <= 0.0):
            return None
        base = [self.config.budget(n) for n in self.used]
        redundancy = [self.redundancy[n] for n in self.used]
        # A singular covariance (strategies hedging each other) is refused by the allocation, or a
        # nearly singular one yields weights that the check of the realised shares below rejects.
        try:
            with np.errstate(divide="ignore", invalid="ignore"):
                weights, shares = allocate_strategy_capital(cov, base, self.config.regime_tilt.multipliers(sharpes),
                                                            redundancy)
        except ValueError:  # e.g. a covariance the allocation cannot use
            return None
        if not np.allclose(risk_contributions(weights, cov), shares, rtol=0.0, atol=RISK_SHARE_TOLERANCE):
            return None  # no weights realise the budgets (e.g. two strategies that hedge each other exactly)
        self.risk_share = {n: float(s) for n, s in zip(self.used, shares, strict=True)}
        return {n: float(w) for n, w in zip(self.used, weights, strict=True)}

    def report(self, names: Sequence[str], with_shares: bool) -> tuple[StrategyCoordination, ...]:
        shares = self.risk_share if with_shares else None
        return tuple(StrategyCoordination(n, self.max_correlation.get(n), self.redundancy.get(n, 1.0),
                                          None if shares is None else shares.get(n)) for n in names)
