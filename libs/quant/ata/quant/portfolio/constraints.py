"""Portfolio constraints: per-symbol bounds, per-cluster bounds, a gross-exposure budget, a net target.

Weights are signed fractions of equity (0.25 = a long position worth a quarter of equity).
A weight vector ``w`` is *feasible* when

- ``lower_i <= w_i <= upper_i`` for every symbol (a long-only symbol has ``lower_i = 0``, a
  short-only one ``upper_i = 0``);
- ``sum_i |w_i| <= gross_max`` (the gross-exposure budget);
- ``sum_i w_i == net_target`` when a net target is set (1.0: fully invested), free otherwise;
- ``cluster.lower <= sum_{i in cluster} w_i <= cluster.upper`` for each cluster bound (net
  exposure of the cluster).

:class:`PortfolioRiskConfig` is the validated configuration (symbol-specific limits,
volatility targets and allowed directions) that resolves to :class:`Constraints` for a list of
symbols; a symbol's volatility target caps its absolute weight at
``vol_target_annual / annualised volatility``. :func:`constrained_qp` turns constraints plus a
quadratic objective into the :mod:`ata.quant.portfolio.qp` form, modelling ``|w|`` and an L1
turnover cost with auxiliary variables only when they are needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Self

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ata.quant.portfolio.qp import QPResult, solve_l1_qp, solve_qp

FloatArray = npt.NDArray[np.float64]
Direction = Literal["long", "short", "both"]

__all__ = [
    "ClusterBound",
    "ClusterLimits",
    "Constraints",
    "PortfolioRiskConfig",
    "SymbolRiskParams",
    "constrained_qp",
    "project",
]

#: Bound checks accept this much rounding (weights are fractions of equity: 1e-9 is a
#: billionth of equity, far below any lot size).
TOLERANCE = 1e-9


@dataclass(frozen=True)
class ClusterBound:
    """Net exposure bounds of a group of symbols (indices into the weight vector)."""

    name: str
    members: tuple[int, ...]
    lower: float
    upper: float


@dataclass(frozen=True)
class Constraints:
    """Resolved constraints for ``n`` symbols (see the module docstring for the semantics)."""

    lower: FloatArray
    upper: FloatArray
    gross_max: float = 1.0
    net_target: float | None = 1.0
    clusters: tuple[ClusterBound, ...] = field(default=())

    def __post_init__(self) -> None:
        lo, hi = np.asarray(self.lower, dtype=np.float64), np.asarray(self.upper, dtype=np.float64)
        object.__setattr__(self, "lower", lo)
        object.__setattr__(self, "upper", hi)
        if lo.ndim != 1 or lo.shape != hi.shape:
            raise ValueError("lower and upper must be 1-D of equal length")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))) or np.any(lo > hi):
            raise ValueError("symbol bounds must be finite with lower <= upper")
        if not self.gross_max > 0:
            raise ValueError("gross_max must be positive")
        if self.net_target is not None and abs(self.net_target) > self.gross_max:
            raise ValueError("|net_target| cannot exceed gross_max")
        for c in self.clusters:
            if c.lower > c.upper or not all(0 <= i < lo.shape[0] for i in c.members):
                raise ValueError(f"cluster {c.name!r}: bounds reversed or member out of range")
        if self.net_target is not None and not lo.sum() - TOLERANCE <= self.net_target <= hi.sum() + TOLERANCE:
            raise ValueError("net_target is outside what the symbol bounds allow")
        if np.sum(np.maximum(lo, 0.0) - np.minimum(hi, 0.0)) > self.gross_max + TOLERANCE:
            raise ValueError("symbol bounds force more gross exposure than gross_max")

    @property
    def n(self) -> int:
        return int(self.lower.shape[0])

    @property
    def long_only(self) -> bool:
        return bool(np.all(self.lower >= 0.0))

    @classmethod
    def long_only_portfolio(cls, n: int, max_weight: float = 1.0, gross_max: float = 1.0) -> Self:
        """Fully invested long-only: ``0 <= w_i <= max_weight``, ``sum w = gross_max``."""
        return cls(np.zeros(n), np.full(n, max_weight), gross_max, gross_max)

    @classmethod
    def long_short_portfolio(cls, n: int, max_abs_weight: float, gross_max: float, net_target: float | None = None) -> Self:
        return cls(np.full(n, -max_abs_weight), np.full(n, max_abs_weight), gross_max, net_target)

    def violations(self, weights: npt.ArrayLike, tol: float = TOLERANCE) -> list[str]:
        """Human-readable list of violated constraints (empty: feasible within ``tol``)."""
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (self.n,):
            return [f"shape {w.shape} != ({self.n},)"]
        if not np.all(np.isfinite(w)):
            return ["non-finite weight"]
        out = [f"w[{i}]={w[i]:.6g} below {self.lower[i]:.6g}" for i in np.flatnonzero(w < self.lower - tol)]
        out += [f"w[{i}]={w[i]:.6g} above {self.upper[i]:.6g}" for i in np.flatnonzero(w > self.upper + tol)]
        gross = float(np.abs(w).sum())
        if gross > self.gross_max + tol:
            out.append(f"gross {gross:.6g} above {self.gross_max:.6g}")
        if self.net_target is not None and abs(w.sum() - self.net_target) > tol:
            out.append(f"net {w.sum():.6g} != {self.net_target:.6g}")
        for c in self.clusters:
            s = float(w[list(c.members)].sum())
            if not c.lower - tol <= s <= c.upper + tol:
                out.append(f"cluster {c.name} net {s:.6g} outside [{c.lower:.6g}, {c.upper:.6g}]")
        return out


def _general_rows(c: Constraints) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Net-target and cluster rows as ``(A, lo, hi)``."""
    rows: list[FloatArray] = []
    los: list[float] = []
    his: list[float] = []
    if c.net_target is not None:
        rows.append(np.ones(c.n))
        los.append(c.net_target)
        his.append(c.net_target)
    for cl in c.clusters:
        member = np.zeros(c.n)
        member[list(cl.members)] = 1.0
        rows.append(member)
        los.append(cl.lower)
        his.append(cl.upper)
    a = np.vstack(rows) if rows else np.zeros((0, c.n))
    return a, np.array(los), np.array(his)


def _with_gross_row(
    sign: FloatArray, c: Constraints, general: tuple[FloatArray, FloatArray, FloatArray], lower: FloatArray, upper: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(A, lo, hi)`` of bounds, the linear gross row ``sign·w <= gross_max`` and the general rows.

    With a net target and one sign throughout, ``Σ|w| = |Σw| = |net_target| <= gross_max``
    already: the gross row would duplicate the net row (a degenerate active set), so it is left out.
    """
    a, a_lo, a_hi = general
    redundant = c.net_target is not None and (np.all(sign >= 0) or np.all(sign <= 0))
    rows = [np.eye(c.n)] + ([] if redundant else [sign[None, :]]) + [a]
    los = [lower] + ([] if redundant else [np.array([-math.inf])]) + [a_lo]
    his = [upper] + ([] if redundant else [np.array([c.gross_max])]) + [a_hi]
    return np.vstack(rows), np.concatenate(los), np.concatenate(his)


def constrained_qp(
    p: npt.ArrayLike,
    q: npt.ArrayLike,
    constraints: Constraints,
    *,
    turnover_cost: float = 0.0,
    previous: npt.ArrayLike | None = None,
    x0: npt.ArrayLike | None = None,
) -> tuple[FloatArray, QPResult]:
    """Minimise ``½wᵀPw + qᵀw + turnover_cost·Σ|w − previous|`` over the feasible set.

    Without absolute values (a one-signed portfolio and no turnover cost) the gross budget is
    a linear row and :func:`~ata.quant.portfolio.qp.solve_qp` solves and polishes it. Otherwise
    :func:`~ata.quant.portfolio.qp.solve_l1_qp` handles ``|w|`` and ``|w − previous|``
    directly, and the signs it finds are fixed for an exact, polished second stage
    (:func:`_sign_fixed_refinement`). Returns the weights (clipped onto the symbol bounds,
    which moves them by rounding only) and the solver result.
    """
    c = constraints
    pm = np.asarray(p, dtype=np.float64)
    qv = np.asarray(q, dtype=np.float64)
    signed = bool(np.any(c.lower < 0.0) and np.any(c.upper > 0.0))
    prev = None if previous is None or turnover_cost <= 0.0 else np.asarray(previous, dtype=np.float64)
    a, lo, hi = _general_rows(c)
    start = None if x0 is None else np.asarray(x0, dtype=np.float64)
    if not signed and prev is None:
        gross_row = np.ones(c.n) if c.long_only else -np.ones(c.n)
        res = solve_qp(pm, qv, *_with_gross_row(gross_row, c, (a, lo, hi), c.lower, c.upper), x0=start)
    else:
        # The second stage only needs the right signs: a loose first stage usually finds them;
        # if not, ADMM continues from there to a tighter tolerance.
        for eps in _L1_TOLERANCES:
            res = solve_l1_qp(pm, qv, lower=c.lower, upper=c.upper, l1_radius=c.gross_max, a=a, lo=lo, hi=hi,
                              l1_cost=turnover_cost, l1_centre=prev, x0=start, eps=eps)
            sharp = _sign_fixed_refinement(pm, qv, c, res, turnover_cost=turnover_cost, previous=prev, accuracy=eps)
            if sharp is not None:
                res = sharp
                break
            start = res.x
    return np.clip(res.x, c.lower, c.upper), res


_SIGN_TOL = 1e-7
_L1_TOLERANCES = (1e-5, 1e-7, 1e-9)


def _sign_fixed_refinement(
    p: FloatArray, q: FloatArray, c: Constraints, first: QPResult, *, turnover_cost: float, previous: FloatArray | None,
    accuracy: float,
) -> QPResult | None:
    """Second stage for the lifted problems (``|w|``, turnover): auxiliary variables without
    cost are not unique, which defeats polishing. Fixing the signs of ``w`` and of
    ``w - previous`` that the first stage found makes every absolute value linear; that QP in
    ``w`` alone polishes exactly (warm-started from the first stage, solved to ``accuracy``).
    Kept only if feasible and no worse on the original objective.
    """
    n = c.n
    w1 = first.x[:n]
    lo, hi = c.lower.copy(), c.upper.copy()
    sign = np.where(w1 > _SIGN_TOL, 1.0, np.where(w1 < -_SIGN_TOL, -1.0, 0.0))
    lo = np.where(sign > 0, np.maximum(lo, 0.0), np.where(sign == 0, np.clip(0.0, lo, hi), lo))
    hi = np.where(sign < 0, np.minimum(hi, 0.0), np.where(sign == 0, np.clip(0.0, c.lower, hi), hi))
    lin = q.copy()
    if previous is not None:
        d = w1 - previous
        d_sign = np.where(d > _SIGN_TOL, 1.0, np.where(d < -_SIGN_TOL, -1.0, 0.0))
        lin += turnover_cost * d_sign
        lo = np.where(d_sign > 0, np.maximum(lo, previous), lo)
        hi = np.where(d_sign < 0, np.minimum(hi, previous), hi)
        stay = (d_sign == 0) & (previous >= lo) & (previous <= hi)
        lo, hi = np.where(stay, previous, lo), np.where(stay, previous, hi)
    if np.any(lo > hi):
        return None
    res = solve_qp(p, lin, *_with_gross_row(sign, c, _general_rows(c), lo, hi), x0=w1, x0_accuracy=accuracy)
    w = np.clip(res.x, c.lower, c.upper)
    if not res.polished or c.violations(w):
        return None

    def full_objective(x: FloatArray) -> float:
        cost = 0.0 if previous is None else turnover_cost * float(np.abs(x - previous).sum())
        return float(0.5 * x @ p @ x + q @ x) + cost

    scale = 1.0 + abs(full_objective(w1))
    if full_objective(w) > full_objective(w1) + 1e-6 * scale:
        return None
    return QPResult(w, first.iterations + res.iterations, True, True, res.primal_residual, res.dual_residual)


def project(target: npt.ArrayLike, constraints: Constraints) -> tuple[FloatArray, QPResult | None]:
    """The feasible weights nearest (Euclidean) to ``target``; ``target`` itself when feasible."""
    t = np.asarray(target, dtype=np.float64)
    if not constraints.violations(t):
        return t.copy(), None
    return constrained_qp(np.eye(constraints.n), -t, constraints, x0=t)


class SymbolRiskParams(BaseModel):
    """Limits of one symbol. ``max_weight`` caps ``|w|``; ``direction`` restricts the sign."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_weight: float = Field(default=1.0, ge=0.0, le=10.0)
    direction: Direction = "both"
    vol_target_annual: float | None = Field(default=None, gt=0.0, le=5.0)
    cluster: str | None = Field(default=None, min_length=1, max_length=64)


class ClusterLimits(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    min_weight: float = Field(default=-10.0, ge=-10.0, le=10.0)
    max_weight: float = Field(default=10.0, ge=-10.0, le=10.0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min_weight > self.max_weight:
            raise ValueError("min_weight must be <= max_weight")
        return self


class PortfolioRiskConfig(BaseModel):
    """Validated portfolio limits. A ``symbols`` entry overrides the fields it sets of ``default``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    long_only: bool = True
    gross_max: float = Field(default=1.0, gt=0.0, le=10.0)
    net_target: float | None = Field(default=1.0, ge=-10.0, le=10.0)
    default: SymbolRiskParams = SymbolRiskParams()
    symbols: dict[str, SymbolRiskParams] = Field(default_factory=dict)
    clusters: dict[str, ClusterLimits] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.net_target is not None and abs(self.net_target) > self.gross_max:
            raise ValueError("|net_target| cannot exceed gross_max")
        if self.long_only and self.net_target is not None and self.net_target < 0:
            raise ValueError("a long-only portfolio cannot have a negative net_target")
        for sym, params in {"default": self.default, **self.symbols}.items():
            if params.cluster is not None and params.cluster not in self.clusters:
                raise ValueError(f"symbols.{sym}.cluster {params.cluster!r} has no entry in clusters")
            if self.long_only and params.direction == "short":
                raise ValueError(f"symbols.{sym}.direction is 'short' in a long-only portfolio")
        return self

    def params_for(self, symbol: str) -> SymbolRiskParams:
        """``default`` with the fields the symbol's entry sets explicitly replaced."""
        override = self.symbols.get(symbol)
        if override is None:
            return self.default
        return self.default.model_copy(update=override.model_dump(exclude_unset=True))

    def constraints_for(
        self, symbols: Sequence[str], cov: npt.ArrayLike | None = None, periods_per_year: float = 252.0
    ) -> Constraints:
        """Resolve to :class:`Constraints`; ``cov`` (per-period) enables the volatility-target caps.

        ``ValueError`` when the resolved limits admit no portfolio (e.g. caps too small to
        reach the net target).
        """
        vols = None if cov is None else np.sqrt(np.clip(np.diag(np.asarray(cov, dtype=np.float64)), 0.0, None) * periods_per_year)
        lower, upper = np.zeros(len(symbols)), np.zeros(len(symbols))
        members: dict[str, list[int]] = {}
        for i, sym in enumerate(symbols):
            prm = self.params_for(sym)
            cap = prm.max_weight
            if prm.vol_target_annual is not None and vols is not None and vols[i] > 0:
                cap = min(cap, prm.vol_target_annual / float(vols[i]))
            upper[i] = cap if prm.direction in ("long", "both") else 0.0
            lower[i] = -cap if prm.direction in ("short", "both") and not self.long_only else 0.0
            if prm.cluster is not None:
                members.setdefault(prm.cluster, []).append(i)
        clusters = tuple(
            ClusterBound(name, tuple(members[name]), lim.min_weight, lim.max_weight)
            for name, lim in sorted(self.clusters.items())
            if name in members
        )
        return Constraints(lower, upper, self.gross_max, self.net_target, clusters)

