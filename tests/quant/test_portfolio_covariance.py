"""ata.quant.portfolio.covariance: references (scikit-learn, pandas, numpy), streaming equals
vectorised, snapshot/restore, and the no-look-ahead property."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.covariance import empirical_covariance

from ata.quant.portfolio import covariance as cv


def _returns(n_bars: int, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(n, n)) * 0.3 + np.eye(n)
    return rng.normal(size=(n_bars, n)) @ mix.T * 0.01


def test_ledoit_wolf_shrinks_towards_scaled_identity_and_beats_sample_when_short() -> None:
    rng = np.random.default_rng(3)
    n = 20
    true = 1e-4 * (0.3 * np.ones((n, n)) + 0.7 * np.eye(n))
    x = rng.multivariate_normal(np.zeros(n), true, size=15)
    cov, shrinkage = cv.ledoit_wolf_covariance(x)
    sample = empirical_covariance(x)
    mu = np.trace(sample) / n
    assert 0.0 < shrinkage < 1.0
    assert cov == pytest.approx((1 - shrinkage) * sample + shrinkage * mu * np.eye(n), rel=1e-10)
    assert np.linalg.norm(cov - true) < np.linalg.norm(np.cov(x, rowvar=False) - true)
    assert np.linalg.eigvalsh(cov).min() > 0 and np.linalg.eigvalsh(sample).min() < 1e-12  # 15 rows, 20 symbols: singular


def test_ewma_equals_pandas_exponentially_weighted_covariance() -> None:
    x = _returns(200, 4)
    halflife = 17.0
    expected = pd.DataFrame(x).ewm(halflife=halflife, adjust=True).cov(bias=True).to_numpy()[-4:]
    assert cv.ewma_covariance(x, halflife) == pytest.approx(expected, rel=1e-10, abs=1e-18)


def test_sample_method_and_window_alignment() -> None:
    x = _returns(50, 3)
    cfg = cv.CovarianceConfig(method="sample", window=10, min_periods=5)
    rolled = cv.rolling_covariance(x, cfg)
    assert np.all(np.isnan(rolled[:4]))
    assert rolled[4] == pytest.approx(np.cov(x[0:5], rowvar=False))
    assert rolled[30] == pytest.approx(np.cov(x[21:31], rowvar=False))  # bars t-9 .. t inclusive


@pytest.mark.parametrize("method", cv.METHODS)
def test_streaming_equals_vectorised_and_resumes_from_snapshot(method: cv.Method) -> None:
    x = _returns(80, 5, seed=7)
    cfg = cv.CovarianceConfig(method=method, window=25, min_periods=10, halflife_bars=8.0)
    rolled = cv.rolling_covariance(x, cfg)
    est = cv.RollingCovariance(5, cfg)
    for t in range(40):
        est.update(x[t])
        got = est.covariance()
        if t < 9:
            assert got is None
        else:
            assert got == pytest.approx(rolled[t], rel=1e-12, abs=1e-20)
    restored = cv.RollingCovariance.restore(json.loads(json.dumps(est.snapshot())))
    for t in range(40, 80):
        est.update(x[t])
        restored.update(x[t])
        assert restored.covariance() == pytest.approx(rolled[t], rel=1e-12, abs=1e-20)
        assert restored.covariance() == pytest.approx(est.covariance(), rel=0, abs=0)


@settings(max_examples=40, deadline=None)
@given(
    method=st.sampled_from(cv.METHODS),
    seed=st.integers(0, 10_000),
    cut=st.integers(5, 58),
    window=st.integers(3, 30),
)
def test_no_look_ahead(method: cv.Method, seed: int, cut: int, window: int) -> None:
    """Changing any bar after t never changes the estimate at t (nor any earlier one)."""
    x = _returns(60, 3, seed=seed)
    cfg = cv.CovarianceConfig(method=method, window=window, min_periods=min(3, window))
    future_changed = x.copy()
    future_changed[cut + 1 :] = np.random.default_rng(seed + 1).normal(size=future_changed[cut + 1 :].shape) * 0.5
    a, b = cv.rolling_covariance(x, cfg), cv.rolling_covariance(future_changed, cfg)
    np.testing.assert_array_equal(a[: cut + 1], b[: cut + 1])
    if cut + 1 < 60:
        assert not np.allclose(a[cut + 1], b[cut + 1])  # the test can see a change when there is one


def test_invalid_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        cv.rolling_covariance([[0.1, np.nan], [0.0, 0.1]], cv.CovarianceConfig(window=2, min_periods=2))
    with pytest.raises(ValueError, match="min_periods"):
        cv.CovarianceConfig(window=10, min_periods=11)
    with pytest.raises(ValueError, match="shape"):
        cv.RollingCovariance(3).update([0.1, 0.2])


def test_correlation_from_covariance_handles_zero_variance() -> None:
    corr = cv.correlation_from_covariance([[4.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert corr == pytest.approx(np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
