"""A dense convex quadratic-program solver for the portfolio optimisers.

Problem::

    minimise  ½ xᵀ P x + qᵀ x      subject to   l ≤ A x ≤ u

with ``P`` symmetric positive semidefinite, ``l_i = u_i`` for equalities and ``±inf`` for
one-sided rows. The method is the ADMM splitting of OSQP (Stellato et al., 2020): one
Cholesky factorisation (kept as the inverse) of ``P + σI + Aᵀ diag(ρ) A``, redone only when the step ``ρ`` is
adapted; equality rows use a 1000x larger ``ρ``. ADMM reaches a moderate accuracy
(``eps``), then *polishing* guesses the active constraints from the duals, solves the
equality-constrained KKT system of that guess (regularised, with iterative refinement); a short
primal-dual active-set loop corrects a wrong guess, and the polished point is kept only when
it satisfies the KKT conditions (feasible to ``feasibility_tol``, multipliers of the right
signs). A polished solution is exact to rounding, which is what makes bound checks with tight
tolerances meaningful. ADMM first stops at a loose tolerance; only if polishing fails does it
continue (from where it stopped) to tighter ones.

The objective is scaled by the mean diagonal of ``P`` first (covariances of daily returns are
~1e-4, constraint rows ~1); scaling the objective does not move the minimiser.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.linalg import lu_factor, lu_solve
from scipy.linalg.lapack import dpotrf, dpotri

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

__all__ = ["QPResult", "project_box_l1", "solve_l1_qp", "solve_qp"]

_EQ_RHO_SCALE = 1e3
_RHO_MIN, _RHO_MAX = 1e-6, 1e6
_ADAPT_EVERY = 25
_POLISH_ROUNDS = 50
#: Polishing rounds tried from a warm start's guess before falling back to ADMM.
_WARM_POLISH_ROUNDS = 10
#: Newton steps for the ℓ1 projection's threshold before sorting instead; and its tolerance
#: (relative to the radius: a few hundred roundings of the sum).
_NEWTON_STEPS = 8
_NEWTON_TOL = 1e-12
#: ADMM tolerances tried in turn before the final one; polishing usually succeeds at the first.
_STAGES = (1e-4, 1e-6)


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


def _singleton_rows(a: FloatArray) -> tuple[IntArray, FloatArray]:
    """For each row: the column of its only nonzero (``-1`` if it has several) and that coefficient."""
    nonzero = a != 0
    single = nonzero.sum(axis=1) == 1
    col: IntArray = np.where(single, np.argmax(nonzero, axis=1), -1)
    coef: FloatArray = np.where(single, a[np.arange(a.shape[0]), np.maximum(col, 0)], 0.0)
    return col, coef


def _solve_active(
    p: FloatArray, q: FloatArray, a: FloatArray, lo: FloatArray, hi: FloatArray, *, low: BoolArray, up: BoolArray,
    rows: tuple[IntArray, FloatArray],
) -> tuple[FloatArray, FloatArray] | None:
    """``(x, y)`` of the equality-constrained QP whose equalities are the active rows.

    Active single-variable rows (bounds) fix their variable, so the linear system spans only
    the free variables and the active multi-variable rows. ``y`` follows ``Px + q + Aᵀy = 0``
    (``y ≤ 0`` on a lower-active row, ``≥ 0`` on an upper-active one at an optimum).
    """
    n = p.shape[0]
    col, coef = rows
    act = low | up
    b_all = np.where(low, lo, hi)
    x = np.zeros(n)
    fixed = np.zeros(n, dtype=bool)
    for r in np.flatnonzero(act & (col >= 0)):
        j = int(col[r])
        x[j], fixed[j] = b_all[r] / coef[r], True
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
    y = np.zeros(a.shape[0])
    y[general] = sol[nf:]
    grad = p @ x + q + a[general].T @ y[general]
    bound_rows = np.flatnonzero(act & (col >= 0))
    # a variable fixed by two rows (both bounds equal) splits its multiplier onto the first
    seen: set[int] = set()
    for r in bound_rows:
        j = int(col[r])
        if j not in seen:
            y[r] = -grad[j] / coef[r]
            seen.add(j)
    return x, y


def _admm_guess(lo: FloatArray, hi: FloatArray, z: FloatArray, y: FloatArray) -> tuple[BoolArray, BoolArray, FloatArray]:
    """Active rows ``(low, up)`` guessed from ADMM's ``(z, y)``, and each row's certainty (``|y|``)."""
    equality = lo == hi
    low = equality | ((z - lo < -y) & (y < 0))
    up = ~equality & (hi - z < y) & (y > 0)
    return low, up, np.abs(y)


def _point_guess(lo: FloatArray, hi: FloatArray, ax: FloatArray, tol: float) -> tuple[BoolArray, BoolArray, FloatArray]:
    """Active rows ``(low, up)`` guessed from a point's row values: the rows within ``tol`` of a
    bound; certainty is closeness."""
    equality = lo == hi
    d_low, d_up = ax - lo, hi - ax
    scale = tol * (1.0 + np.abs(ax))
    low = equality | (d_low <= scale)
    up = ~equality & ~low & (d_up <= scale)
    return low, up, -np.minimum(np.abs(d_low), np.abs(d_up))


def _polish(
    p: FloatArray, q: FloatArray, a: FloatArray, lo: FloatArray, hi: FloatArray, *,
    guess: tuple[BoolArray, BoolArray, FloatArray], tol: float, rounds: int = _POLISH_ROUNDS,
) -> FloatArray | None:
    """Exact solution from an active-set ``guess`` (``low``, ``up``, certainty per row); ``None`` on failure.

    The guess is corrected by a primal-dual active-set loop: rows the solution violates join
    the active set, active rows whose multiplier has the wrong sign leave it, until the point
    is feasible with consistent multipliers (then it is optimal: KKT holds) or the ``rounds``
    run out.
    """
    equality = lo == hi
    low, up, certainty = guess
    low, up = low.copy(), up.copy()
    rows = _singleton_rows(a)
    col = rows[0]
    # An active set fixes at most n - (active general rows) variables: if the guess fixes
    # more, the least certain bounds are released.
    bound_act = np.flatnonzero((low | up) & (col >= 0) & ~equality)
    excess = len(set(col[bound_act].tolist())) + int(((low | up) & (col < 0)).sum()) - a.shape[1]
    if excess > 0:
        release = bound_act[np.argsort(certainty[bound_act], kind="stable")[:excess]]
        low[release], up[release] = False, False
    for _ in range(rounds):
        solved = _solve_active(p, q, a, lo, hi, low=low, up=up, rows=rows)
        if solved is None:
            return None
        x, mult = solved
        ax = a @ x
        scale = tol * (1.0 + np.abs(ax))
        below, above = ~low & (ax < lo - scale), ~up & (ax > hi + scale)
        if below.any() or above.any():
            low, up = low | below, (up | above) & ~below
            continue
        m_tol = 1e-9 * max(1.0, _inf_norm(mult))
        wrongness = np.where(low & ~equality, mult, 0.0) - np.where(up, mult, 0.0)
        if np.max(wrongness, initial=0.0) > m_tol:
            worst = int(np.argmax(wrongness))  # one at a time: releasing several at once can cycle
            low[worst], up[worst] = False, False
            continue
        return x
    return None


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
    rho: float


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


def _spd_inverse(k: FloatArray) -> FloatArray:
    """Inverse of the (well conditioned: σ and ρ regularise it) ADMM system matrix. One matrix-vector
    product per iteration is several times faster than two triangular solves at these sizes.
    LAPACK's ``potri`` inverts from the Cholesky factor in about a third of the work of solving
    against the identity; it fills one triangle, mirrored here."""
    factor, info = dpotrf(k, lower=True, clean=False)
    if info != 0:
        raise np.linalg.LinAlgError(f"ADMM system matrix not positive definite (potrf info {info})")
    inv, info = dpotri(factor, lower=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"ADMM system matrix not invertible (potri info {info})")
    lower_part: FloatArray = np.tril(inv)
    full: FloatArray = lower_part + np.tril(inv, -1).T
    return full


def _admm(
    ps: FloatArray,
    qs: FloatArray,
    am: _Operator,
    project: Callable[[FloatArray, FloatArray], FloatArray],
    equality: npt.NDArray[np.bool_],
    *,
    x0: FloatArray,
    resume: _Admm | None = None,
    eps: float,
    max_iter: int,
    rho: float,
    sigma: float,
    alpha: float,
) -> _Admm:
    """OSQP's ADMM for ``min ½xᵀPx + qᵀx + g(Ax)``; ``project(v, rho)`` is the proximal map of
    ``g`` at ``v`` with step ``1/rho`` (the projection onto the set when ``g`` is an indicator)."""
    n = ps.shape[0]
    if resume is None:
        x = x0.copy()
        z = project(am.mv(x), _rho_vector(rho, equality))
        y = np.zeros(am.rows)
        done = 0
    else:
        x, z, y, rho, done = resume.x, resume.z, resume.y, resume.rho, resume.iterations
    rho_v = _rho_vector(rho, equality)
    inverse = _spd_inverse(ps + sigma * np.eye(n) + am.gram(rho_v))
    r_prim = r_dual = math.inf
    it = 0
    for it in range(1, max_iter + 1):
        x_t = inverse @ (sigma * x - qs + am.rmv(rho_v * z - y))
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
                inverse = _spd_inverse(ps + sigma * np.eye(n) + am.gram(rho_v))
    ok = r_prim <= eps * 10 and r_dual <= eps * 10 * max(1.0, _inf_norm(qs))
    return _Admm(x, z, y, done + it, r_prim, r_dual, ok, rho)


def solve_qp(
    p: npt.ArrayLike,
    q: npt.ArrayLike,
    a: npt.ArrayLike,
    lo: npt.ArrayLike,
    hi: npt.ArrayLike,
    *,
    x0: npt.ArrayLike | None = None,
    x0_accuracy: float | None = None,
    eps: float = 1e-7,
    feasibility_tol: float = 1e-10,
    max_iter: int = 10_000,
) -> QPResult:
    """Minimise ``½xᵀPx + qᵀx`` s.t. ``lo ≤ Ax ≤ hi`` (see the module docstring).

    ``x0_accuracy``: ``x0`` is believed to lie within about this (relative) distance of the
    solution (e.g. the solution of a related problem to that tolerance), so polishing is tried
    first, for a few rounds, from the rows ``x0`` holds within that distance of a bound, before
    any ADMM iteration; ADMM runs only if that fails to satisfy the KKT conditions.

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
    if x0_accuracy is not None and x0 is not None:
        warm = _polish(ps, qs, am, l_, u_, guess=_point_guess(l_, u_, am @ start, x0_accuracy), tol=feasibility_tol,
                       rounds=_WARM_POLISH_ROUNDS)
        if warm is not None:
            return QPResult(warm, 0, True, True, _violation(warm, am, l_, u_), 0.0)
    op = _Operator.dense(am)
    run: _Admm | None = None
    for stage_eps in (*(e for e in _STAGES if e > eps), eps):
        run = _admm(ps, qs, op, lambda v, _rho: np.clip(v, l_, u_), l_ == u_, x0=start, resume=run,
                    eps=stage_eps, max_iter=max_iter, rho=0.1, sigma=1e-6, alpha=1.6)
        # A polished point satisfies the KKT conditions (feasible, stationary, multipliers of
        # the right sign), so it is optimal whatever ADMM's accuracy was.
        polished = _polish(ps, qs, am, l_, u_, guess=_admm_guess(l_, u_, run.z, run.y), tol=feasibility_tol)
        if polished is not None:
            return QPResult(polished, run.iterations, True, True, _violation(polished, am, l_, u_), run.r_dual)
    assert run is not None
    x, r_prim, r_dual = run.x, run.r_prim, run.r_dual
    return QPResult(x, run.iterations, run.ok, False, r_prim, r_dual)


def project_box_l1(v: FloatArray, lower: FloatArray, upper: FloatArray, radius: float) -> FloatArray:
    """Euclidean projection of ``v`` onto ``{x : lower ≤ x ≤ upper, Σ|x| ≤ radius}``.

    The projection is ``clip(soft(v, λ), lower, upper)`` with the smallest ``λ ≥ 0`` meeting the
    radius (separable problem plus one coupling constraint). When every box contains 0,
    ``f(λ) = Σ min(max(|v_i| − λ, 0), cap_i)`` is piecewise linear with breakpoints
    ``|v_i| − cap_i`` and ``|v_i|``: sorting them gives ``λ`` exactly in O(n log n).
    Otherwise ``λ`` is found by bisection (``f`` does not increase with ``λ``).
    """
    return _project_box_l1(v, lower, upper, radius, None)[0]


def _l1_newton(a: FloatArray, cap: FloatArray, radius: float, lam: float) -> float | None:
    """``λ`` with ``f(λ) = radius`` by safeguarded Newton steps from ``lam`` (``f`` as in
    :func:`project_box_l1`); one step is exact once ``λ`` is on the root's linear piece, so a
    nearby start (the previous ADMM iteration's ``λ``) needs one or two. ``None`` if it takes longer."""
    lo_b, hi_b = 0.0, float(a.max())  # f(0) > radius >= f(max |v|) = 0
    tol = _NEWTON_TOL * max(radius, 1.0)
    for _ in range(_NEWTON_STEPS):
        t = a - lam
        f = float(np.clip(t, 0.0, cap).sum())
        if abs(f - radius) <= tol:
            return lam
        if f > radius:
            lo_b = lam
        else:
            hi_b = lam
        free = int(np.count_nonzero((t > 0.0) & (t < cap)))
        step = lam + (f - radius) / free if free else math.nan
        lam = step if lo_b < step < hi_b else 0.5 * (lo_b + hi_b)
    return None


def _project_box_l1(
    v: FloatArray, lower: FloatArray, upper: FloatArray, radius: float, hint: float | None
) -> tuple[FloatArray, float]:
    """:func:`project_box_l1` and its ``λ``; ``hint`` is a guess of ``λ`` (used when every box contains 0)."""
    def at(lam: float) -> FloatArray:
        out: FloatArray = np.clip(np.sign(v) * np.maximum(np.abs(v) - lam, 0.0), lower, upper)
        return out

    x = at(0.0)
    if float(np.abs(x).sum()) <= radius:
        return x, 0.0
    if np.all(lower <= 0.0) and np.all(upper >= 0.0):
        a = np.abs(v)
        cap = np.where(v >= 0.0, upper, -lower)
        if hint is not None and hint > 0.0:
            found = _l1_newton(a, cap, radius, hint)
            if found is not None:
                return at(found), found
        points = np.concatenate([a - cap, a])
        order = np.argsort(points, kind="stable")
        bp = points[order]
        slope = -np.cumsum(np.concatenate([np.ones(a.shape[0]), -np.ones(a.shape[0])])[order])
        # f at each breakpoint, walking from the first one where every term is at its cap
        f = float(cap.sum()) + np.concatenate([[0.0], np.cumsum(slope[:-1] * np.diff(bp))])
        k = int(np.searchsorted(-f, -radius, side="left"))  # first breakpoint with f <= radius
        if 0 < k < bp.shape[0] and slope[k - 1] < 0:
            lam = max(bp[k - 1] + (f[k - 1] - radius) / -slope[k - 1], 0.0)
            return at(lam), lam
    lo_l, hi_l = 0.0, _inf_norm(v)
    for _ in range(64):
        mid = 0.5 * (lo_l + hi_l)
        if float(np.abs(at(mid)).sum()) > radius:
            lo_l = mid
        else:
            hi_l = mid
    return at(hi_l), hi_l


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
    last_lambda: list[float | None] = [None]  # the previous projection's λ, a close guess for the next

    def project(v: FloatArray, rho_v: FloatArray) -> FloatArray:
        box, last_lambda[0] = _project_box_l1(v[:n], lower, upper, l1_radius, last_lambda[0])
        parts = [box, np.clip(v[n : n + m], lo, hi)]
        if with_cost:
            d = v[n + m :] - centre
            parts.append(centre + np.sign(d) * np.maximum(np.abs(d) - threshold / rho_v[n + m :], 0.0))
        return np.concatenate(parts)

    start = np.clip(np.zeros(n) if x0 is None else x0, lower, upper)
    run = _admm(ps, qs, am, project, equality, x0=start, eps=eps, max_iter=max_iter, rho=0.1, sigma=1e-6, alpha=1.6)
    return QPResult(run.z[:n].copy(), run.iterations, run.ok, False, run.r_prim, run.r_dual)
