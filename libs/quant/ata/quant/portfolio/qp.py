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
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.linalg import cho_factor, cho_solve, lu_factor, lu_solve

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

__all__ = ["QPResult", "solve_qp"]

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
    rho: float = 0.1,
    sigma: float = 1e-6,
    alpha: float = 1.6,
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
    diag_mean = float(np.mean(np.abs(np.diag(pm)))) if n else 1.0
    c = 1.0 / diag_mean if diag_mean > 0 else 1.0
    ps, qs = pm * c, np.asarray(q, dtype=np.float64) * c
    equality = l_ == u_
    x = np.zeros(n) if x0 is None else np.asarray(x0, dtype=np.float64).copy()
    z = np.clip(am @ x, l_, u_)
    y = np.zeros(am.shape[0])
    rho_v = _rho_vector(rho, equality)
    factor = cho_factor(ps + sigma * np.eye(n) + am.T @ (rho_v[:, None] * am))
    r_prim = r_dual = math.inf
    it = 0
    for it in range(1, max_iter + 1):
        x_t = cho_solve(factor, sigma * x - qs + am.T @ (rho_v * z - y))
        z_t = am @ x_t
        x = alpha * x_t + (1 - alpha) * x
        z_relax = alpha * z_t + (1 - alpha) * z
        z_new = np.clip(z_relax + y / rho_v, l_, u_)
        y = y + rho_v * (z_relax - z_new)
        z = z_new
        if it % 5 and it != max_iter:
            continue
        ax, px, aty = am @ x, ps @ x, am.T @ y
        r_prim = float(np.max(np.abs(ax - z), initial=0.0))
        r_dual = float(np.max(np.abs(px + qs + aty), initial=0.0))
        prim_scale = max(float(np.max(np.abs(ax), initial=0.0)), float(np.max(np.abs(z), initial=0.0)), 1e-12)
        dual_scale = max(float(np.max(np.abs(px), initial=0.0)), float(np.max(np.abs(aty), initial=0.0)),
                         float(np.max(np.abs(qs), initial=0.0)), 1e-12)
        if r_prim <= eps * (1 + prim_scale) and r_dual <= eps * (1 + dual_scale):
            break
        if it % _ADAPT_EVERY == 0:
            ratio = math.sqrt((r_prim / prim_scale) / max(r_dual / dual_scale, 1e-300))
            new_rho = min(max(rho * ratio, _RHO_MIN), _RHO_MAX)
            if new_rho > 5 * rho or new_rho < rho / 5:
                rho = new_rho
                rho_v = _rho_vector(rho, equality)
                factor = cho_factor(ps + sigma * np.eye(n) + am.T @ (rho_v[:, None] * am))
    admm_ok = r_prim <= eps * 10 and r_dual <= eps * 10 * max(1.0, float(np.max(np.abs(qs), initial=0.0)))
    polished = _polish(ps, qs, am, l_, u_, z=z, y=y, tol=feasibility_tol)
    # A wrong active-set guess gives a feasible but worse point: keep the polished point only if
    # it is no worse than the ADMM iterate (degenerate vertices make dual-sign tests unreliable).
    # The ADMM iterate is infeasible by about r_prim, which can lower its objective by about
    # r_prim * |y| (and r_dual * |x| from stationarity): that much slack is allowed.
    f_admm = _objective(ps, qs, x)
    slack = 10 * (r_prim * (1 + float(np.max(np.abs(y), initial=0.0))) + r_dual * (1 + float(np.max(np.abs(x), initial=0.0))))
    if polished is not None and admm_ok and _objective(ps, qs, polished) <= f_admm + slack + eps * (1 + abs(f_admm)):
        return QPResult(polished, it, True, True, _violation(polished, am, l_, u_), r_dual)
    return QPResult(x, it, admm_ok, False, r_prim, r_dual)
