"""Portfolio optimisers behind one interface, selectable by name, config and regime.

Every optimiser implements :class:`Optimiser`::

    weights(cov, expected=None, previous=None, constraints=None) -> OptimisationResult

``cov`` is the per-period covariance of the symbols' returns (symmetric positive semidefinite);
``expected`` the per-period expected returns (signal-derived, see
:func:`expected_returns_from_signals`); ``previous`` the current weights (for turnover);
``constraints`` default to a fully invested long-only portfolio. The result's weights satisfy
every constraint whenever ``converged`` is true; ``diagnostics`` carries method-specific
numbers (iterations, residuals, risk-contribution error).

Directions. A risk-based optimiser (inverse volatility, risk parity, HRP, equal weight) decides
*how much* of the gross budget each symbol gets; the *sign* comes from ``expected`` when given
(a symbol is never held against its signal: a signal the symbol's allowed directions forbid,
or a zero signal, leaves it flat) and is long otherwise. Sizes are computed on the signed
covariance ``D Σ D`` (``D = diag(sign)``), so risk contributions are those of the signed
portfolio. The allocation is scaled to ``|net_target|`` (``gross_max`` when there is no
non-zero net target) and then, only if that violates a constraint, replaced by the nearest
feasible weights (Euclidean projection, :func:`ata.quant.portfolio.constraints.project`).
Minimum variance and mean-variance solve their constrained problems directly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import pdist

from ata.quant.portfolio.constraints import Constraints, constrained_qp, project
from ata.quant.portfolio.covariance import correlation_from_covariance
from ata.quant.portfolio.qp import QPResult

FloatArray = npt.NDArray[np.float64]

__all__ = [
    "BUILTIN_OPTIMISERS",
    "EqualWeight",
    "HierarchicalRiskParity",
    "InverseVolatility",
    "MeanVariance",
    "MinimumVariance",
    "OptimisationResult",
    "Optimiser",
    "OptimiserSelection",
    "RiskParity",
    "available_optimisers",
    "expected_returns_from_signals",
    "hrp_allocation",
    "make_optimiser",
    "register_optimiser",
    "risk_contributions",
    "risk_parity_allocation",
    "signal_directions",
]


@dataclass(frozen=True)
class OptimisationResult:
    weights: FloatArray
    converged: bool
    method: str
    diagnostics: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Optimiser(Protocol):
    name: ClassVar[str]

    def weights(
        self,
        cov: npt.ArrayLike,
        expected: npt.ArrayLike | None = None,
        previous: npt.ArrayLike | None = None,
        constraints: Constraints | None = None,
    ) -> OptimisationResult: ...


# ----------------------------------------------------------------------------- shared helpers


def _covariance(cov: npt.ArrayLike) -> FloatArray:
    c = np.asarray(cov, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] == 0:
        raise ValueError(f"covariance must be a non-empty square matrix, got shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError("covariance must be finite")
    if not np.allclose(c, c.T, rtol=1e-10, atol=1e-14):
        raise ValueError("covariance must be symmetric")
    sym: FloatArray = 0.5 * (c + c.T)
    return sym


def _vector(v: npt.ArrayLike | None, n: int, name: str) -> FloatArray | None:
    if v is None:
        return None
    a = np.asarray(v, dtype=np.float64)
    if a.shape != (n,) or not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be a finite vector of length {n}")
    return a


def _inputs(
    cov: npt.ArrayLike, expected: npt.ArrayLike | None, previous: npt.ArrayLike | None, constraints: Constraints | None
) -> tuple[FloatArray, FloatArray | None, FloatArray | None, Constraints]:
    c = _covariance(cov)
    n = c.shape[0]
    cons = constraints if constraints is not None else Constraints.long_only_portfolio(n)
    if cons.n != n:
        raise ValueError(f"constraints are for {cons.n} symbols, covariance for {n}")
    return c, _vector(expected, n, "expected"), _vector(previous, n, "previous"), cons


def signal_directions(expected: FloatArray | None, cons: Constraints) -> FloatArray:
    """+1 / -1 / 0 per symbol: the signal's sign where the symbol's directions allow it."""
    can_long, can_short = cons.upper > 0.0, cons.lower < 0.0
    if expected is None:
        s: FloatArray = np.where(can_long, 1.0, np.where(can_short, -1.0, 0.0))
        return s
    raw = np.sign(expected)
    s = np.where(((raw > 0) & can_long) | ((raw < 0) & can_short), raw, 0.0)
    return s


def _qp_diagnostics(res: QPResult | None) -> dict[str, float]:
    if res is None:
        return {"projected": 0.0}
    return {
        "projected": 1.0,
        "qp_iterations": float(res.iterations),
        "qp_polished": float(res.polished),
        "qp_primal_residual": res.primal_residual,
        "qp_dual_residual": res.dual_residual,
    }


def _finish(method: str, shape: FloatArray, signs: FloatArray, cons: Constraints, extra: dict[str, float]) -> OptimisationResult:
    """Scale a non-negative allocation shape to the budget, sign it, project if infeasible."""
    total = float(shape.sum())
    budget = cons.gross_max if cons.net_target is None or cons.net_target == 0.0 else abs(cons.net_target)
    w0 = signs * shape * (budget / total) if total > 0 else np.zeros(cons.n)
    w, res = project(w0, cons)
    converged = (res is None or res.converged) and not cons.violations(w)
    return OptimisationResult(w, converged, method, {**extra, **_qp_diagnostics(res)})


def risk_contributions(weights: npt.ArrayLike, cov: npt.ArrayLike) -> FloatArray:
    """Each symbol's share of portfolio variance, ``w_i (Σw)_i / wᵀΣw`` (sums to 1)."""
    w = np.asarray(weights, dtype=np.float64)
    c = np.asarray(cov, dtype=np.float64)
    rc = w * (c @ w)
    total = float(rc.sum())
    out: FloatArray = rc / total if total > 0 else np.full(w.shape, np.nan)
    return out


# ----------------------------------------------------------------------------- allocations


def risk_parity_allocation(
    cov: npt.ArrayLike, budgets: npt.ArrayLike | None = None, *, tol: float = 1e-12, max_iter: int = 100
) -> tuple[FloatArray, int, float]:
    """Positive weights summing to 1 whose risk contributions are proportional to ``budgets``.

    Newton's method on the strictly convex ``½xᵀΣx − Σ b_i log x_i`` (Spinu 2013), whose
    minimiser satisfies ``x_i (Σx)_i = b_i``; a backtracking line search keeps ``x > 0``.
    Returns ``(weights, iterations, error)`` with ``error = max |RC_i/σ² − b_i/Σb|``; the
    iteration stops when it is below ``tol``. Needs a positive definite ``cov`` restricted to
    the symbols with a positive budget.
    """
    c = _covariance(cov)
    n = c.shape[0]
    b = np.full(n, 1.0 / n) if budgets is None else np.asarray(budgets, dtype=np.float64)
    if b.shape != (n,) or np.any(b <= 0) or not np.all(np.isfinite(b)):
        raise ValueError("budgets must be positive and finite, one per symbol")
    b = b / b.sum()
    d = np.sqrt(np.diag(c))
    if np.any(d <= 0):
        raise ValueError("every symbol needs a positive variance")
    s = c / np.outer(d, d)  # correlation: Newton is scale-free there; map back with 1/d
    x = np.sqrt(b)
    quadratic = float(x @ s @ x)
    if not quadratic > 0.0:  # e.g. two assets that hedge each other exactly: no weights carry the budgets
        raise ValueError("risk budgeting needs a positive definite covariance; this one is singular")
    x *= math.sqrt(1.0 / quadratic)

    def objective(v: FloatArray) -> float:
        return float(0.5 * v @ s @ v - b @ np.log(v))

    it = 0
    while it < max_iter:
        sx = s @ x
        if float(np.max(np.abs(x * sx / float(x @ sx) - b))) <= tol:
            break
        it += 1
        grad = sx - b / x
        hess = s + np.diag(b / x**2)
        step = np.linalg.solve(hess, -grad)
        f0, t = objective(x), 1.0
        g0 = float(np.max(np.abs(grad)))
        # Armijo on the objective; near the optimum its decrease drowns in rounding, so a step
        # that shrinks the gradient is accepted too (Newton converges quadratically there).
        while np.any(x + t * step <= 0) or (
            objective(x + t * step) > f0 + 1e-4 * t * float(grad @ step)
            and float(np.max(np.abs(s @ (x + t * step) - b / (x + t * step)))) >= g0
        ):
            t *= 0.5
            if t < 1e-12:
                break
        x = x + t * step
    w = x / d
    w /= w.sum()
    rc = w * (c @ w)
    err = float(np.max(np.abs(rc / rc.sum() - b)))
    return w, it, err


def _cluster_variance(cov: FloatArray, members: npt.NDArray[np.intp]) -> float:
    sub = cov[np.ix_(members, members)]
    ivp = 1.0 / np.diag(sub)
    ivp /= ivp.sum()
    return float(ivp @ sub @ ivp)


def hrp_allocation(cov: npt.ArrayLike) -> tuple[FloatArray, npt.NDArray[np.intp]]:
    """Hierarchical risk parity (López de Prado, 2016); returns ``(weights summing to 1, order)``.

    1. Correlation distance ``d_ij = sqrt((1 − ρ_ij) / 2)``; the clustering distance between
       symbols ``i`` and ``j`` is the Euclidean distance between rows ``d_i`` and ``d_j``
       (the paper's distance of distances).
    2. Single-linkage clustering (scipy); the leaf order of the dendrogram is the
       quasi-diagonal order (correlated symbols adjacent).
    3. Recursive bisection of that order into halves; each half's variance is that of its
       inverse-variance portfolio, and the halves split their parent's weight in inverse
       proportion to their variances.
    """
    c = _covariance(cov)
    n = c.shape[0]
    if np.any(np.diag(c) <= 0):
        raise ValueError("every symbol needs a positive variance")
    if n == 1:
        return np.ones(1), np.zeros(1, dtype=np.intp)
    dist = np.sqrt(np.clip(0.5 * (1.0 - correlation_from_covariance(c)), 0.0, None))
    order = np.asarray(leaves_list(linkage(pdist(dist), method="single")), dtype=np.intp)
    w = np.ones(n)
    pending = [order]
    while pending:
        nxt = []
        for members in pending:
            if len(members) < 2:
                continue
            half = len(members) // 2
            left, right = members[:half], members[half:]
            v_left, v_right = _cluster_variance(c, left), _cluster_variance(c, right)
            alpha = 1.0 - v_left / (v_left + v_right)
            w[left] *= alpha
            w[right] *= 1.0 - alpha
            nxt += [left, right]
        pending = nxt
    return w / w.sum(), order


def expected_returns_from_signals(
    strength: npt.ArrayLike, volatility: npt.ArrayLike, information_coefficient: float = 0.05
) -> FloatArray:
    """Per-period expected returns from signal strengths in [-1, 1] (Grinold–Kahn:
    ``alpha = IC · σ · score``), with ``volatility`` per period."""
    s = np.clip(np.asarray(strength, dtype=np.float64), -1.0, 1.0)
    v = np.asarray(volatility, dtype=np.float64)
    if s.shape != v.shape or np.any(v < 0):
        raise ValueError("strength and volatility must have one non-negative volatility per signal")
    out: FloatArray = information_coefficient * v * s
    return out


# ----------------------------------------------------------------------------- optimisers


@dataclass(frozen=True)
class EqualWeight:
    """The same gross weight on every symbol that may be held (the benchmark allocation)."""

    name: ClassVar[str] = "equal_weight"

    def weights(self, cov: npt.ArrayLike, expected: npt.ArrayLike | None = None,
                previous: npt.ArrayLike | None = None, constraints: Constraints | None = None) -> OptimisationResult:
        _, mu, _, cons = _inputs(cov, expected, previous, constraints)
        signs = signal_directions(mu, cons)
        return _finish(self.name, np.abs(signs), signs, cons, {})


@dataclass(frozen=True)
class InverseVolatility:
    """Gross weight proportional to ``1 / σ_i``."""

    name: ClassVar[str] = "inverse_volatility"

    def weights(self, cov: npt.ArrayLike, expected: npt.ArrayLike | None = None,
                previous: npt.ArrayLike | None = None, constraints: Constraints | None = None) -> OptimisationResult:
        c, mu, _, cons = _inputs(cov, expected, previous, constraints)
        signs = signal_directions(mu, cons)
        vol = np.sqrt(np.diag(c))
        if np.any(vol[signs != 0] <= 0):
            raise ValueError("every held symbol needs a positive variance")
        shape = np.divide(np.abs(signs), vol, out=np.zeros_like(vol), where=signs != 0)
        return _finish(self.name, shape, signs, cons, {})


@dataclass(frozen=True)
class RiskParity:
    """Equal risk contribution (or contributions proportional to ``budgets``) of the signed portfolio."""

    name: ClassVar[str] = "risk_parity"
    tol: float = 1e-12

    def weights(self, cov: npt.ArrayLike, expected: npt.ArrayLike | None = None,
                previous: npt.ArrayLike | None = None, constraints: Constraints | None = None) -> OptimisationResult:
        c, mu, _, cons = _inputs(cov, expected, previous, constraints)
        signs = signal_directions(mu, cons)
        held = np.flatnonzero(signs)
        shape = np.zeros(cons.n)
        it, err = 0, 0.0
        if held.size:
            signed = c[np.ix_(held, held)] * np.outer(signs[held], signs[held])
            shape[held], it, err = risk_parity_allocation(signed, tol=self.tol)
        res = _finish(self.name, shape, signs, cons, {"iterations": float(it), "risk_contribution_error": err})
        return OptimisationResult(res.weights, res.converged and err <= 1e-10, res.method, res.diagnostics)


@dataclass(frozen=True)
class HierarchicalRiskParity:
    """López de Prado's HRP on the signed covariance (see :func:`hrp_allocation`)."""

    name: ClassVar[str] = "hrp"

    def weights(self, cov: npt.ArrayLike, expected: npt.ArrayLike | None = None,
                previous: npt.ArrayLike | None = None, constraints: Constraints | None = None) -> OptimisationResult:
        c, mu, _, cons = _inputs(cov, expected, previous, constraints)
        signs = signal_directions(mu, cons)
        held = np.flatnonzero(signs)
        shape = np.zeros(cons.n)
        if held.size:
            shape[held], _ = hrp_allocation(c[np.ix_(held, held)] * np.outer(signs[held], signs[held]))
        return _finish(self.name, shape, signs, cons, {})


@dataclass(frozen=True)
class MinimumVariance:
    """Minimum ``wᵀΣw`` at the net target. Closed form ``net · Σ⁻¹1 / 1ᵀΣ⁻¹1`` when it is
    feasible (no bound binds); otherwise the constrained QP. Needs a net target."""

    name: ClassVar[str] = "minimum_variance"

    def weights(self, cov: npt.ArrayLike, expected: npt.ArrayLike | None = None,
                previous: npt.ArrayLike | None = None, constraints: Constraints | None = None) -> OptimisationResult:
        c, _, _, cons = _inputs(cov, expected, previous, constraints)
        if cons.net_target is None:
            raise ValueError("minimum variance needs a net target (without one, all cash is the minimum)")
        try:
            inv_one = np.linalg.solve(c, np.ones(cons.n))
            closed = cons.net_target * inv_one / inv_one.sum()
            if not cons.violations(closed):
                return OptimisationResult(closed, True, self.name, {"closed_form": 1.0})
        except np.linalg.LinAlgError:
            pass  # singular: the QP copes with a semidefinite matrix
        w, res = constrained_qp(c, np.zeros(cons.n), cons)
        return OptimisationResult(w, res.converged and not cons.violations(w), self.name,
                                  {"closed_form": 0.0, **_qp_diagnostics(res)})


@dataclass(frozen=True)
class MeanVariance:
    """Maximise ``μᵀw − (γ/2) wᵀΣw − κ Σ|w − w_prev|`` (``γ = risk_aversion``, ``κ = turnover_cost``
    per unit of weight traded, the same units as ``μ``); ``expected`` is required."""

    name: ClassVar[str] = "mean_variance"
    risk_aversion: float = 5.0
    turnover_cost: float = 0.0

    def __post_init__(self) -> None:
        if not self.risk_aversion > 0 or self.turnover_cost < 0:
            raise ValueError("risk_aversion must be positive and turnover_cost non-negative")

    def weights(self, cov: npt.ArrayLike, expected: npt.ArrayLike | None = None,
                previous: npt.ArrayLike | None = None, constraints: Constraints | None = None) -> OptimisationResult:
        c, mu, prev, cons = _inputs(cov, expected, previous, constraints)
        if mu is None:
            raise ValueError("mean-variance needs expected returns")
        w, res = constrained_qp(self.risk_aversion * c, -mu, cons, turnover_cost=self.turnover_cost, previous=prev,
                                x0=prev)
        return OptimisationResult(w, res.converged and not cons.violations(w), self.name, _qp_diagnostics(res))


# ----------------------------------------------------------------------------- registry, selection

OptimiserFactory = Callable[..., Optimiser]

_REGISTRY: dict[str, OptimiserFactory] = {
    cls.name: cls
    for cls in (EqualWeight, InverseVolatility, RiskParity, HierarchicalRiskParity, MinimumVariance, MeanVariance)
}

#: Names that ship with the library; a plugin cannot take them.
BUILTIN_OPTIMISERS: tuple[str, ...] = tuple(sorted(_REGISTRY))


def register_optimiser(name: str, factory: OptimiserFactory, *, replace: bool = False) -> None:
    """Make ``factory(**params)`` available as ``name`` (plugins call this through the loader)."""
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"optimiser name {name!r} must be alphanumeric with - or _")
    if name in _REGISTRY and not replace and _REGISTRY[name] is not factory:
        raise ValueError(f"optimiser {name!r} is already registered")
    _REGISTRY[name] = factory


def available_optimisers() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def make_optimiser(name: str, **params: Any) -> Optimiser:
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown optimiser {name!r}; available: {', '.join(available_optimisers())}") from None
    opt = factory(**params)
    if not isinstance(opt, Optimiser):
        raise TypeError(f"optimiser {name!r} does not implement the Optimiser protocol")
    return opt


class OptimiserSelection(BaseModel):
    """Which optimiser runs: ``by_regime[label]`` when the regime has an entry, else ``default``.

    ``params[name]`` are keyword arguments for that optimiser's factory. Names are checked
    against the registry at validation, so load plugins before validating a config that
    names theirs.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    default: str = "risk_parity"
    by_regime: dict[str, str] = Field(default_factory=dict)
    params: dict[str, dict[str, float]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known(self) -> Self:
        for where, name in [("default", self.default), *((f"by_regime.{k}", v) for k, v in self.by_regime.items()),
                            *((f"params.{k}", k) for k in self.params)]:
            if name not in _REGISTRY:
                raise ValueError(f"{where}: unknown optimiser {name!r}; available: {', '.join(available_optimisers())}")
        return self

    def name_for(self, regime: str | None) -> str:
        return self.by_regime.get(regime, self.default) if regime is not None else self.default

    def optimiser_for(self, regime: str | None) -> Optimiser:
        name = self.name_for(regime)
        return make_optimiser(name, **self.params.get(name, {}))

    def all_optimisers(self) -> Mapping[str, Optimiser]:
        names = {self.default, *self.by_regime.values()}
        return {n: make_optimiser(n, **self.params.get(n, {})) for n in sorted(names)}
