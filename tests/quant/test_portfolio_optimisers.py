"""ata.quant.portfolio optimisers: references (closed forms, SLSQP, HRP's known block structure),
risk-parity contributions, the bound property over random problems, selection and config."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from scipy.optimize import minimize

from ata.quant.portfolio import optimisers as op
from ata.quant.portfolio.constraints import ClusterBound, Constraints, PortfolioRiskConfig, project
from ata.quant.portfolio.qp import project_box_l1, solve_qp


def _spd(n: int, seed: int, scale: float = 1e-4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    b = rng.normal(size=(n, n + 3))
    vols = rng.uniform(0.5, 3.0, size=n)
    corr = b @ b.T
    d = np.sqrt(np.diag(corr))
    corr = corr / np.outer(d, d)
    return scale * corr * np.outer(vols, vols)


# ----------------------------------------------------------------------------- risk parity


@pytest.mark.parametrize(("n", "seed"), [(2, 0), (5, 1), (30, 2), (120, 3)])
def test_risk_parity_contributions_are_equal(n: int, seed: int) -> None:
    cov = _spd(n, seed)
    res = op.RiskParity().weights(cov)
    assert res.converged
    rc = op.risk_contributions(res.weights, cov)
    assert np.max(np.abs(rc - 1.0 / n)) < 1e-6
    assert res.weights.sum() == pytest.approx(1.0) and np.all(res.weights > 0)


def test_risk_parity_refuses_a_singular_covariance() -> None:
    hedge = np.array([[1.0, -1.0], [-1.0, 1.0]])  # two assets that cancel each other exactly
    with pytest.raises(ValueError, match="positive definite"):
        op.risk_parity_allocation(hedge, np.array([1.0, 1.0]))


def test_risk_parity_with_budgets_and_with_shorts() -> None:
    cov = _spd(6, 9)
    budgets = np.array([1, 2, 3, 1, 2, 3], dtype=float)
    w, _, err = op.risk_parity_allocation(cov, budgets)
    assert err < 1e-10
    assert op.risk_contributions(w, cov) == pytest.approx(budgets / budgets.sum(), abs=1e-9)
    cons = Constraints.long_short_portfolio(6, 1.0, 1.0, None)
    signal = np.array([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
    res = op.RiskParity().weights(cov, expected=signal * 1e-3, constraints=cons)
    assert res.converged and np.array_equal(np.sign(res.weights), signal)
    assert np.abs(res.weights).sum() == pytest.approx(1.0)
    assert op.risk_contributions(res.weights, cov) == pytest.approx(np.full(6, 1 / 6), abs=1e-9)


def test_two_uncorrelated_assets_risk_parity_is_inverse_volatility() -> None:
    cov = np.diag([0.04, 0.01])
    rp = op.RiskParity().weights(cov).weights
    iv = op.InverseVolatility().weights(cov).weights
    assert rp == pytest.approx([1 / 3, 2 / 3], abs=1e-12)
    assert iv == pytest.approx([1 / 3, 2 / 3], abs=1e-12)


# ----------------------------------------------------------------------------- minimum variance


def test_minimum_variance_matches_two_asset_closed_form() -> None:
    s1, s2, rho = 0.2, 0.1, 0.3
    c12 = rho * s1 * s2
    cov = np.array([[s1**2, c12], [c12, s2**2]])
    w1 = (s2**2 - c12) / (s1**2 + s2**2 - 2 * c12)
    res = op.MinimumVariance().weights(cov)
    assert res.converged and res.diagnostics["closed_form"] == 1.0
    assert res.weights == pytest.approx([w1, 1 - w1], abs=1e-14)


def test_constrained_minimum_variance_matches_slsqp_reference() -> None:
    cov = _spd(8, 4)
    cons = Constraints.long_only_portfolio(8, max_weight=0.2)
    res = op.MinimumVariance().weights(cov, constraints=cons)
    assert res.converged and res.diagnostics["closed_form"] == 0.0 and not cons.violations(res.weights)
    ref = minimize(lambda w: w @ cov @ w, np.full(8, 1 / 8), jac=lambda w: 2 * cov @ w, bounds=[(0, 0.2)] * 8,
                   constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}], method="SLSQP",
                   options={"ftol": 1e-16, "maxiter": 500})
    assert res.weights @ cov @ res.weights <= ref.fun * (1 + 1e-9)
    assert res.weights == pytest.approx(ref.x, abs=1e-5)


def test_qp_solver_matches_kkt_on_an_equality_problem() -> None:
    """min ½xᵀPx + qᵀx s.t. Ax = b has the KKT solution of one linear system."""
    p = _spd(5, 11, scale=1.0)
    q = np.arange(5.0)
    a = np.array([[1.0, 1.0, 1.0, 1.0, 1.0], [1.0, -1.0, 0.0, 2.0, 0.0]])
    b = np.array([1.0, 0.5])
    kkt = np.block([[p, a.T], [a, np.zeros((2, 2))]])
    expected = np.linalg.solve(kkt, np.concatenate([-q, b]))[:5]
    res = solve_qp(p, q, a, b, b)
    assert res.converged and res.polished
    assert res.x == pytest.approx(expected, abs=1e-10)


# ----------------------------------------------------------------------------- HRP


def test_hrp_allocates_by_the_known_block_structure() -> None:
    """Two blocks of four equally volatile symbols, correlation 0.8 inside block A and 0.2 inside
    block B, zero across, interleaved in input order. HRP must reorder into the blocks, weigh
    symbols equally inside a block, and split the blocks in inverse proportion to their
    inverse-variance-portfolio variances σ²(1 + 3ρ)/4."""
    block_a, block_b = [0, 2, 4, 6], [1, 3, 5, 7]
    corr = np.eye(8)
    for block, rho in ((block_a, 0.8), (block_b, 0.2)):
        for i in block:
            for j in block:
                if i != j:
                    corr[i, j] = rho
    sigma = 0.02
    cov = corr * sigma**2
    w, order = op.hrp_allocation(cov)
    assert {frozenset(order[:4].tolist()), frozenset(order[4:].tolist())} == {frozenset(block_a), frozenset(block_b)}
    v_a, v_b = (1 + 3 * 0.8) / 4, (1 + 3 * 0.2) / 4
    share_a = v_b / (v_a + v_b)
    assert w[block_a] == pytest.approx(np.full(4, share_a / 4), abs=1e-14)
    assert w[block_b] == pytest.approx(np.full(4, (1 - share_a) / 4), abs=1e-14)
    res = op.HierarchicalRiskParity().weights(cov)
    assert res.converged and res.weights == pytest.approx(w, abs=1e-15)


# ----------------------------------------------------------------------------- mean-variance


def test_mean_variance_unconstrained_interior_solution_and_turnover_penalty() -> None:
    cov = _spd(5, 5)
    mu = np.array([2, -1, 0.5, 1, -0.5]) * 1e-4
    gamma = 10.0
    cons = Constraints.long_short_portfolio(5, 10.0, 10.0, None)
    res = op.MeanVariance(risk_aversion=gamma).weights(cov, expected=mu, constraints=cons)
    assert res.converged
    assert res.weights == pytest.approx(np.linalg.solve(gamma * cov, mu), rel=1e-8)
    previous = np.linalg.solve(gamma * cov, mu) * 0.5
    turnovers = []
    for kappa in (0.0, 1e-5, 1e-4, 1e-2):
        r = op.MeanVariance(risk_aversion=gamma, turnover_cost=kappa).weights(cov, expected=mu, previous=previous,
                                                                               constraints=cons)
        assert r.converged
        turnovers.append(np.abs(r.weights - previous).sum())
    assert turnovers == sorted(turnovers, reverse=True) and turnovers[0] > 0
    assert turnovers[-1] == pytest.approx(0.0, abs=1e-8)  # trading costs more than it earns: hold


def test_expected_returns_from_signals() -> None:
    assert op.expected_returns_from_signals([1.0, -0.5, 2.0], [0.01, 0.02, 0.01], 0.1) == pytest.approx(
        [1e-3, -1e-3, 1e-3]
    )


# ----------------------------------------------------------------------------- bounds property


@st.composite
def problems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, Constraints]:
    n = draw(st.integers(2, 9))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    cov = _spd(n, seed, scale=draw(st.sampled_from([1e-4, 1e-2, 1.0])))
    expected = rng.normal(size=n) * 1e-3
    if draw(st.booleans()):
        cap = draw(st.floats(1.0 / n + 0.01, 1.0))
        upper = rng.uniform(cap, 1.0, size=n) if draw(st.booleans()) else np.full(n, cap)
        clusters: tuple[ClusterBound, ...] = ()
        if n >= 4 and draw(st.booleans()):
            members = tuple(range(n // 2))
            hi = max(draw(st.floats(0.2, 0.9)), 1.0 - float(upper[n // 2 :].sum()) + 0.01)
            clusters = (ClusterBound("c", members, 0.0, hi),)
        return cov, expected, Constraints(np.zeros(n), upper, 1.0, 1.0, clusters)
    cap = draw(st.floats(0.05, 1.0))
    gross = draw(st.floats(max(0.1, cap), 3.0))
    net = draw(st.sampled_from([None, 0.0]))
    lower = np.where(rng.random(n) < 0.2, 0.0, -cap)  # some symbols may only be held long
    return cov, expected, Constraints(lower, np.full(n, cap), gross, net)


OPTIMISERS = [op.EqualWeight(), op.InverseVolatility(), op.RiskParity(), op.HierarchicalRiskParity(),
              op.MinimumVariance(), op.MeanVariance(), op.MeanVariance(risk_aversion=50.0, turnover_cost=1e-4)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=problems(), previous_seed=st.integers(0, 1000))
def test_every_optimiser_respects_every_bound(problem: tuple[np.ndarray, np.ndarray, Constraints], previous_seed: int) -> None:
    cov, expected, cons = problem
    previous = np.random.default_rng(previous_seed).normal(size=cons.n) * 0.1
    for opt in OPTIMISERS:
        if isinstance(opt, op.MinimumVariance) and cons.net_target is None:
            continue  # documented: needs a net target
        res = opt.weights(cov, expected=expected, previous=previous, constraints=cons)
        assert res.converged, (opt.name, res.diagnostics)
        assert cons.violations(res.weights) == [], opt.name


def test_projection_is_identity_when_feasible_and_nearest_otherwise() -> None:
    cons = Constraints.long_only_portfolio(3, max_weight=0.5)
    w, res = project([0.2, 0.3, 0.5], cons)
    assert res is None and w == pytest.approx([0.2, 0.3, 0.5])
    w, res = project([0.8, 0.1, 0.1], cons)
    assert res is not None and w == pytest.approx([0.5, 0.25, 0.25], abs=1e-12)


# ----------------------------------------------------------------------------- config and selection


def test_portfolio_risk_config_resolves_limits_directions_clusters_and_vol_targets() -> None:
    cfg = PortfolioRiskConfig.model_validate({
        "long_only": False, "gross_max": 1.5, "net_target": None,
        "default": {"max_weight": 0.4},
        "symbols": {"SPY": {"max_weight": 0.6, "direction": "long", "cluster": "index"},
                    "QQQ": {"direction": "short", "cluster": "index"},
                    "TSLA": {"vol_target_annual": 0.1}},
        "clusters": {"index": {"min_weight": -0.5, "max_weight": 0.5}},
    })
    cov = np.diag([0.01, 0.01, (0.5 / np.sqrt(252)) ** 2])  # TSLA: 50 % annualised
    cons = cfg.constraints_for(["SPY", "QQQ", "TSLA"], cov)
    assert cons.lower == pytest.approx([0.0, -0.4, -0.2]) and cons.upper == pytest.approx([0.6, 0.0, 0.2])
    assert cons.clusters == (ClusterBound("index", (0, 1), -0.5, 0.5),)
    with pytest.raises(ValidationError, match="no entry in clusters"):
        PortfolioRiskConfig.model_validate({"symbols": {"A": {"cluster": "nope"}}})
    with pytest.raises(ValidationError, match="short"):
        PortfolioRiskConfig.model_validate({"symbols": {"A": {"direction": "short"}}})
    with pytest.raises(ValidationError, match="max_weight"):
        PortfolioRiskConfig.model_validate({"default": {"max_weight": -1}})
    with pytest.raises(ValueError, match="net_target"):
        PortfolioRiskConfig(default={"max_weight": 0.1}).constraints_for(["A", "B"])  # type: ignore[arg-type]


def test_selection_by_config_and_regime() -> None:
    sel = op.OptimiserSelection.model_validate({
        "default": "risk_parity",
        "by_regime": {"crisis": "minimum_variance", "bull": "mean_variance"},
        "params": {"mean_variance": {"risk_aversion": 3.0, "turnover_cost": 1e-4}},
    })
    assert sel.optimiser_for("crisis").name == "minimum_variance"
    assert sel.optimiser_for("sideways").name == "risk_parity"
    assert sel.optimiser_for(None).name == "risk_parity"
    mv = sel.optimiser_for("bull")
    assert isinstance(mv, op.MeanVariance) and mv.risk_aversion == 3.0
    with pytest.raises(ValidationError, match=r"by_regime\.crisis: unknown optimiser 'magic'"):
        op.OptimiserSelection.model_validate({"by_regime": {"crisis": "magic"}})
    assert set(op.available_optimisers()) >= {"equal_weight", "inverse_volatility", "risk_parity", "hrp",
                                                "minimum_variance", "mean_variance"}


def test_invalid_inputs_raise() -> None:
    with pytest.raises(ValueError, match="symmetric"):
        op.RiskParity().weights([[1.0, 0.5], [0.2, 1.0]])
    with pytest.raises(ValueError, match="expected returns"):
        op.MeanVariance().weights(np.eye(2))
    with pytest.raises(ValueError, match="net target"):
        op.MinimumVariance().weights(np.eye(2), constraints=Constraints.long_short_portfolio(2, 1.0, 1.0))


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 25), radius=st.floats(0.01, 3.0))
def test_box_l1_projection_equals_a_bisection_reference(seed: int, n: int, radius: float) -> None:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=n)
    lower = -rng.uniform(0, 1, n) * (rng.random(n) < 0.7)
    upper = rng.uniform(0, 1, n)

    def at(lam: float) -> np.ndarray:
        return np.clip(np.sign(v) * np.maximum(np.abs(v) - lam, 0.0), lower, upper)

    lo_l, hi_l = 0.0, float(np.abs(v).max())
    for _ in range(200):
        mid = 0.5 * (lo_l + hi_l)
        lo_l, hi_l = (mid, hi_l) if np.abs(at(mid)).sum() > radius else (lo_l, mid)
    reference = at(0.0) if np.abs(at(0.0)).sum() <= radius else at(hi_l)
    got = project_box_l1(v, lower, upper, radius)
    assert got == pytest.approx(reference, abs=1e-12)
    assert np.abs(got).sum() <= radius + 1e-12
