"""Frozen-parameter regime filters against statsmodels and arch on the real S&P 500 series."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from arch import arch_model
from arch.data import sp500
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.tsa.regime_switching.markov_regression import MarkovRegression

from ata.quant.regime_filters import (
    PROBABILITY_FLOOR,
    Garch11Filter,
    Garch11Params,
    HamiltonFilter,
    MarkovSwitchingParams,
    RollingRank,
    expected_durations,
    steady_state,
)


@pytest.fixture(scope="module")
def sp500_returns_pct() -> np.ndarray:
    close = sp500.load()["Adj Close"]
    return np.asarray(100.0 * np.log(close).diff().dropna().to_numpy(), dtype=np.float64)


@pytest.fixture(scope="module", params=[2, 3], ids=["k2", "k3"])
def markov_fit(request: pytest.FixtureRequest, sp500_returns_pct: np.ndarray) -> tuple[int, Any]:
    k = int(request.param)
    result = MarkovRegression(sp500_returns_pct, k_regimes=k, switching_variance=True).fit(disp=False)
    return k, result


def test_hamilton_filter_matches_statsmodels_filtered_probabilities(
    markov_fit: tuple[int, Any], sp500_returns_pct: np.ndarray
) -> None:
    k, result = markov_fit
    params = MarkovSwitchingParams.from_statsmodels(result.params, k)
    filt = HamiltonFilter(params)
    ours = filt.run(sp500_returns_pct)
    reference = np.asarray(result.filtered_marginal_probabilities)
    assert ours.shape == reference.shape == (len(sp500_returns_pct), k)
    assert np.max(np.abs(ours - reference)) <= 1e-9
    assert filt.loglik == pytest.approx(result.llf, abs=1e-6)


def test_transition_matrix_and_steady_state_follow_statsmodels(markov_fit: tuple[int, Any]) -> None:
    k, result = markov_fit
    params = MarkovSwitchingParams.from_statsmodels(result.params, k)
    left = result.model.regime_transition_matrix(result.params)[..., 0]
    np.testing.assert_allclose(np.asarray(params.transition), left.T, atol=1e-15)
    np.testing.assert_allclose(steady_state(params.transition), result.model.initial_probabilities(result.params), atol=1e-12)
    np.testing.assert_allclose(expected_durations(params.transition), result.expected_durations, rtol=1e-12)


def test_sorting_by_variance_relabels_consistently(markov_fit: tuple[int, Any], sp500_returns_pct: np.ndarray) -> None:
    k, result = markov_fit
    params = MarkovSwitchingParams.from_statsmodels(result.params, k)
    ordered = params.sorted_by_variance()
    order = sorted(range(k), key=lambda i: params.variances[i])
    assert list(ordered.variances) == sorted(params.variances)
    reference = HamiltonFilter(params).run(sp500_returns_pct)[:, order]
    np.testing.assert_allclose(HamiltonFilter(ordered).run(sp500_returns_pct), reference, atol=1e-12)


def test_filter_snapshot_restore_continues_identically(sp500_returns_pct: np.ndarray) -> None:
    params = MarkovSwitchingParams(means=(0.05, -0.1), variances=(0.5, 3.0), transition=((0.98, 0.02), (0.03, 0.97)))
    whole = HamiltonFilter(params).run(sp500_returns_pct)
    first = HamiltonFilter(params)
    first.run(sp500_returns_pct[:1000])
    resumed = HamiltonFilter.restore(first.snapshot())
    np.testing.assert_array_equal(resumed.run(sp500_returns_pct[1000:]), whole[1000:])


def test_filter_survives_observations_far_in_the_tails() -> None:
    params = MarkovSwitchingParams(means=(0.0, 0.0), variances=(1e-4, 1e-2), transition=((0.99, 0.01), (0.01, 0.99)))
    probs = HamiltonFilter(params).step(50.0)
    assert probs[1] == pytest.approx(1.0) and math.isclose(sum(probs), 1.0)


def test_statsmodels_parameter_vector_round_trips(markov_fit: tuple[int, Any]) -> None:
    k, result = markov_fit
    params = MarkovSwitchingParams.from_statsmodels(result.params, k)
    np.testing.assert_allclose(params.to_statsmodels(), result.params, atol=1e-15)


def test_from_statsmodels_rejects_wrong_length() -> None:
    with pytest.raises(ValueError, match="expected 6 parameters"):
        MarkovSwitchingParams.from_statsmodels([0.9, 0.1, 0.0], 2)


def test_garch_recursion_reproduces_arch_conditional_volatility(sp500_returns_pct: np.ndarray) -> None:
    model = arch_model(sp500_returns_pct, mean="Constant", vol="GARCH", p=1, q=1, dist="normal")
    fit = model.fit(disp="off")
    mu, omega, alpha, beta = (float(x) for x in fit.params)
    backcast = float(model.volatility.backcast(sp500_returns_pct - sp500_returns_pct.mean()))
    filt = Garch11Filter.from_backcast(Garch11Params(mu=mu, omega=omega, alpha=alpha, beta=beta), backcast)
    ours = []
    for r in sp500_returns_pct:
        ours.append(math.sqrt(filt.variance))
        filt.step(float(r))
    np.testing.assert_allclose(ours, np.asarray(fit.conditional_volatility), rtol=1e-9)
    assert Garch11Params(mu, omega, alpha, beta).unconditional_variance == pytest.approx(omega / (1 - alpha - beta))


def test_rolling_rank_equals_brute_force() -> None:
    rng = np.random.default_rng(7)
    xs = np.round(rng.normal(size=500), 1)  # rounded so ties occur
    ranker = RollingRank(50)
    for i, x in enumerate(xs):
        history = xs[max(0, i - 50) : i]
        expected = 0.5 if len(history) == 0 else (np.sum(history < x) + 0.5 * np.sum(history == x)) / len(history)
        assert ranker.rank(float(x)) == pytest.approx(expected)
        ranker.push(float(x))
    restored = RollingRank.restore(ranker.snapshot())
    assert restored.rank(0.3) == ranker.rank(0.3) and len(restored) == 50


def _reference_step(params: MarkovSwitchingParams, prev: tuple[float, ...], y: float) -> tuple[float, ...]:
    """The Hamilton step written as the plain loop over regimes (left-to-right sums)."""
    k = params.k
    ll = [
        -0.5 * (math.log(2.0 * math.pi) + math.log(v)) - (y - m) * (y - m) * (0.5 / v)
        for m, v in zip(params.means, params.variances, strict=True)
    ]
    top = max(ll)
    weighted = []
    for i in range(k):
        predicted = 0.0
        for j in range(k):
            predicted += max(params.transition[j][i], PROBABILITY_FLOOR) * prev[j]
        weighted.append(predicted * math.exp(ll[i] - top))
    total = 0.0
    for w in weighted:
        total += w
    return tuple(w / total for w in weighted)


@st.composite
def _markov_params(draw: st.DrawFn) -> MarkovSwitchingParams:
    k = draw(st.integers(min_value=2, max_value=4))
    rows = []
    for _ in range(k):
        weights = [draw(st.floats(min_value=0.0, max_value=1.0)) + 1e-3 for _ in range(k)]
        rows.append(tuple(w / math.fsum(weights) for w in weights))
    return MarkovSwitchingParams(
        means=tuple(draw(st.floats(min_value=-2.0, max_value=2.0)) for _ in range(k)),
        variances=tuple(draw(st.floats(min_value=0.05, max_value=20.0)) for _ in range(k)),
        transition=tuple(rows),
    )


@settings(max_examples=200, deadline=None)
@given(params=_markov_params(), ys=st.lists(st.floats(min_value=-60.0, max_value=60.0), min_size=1, max_size=30))
def test_unrolled_hamilton_steps_equal_the_plain_loop_bit_for_bit(params: MarkovSwitchingParams, ys: list[float]) -> None:
    filt = HamiltonFilter(params)
    probabilities = filt.probabilities
    for y in ys:
        probabilities = _reference_step(params, probabilities, y)
        assert filt.step(y) == probabilities


@settings(max_examples=100, deadline=None)
@given(xs=st.lists(st.integers(min_value=0, max_value=12).map(lambda i: i / 4), max_size=80), window=st.integers(1, 20))
def test_rank_push_equals_rank_then_push(xs: list[float], window: int) -> None:
    combined, separate = RollingRank(window), RollingRank(window)
    for x in xs:
        expected = separate.rank(x)
        separate.push(x)
        assert combined.rank_push(x) == expected
    assert combined.snapshot() == separate.snapshot()
