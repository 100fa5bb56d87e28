"""A dense convex quadratic-program solver for the portfolio optimisers.

Problem::

    minimise  ½ xᵀ P x + qᵀ x      subject to   l ≤ A x ≤ u

with ``P`` symmetric positive semidefinite, ``l_i = u_i`` for equalities and ``±inf`` for
one-sided rows. The method is the ADMM splitting of OSQP (Stellato et al., 2020): one
Cholesky factorisation of ``P + σI + Aᵀ diag(ρ) A``, refactored only when the step ``ρ`` is
adapted; equality rows use a 1000x larger ``ρ``. ADMM reaches a moderate accuracy
(``eps``), then *polishing* guesses the active constraints from the duals, solves the
equality-constrained KKT system of that guess (regularised, with iterative refinement) and
keeps the polished point only if it is feasible to ``feasibility_tol`` and its objective is no
worse than the ADMM iterate's. A polished solution is exact to rounding, which is what makes bound checks with
tight tolerances meaningful.

The objective is scaled by the mean diagonal of ``P`` first (covariances of daily returns are
~1e-4, constraint rows ~1); scaling the objective does not move the minimiser.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.linalg import cho_factor, cho_solve, lu_factor, lu_solve

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

__all__ = ["QPResult", "project_box_l1", "solve_l1_qp", "solve_qp"]

_EQ_RHO_SCALE = 1e3
_RHO_MIN, _RHO_MAX = 1e-6, 1e6
_ADAPT_EVERY = 25


@dataclass(frozen=True)
class QPResult:
    x: FloatArray
    iterations: int
    converged: bool
    polished: bool
    primal_residual: float
    dual_residual: float


def _rho_vector(rho: float, equality: npt.NDArray[np.bool_]) -> FloatArray:
    v: FloatArray = np.where(equality, rho * _EQ_RHO_SCALE, rho)
    return v


def _violation(x: FloatArray, a: FloatArray, lo: FloatArray, hi: FloatArray) -> float:
    ax = a @ x
    return float(max(np.max(lo - ax, initial=0.0), np.max(ax - hi, initial=0.0)))


def _objective(p: FloatArray, q: FloatArray, x: FloatArray) -> float:
    return float(0.5 * x @ p @ x + q @ x)


def _singleton_rows(a: FloatArray) -> tuple[IntArray, FloatArray]:
    """For each row: the column of its only nonzero (``-1`` if it has several) and that coefficient."""
    nonzero = a != 0
    single = nonzero.sum(axis=1) == 1
    col: IntArray = np.where(single, np.argmax(nonzero, axis=1), -1)
    coef: FloatArray = np.where(single, a[np.arange(a.shape[0]), np.maximum(col, 0)], 0.0)
    return col, coef


def _polish(
    p: FloatArray, q: FloatArray, a: FloatArray, lo: FloatArray, hi: FloatArray, *, z: FloatArray, y: FloatArray, tol: float
) -> FloatArray | None:
    """Solve the KKT system of the active set guessed from ``(z, y)``; ``None`` if infeasible.

    Active single-variable rows (bounds) fix their variable, so the linear system only spans the
    free variables and the active multi-variable rows: with most weights at a bound (typical
    with tight caps) it is much smaller than the full KKT system.
    """
    n = p.shape[0]
    equality = lo == hi
    low = equality | ((z - lo < -y) & (y < 0))
    up = ~equality & (hi - z < y) & (y > 0)
    act = low | up
    b_all = np.where(low, lo, hi)
    col, coef = _singleton_rows(a)
    x = np.zeros(n)
    fixed = np.zeros(n, dtype=bool)
    for r in np.flatnonzero(act & (col >= 0)):
        j = int(col[r])
        value = b_all[r] / coef[r]
        if fixed[j] and abs(x[j] - value) > tol:
            return None  # both bounds of one variable guessed active at different values
        x[j], fixed[j] = value, True
    free = ~fixed
    general = act & (col < 0)
    a_act = a[general][:, free]
    rhs = np.concatenate([-q[free] - p[np.ix_(free, fixed)] @ x[fixed], b_all[general] - a[general][:, fixed] @ x[fixed]])
    nf, m = int(free.sum()), int(general.sum())
    kkt = np.zeros((nf + m, nf + m))
    kkt[:nf, :nf] = p[np.ix_(free, free)]
    kkt[:nf, nf:] = a_act.T
    kkt[nf:, :nf] = a_act
    reg = kkt.copy()
    delta = 1e-9
    reg[np.arange(nf), np.arange(nf)] += delta
    reg[np.arange(nf, nf + m), np.arange(nf, nf + m)] -= delta
    try:
        lu = lu_factor(reg, check_finite=False)
    except (np.linalg.LinAlgError, ValueError):
        return None
    sol = lu_solve(lu, rhs, check_finite=False)
    for _ in range(5):  # iterative refinement against the unregularised system
        sol = sol + lu_solve(lu, rhs - kkt @ sol, check_finite=False)
    if not np.all(np.isfinite(sol)):
        return None
    x[free] = sol[:nf]
    if _violation(x, a, lo, hi) > tol:
        return None
    return x


def _scale_of(pm: FloatArray) -> float:
    """Objective scale: 1 / mean |diag P| (scaling the objective does not move the minimiser)."""
    diag_mean = float(np.mean(np.abs(np.diag(pm)))) if pm.shape[0] else 1.0
    return 1.0 / diag_mean if diag_mean > 0 else 1.0


def _inf_norm(v: FloatArray) -> float:
    return float(np.max(np.abs(v), initial=0.0))


@dataclass
class _Admm:
    x: FloatArray
    z: FloatArray
    y: FloatArray
    iterations: int
    r_prim: float
    r_dual: float
    ok: bool


@dataclass(frozen=True)
class _Operator:
    """The constraint matrix ``M`` as products, so structured blocks (identities) cost O(n)."""

    rows: int
    mv: Callable[[FloatArray], FloatArray]
    rmv: Callable[[FloatArray], FloatArray]
    gram: Callable[[FloatArray], FloatArray]  # Mᵀ diag(rho) M

    @classmethod
    def dense(cls, am: FloatArray) -> _Operator:
        return cls(am.shape[0], lambda x: am @ x, lambda y: am.T @ y, lambda r: am.T @ (r[:, None] * am))


def _admm(
    ps: FloatArray,
    qs: FloatArray,
    am: _Operator,
    project: Callable[[FloatArray, FloatArray], FloatArray],
    equality: npt.NDArray[np.bool_],
    *,
    x0: FloatArray,
    eps: float,
    max_iter: int,
    rho: float,
    sigma: float,
    alpha: float,
) -> _Admm:
    """OSQP's ADMM for ``min ½xᵀPx + qᵀx + g(Ax)``; ``project(v, rho)`` is the proximal map of
    ``g`` at ``v`` with step ``1/rho`` (the projection onto the set when ``g`` is an indicator)."""
    n = ps.shape[0]
    x = x0.copy()
    z = project(am.mv(x), _rho_vector(rho, equality))
    y = np.zeros(am.rows)
    rho_v = _rho_vector(rho, equality)
    factor = cho_factor(ps + sigma * np.eye(n) + am.gram(rho_v), check_finite=False)
    r_prim = r_dual = math.inf
    it = 0
    for it in range(1, max_iter + 1):
        x_t = cho_solve(factor, sigma * x - qs + am.rmv(rho_v * z - y), check_finite=False)
        z_t = am.mv(x_t)
        x = alpha * x_t + (1 - alpha) * x
        z_relax = alpha * z_t + (1 - alpha) * z
        z_new = project(z_relax + y / rho_v, rho_v)
        y = y + rho_v * (z_relax - z_new)
        z = z_new
        if it % 5 and it != max_iter:
            continue
        ax, px, aty = am.mv(x), ps @ x, am.rmv(y)
        r_prim = _inf_norm(ax - z)
        r_dual = _inf_norm(px + qs + aty)
        prim_scale = max(_inf_norm(ax), _inf_norm(z), 1e-12)
        dual_scale = max(_inf_norm(px), _inf_norm(aty), _inf_norm(qs), 1e-12)
        if r_prim <= eps * (1 + prim_scale) and r_dual <= eps * (1 + dual_scale):
            break
        if it % _ADAPT_EVERY == 0:
            ratio = math.sqrt((r_prim / prim_scale) / max(r_dual / dual_scale, 1e-300))
            new_rho = min(max(rho * ratio, _RHO_MIN), _RHO_MAX)
            if new_rho > 5 * rho or new_rho < rho / 5:
                rho = new_rho
                rho_v = _rho_vector(rho, equality)
                factor = cho_factor(ps + sigma * np.eye(n) + am.gram(rho_v), check_finite=False)
    ok = r_prim <= eps * 10 and r_dual <= eps * 10 * max(1.0, _inf_norm(qs))
    return _Admm(x, z, y, it, r_prim, r_dual, ok)


def solve_qp(
    p: npt.ArrayLike,
    q: npt.ArrayLike,
    a: npt.ArrayLike,
    lo: npt.ArrayLike,
    hi: npt.ArrayLike,
    *,
    x0: npt.ArrayLike | None = None,
    eps: float = 1e-7,
    feasibility_tol: float = 1e-10,
    max_iter: int = 10_000,
) -> QPResult:
    """Minimise ``½xᵀPx + qᵀx`` s.t. ``lo ≤ Ax ≤ hi`` (see the module docstring).

    ``converged`` is true when polishing succeeded, or else when ADMM's residuals are below
    ``eps`` (then bounds may be violated by about ``eps``; callers that need exactness check).
    An infeasible problem ends with ``converged=False`` after ``max_iter`` iterations.
    """
    pm = np.asarray(p, dtype=np.float64)
    am = np.asarray(a, dtype=np.float64)
    l_ = np.asarray(lo, dtype=np.float64)
    u_ = np.asarray(hi, dtype=np.float64)
    n = pm.shape[0]
    if pm.shape != (n, n) or am.ndim != 2 or am.shape[1] != n or l_.shape != (am.shape[0],) or u_.shape != l_.shape:
        raise ValueError("inconsistent QP dimensions")
    if np.any(l_ > u_):
        raise ValueError("a constraint has lower > upper")
    c = _scale_of(pm)
    ps, qs = pm * c, np.asarray(q, dtype=np.float64) * c
    start = np.zeros(n) if x0 is None else np.asarray(x0, dtype=np.float64)
    run = _admm(ps, qs, _Operator.dense(am), lambda v, _rho: np.clip(v, l_, u_), l_ == u_, x0=start,
                eps=eps, max_iter=max_iter, rho=0.1, sigma=1e-6, alpha=1.6)
    x, y, r_prim, r_dual = run.x, run.y, run.r_prim, run.r_dual
    polished = _polish(ps, qs, am, l_, u_, z=run.z, y=y, tol=feasibility_tol)
    # A wrong active-set guess gives a feasible but worse point: keep the polished point only if
    # it is no worse than the ADMM iterate (degenerate vertices make dual-sign tests unreliable).
    # The ADMM iterate is infeasible by about r_prim, which can lower its objective by about
    # r_prim * |y| (and r_dual * |x| from stationarity): that much slack is allowed.
    f_admm = _objective(ps, qs, x)
    slack = 10 * (r_prim * (1 + _inf_norm(y)) + r_dual * (1 + _inf_norm(x)))
    if polished is not None and run.ok and _objective(ps, qs, polished) <= f_admm + slack + eps * (1 + abs(f_admm)):
        return QPResult(polished, run.iterations, True, True, _violation(polished, am, l_, u_), r_dual)
    return QPResult(x, run.iterations, run.ok, False, r_prim, r_dual)


def project_box_l1(v: FloatArray, lower: FloatArray, upper: FloatArray, radius: float) -> FloatArray:
    """Euclidean projection of ``v`` onto ``{x : lower ≤ x ≤ upper, Σ|x| ≤ radius}``.

    The projection is ``clip(soft(v, λ), lower, upper)`` with the smallest ``λ ≥ 0`` meeting the
    radius (separable problem plus one coupling constraint). When every box contains 0,
    ``f(λ) = Σ min(max(|v_i| − λ, 0), cap_i)`` is piecewise linear with breakpoints
    ``|v_i| − cap_i`` and ``|v_i|``: sorting them gives ``λ`` exactly in O(n log n).
    Otherwise ``λ`` is found by bisection (``f`` does not increase with ``λ``).
    """
    def at(lam: float) -> FloatArray:
        out: FloatArray = np.clip(np.sign(v) * np.maximum(np.abs(v) - lam, 0.0), lower, upper)
        return out

    x = at(0.0)
    if float(np.abs(x).sum()) <= radius:
        return x
    if np.all(lower <= 0.0) and np.all(upper >= 0.0):
        a = np.abs(v)
        cap = np.where(v >= 0.0, upper, -lower)
        points = np.concatenate([a - cap, a])
        order = np.argsort(points, kind="stable")
        bp = points[order]
        slope = -np.cumsum(np.concatenate([np.ones(a.shape[0]), -np.ones(a.shape[0])])[order])
        # f at each breakpoint, walking from the first one where every term is at its cap
        f = float(cap.sum()) + np.concatenate([[0.0], np.cumsum(slope[:-1] * np.diff(bp))])
        k = int(np.searchsorted(-f, -radius, side="left"))  # first breakpoint with f <= radius
        if 0 < k < bp.shape[0] and slope[k - 1] < 0:
            lam = bp[k - 1] + (f[k - 1] - radius) / -slope[k - 1]
            return at(max(lam, 0.0))
    lo_l, hi_l = 0.0, _inf_norm(v)
    for _ in range(64):
        mid = 0.5 * (lo_l + hi_l)
        if float(np.abs(at(mid)).sum()) > radius:
            lo_l = mid
        else:
            hi_l = mid
    return at(hi_l)


def solve_l1_qp(
    p: npt.ArrayLike,
    q: npt.ArrayLike,
    *,
    lower: FloatArray,
    upper: FloatArray,
    l1_radius: float,
    a: FloatArray,
    lo: FloatArray,
    hi: FloatArray,
    l1_cost: float = 0.0,
    l1_centre: FloatArray | None = None,
    x0: FloatArray | None = None,
    eps: float = 1e-7,
    max_iter: int = 10_000,
) -> QPResult:
    """Minimise ``½xᵀPx + qᵀx + l1_cost·Σ|x − l1_centre|`` s.t. ``lower ≤ x ≤ upper``,
    ``Σ|x| ≤ l1_radius`` and ``lo ≤ Ax ≤ hi``, by the same ADMM with the box-and-ℓ1 projection
    and the soft-threshold proximal map as the non-smooth parts (no auxiliary variables).
    Not polished: callers refine the result (see ``constraints.constrained_qp``).
    """
    pm = np.asarray(p, dtype=np.float64)
    n = pm.shape[0]
    c = _scale_of(pm)
    ps, qs = pm * c, np.asarray(q, dtype=np.float64) * c
    with_cost = l1_cost > 0.0 and l1_centre is not None
    m = a.shape[0]
    k = n + m + (n if with_cost else 0)

    def mv(x: FloatArray) -> FloatArray:
        return np.concatenate([x, a @ x, x] if with_cost else [x, a @ x])

    def rmv(y: FloatArray) -> FloatArray:
        out: FloatArray = y[:n] + a.T @ y[n : n + m]
        return out + y[n + m :] if with_cost else out

    def gram(r: FloatArray) -> FloatArray:
        g: FloatArray = a.T @ (r[n : n + m, None] * a)
        g[np.diag_indices(n)] += r[:n] + (r[n + m :] if with_cost else 0.0)
        return g

    am = _Operator(k, mv, rmv, gram)
    equality = np.concatenate([np.zeros(n, dtype=bool), lo == hi] + ([np.zeros(n, dtype=bool)] if with_cost else []))
    centre = np.zeros(n) if l1_centre is None else l1_centre
    threshold = l1_cost * c

    def project(v: FloatArray, rho_v: FloatArray) -> FloatArray:
        parts = [project_box_l1(v[:n], lower, upper, l1_radius), np.clip(v[n : n + m], lo, hi)]
        if with_cost:
            d = v[n + m :] - centre
            parts.append(centre + np.sign(d) * np.maximum(np.abs(d) - threshold / rho_v[n + m :], 0.0))
        return np.concatenate(parts)

    start = np.clip(np.zeros(n) if x0 is None else x0, lower, upper)
    run = _admm(ps, qs, am, project, equality, x0=start, eps=eps, max_iter=max_iter, rho=0.1, sigma=1e-6, alpha=1.6)
    return QPResult(run.z[:n].copy(), run.iterations, run.ok, False, run.r_prim, run.r_dual)
