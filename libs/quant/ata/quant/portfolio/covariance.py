"""Covariance estimation on a rolling window of returns, never using future bars.

Estimators (``method``):

- ``"ledoit_wolf"``: Ledoit–Wolf shrinkage towards a scaled identity (scikit-learn
  :class:`~sklearn.covariance.LedoitWolf`, mean-centred). Well conditioned even when the window
  is short against the number of symbols, which the optimisers need (they invert it).
- ``"ewma"``: exponentially weighted covariance over the window; the newest row weighs 1,
  a row ``k`` bars older ``0.5 ** (k / halflife_bars)``; weights are normalised to sum to 1,
  the mean is the weighted mean (no small-sample correction: it is a risk forecast, not an
  unbiased estimate).
- ``"sample"``: the plain sample covariance (``ddof=1``), as a reference.

Timing contract: the estimate *at bar t* uses the returns of bars ``t - window + 1 .. t``
inclusive (the return of bar ``t`` is known at its close). A decision taken at the close of
bar ``t`` with this estimate is applied to the return of bar ``t + 1``; no row after ``t`` is
ever read. :func:`rolling_covariance` (vectorised over a history) and
:class:`RollingCovariance` (streaming, one row per bar, with ``snapshot()`` / ``restore()``)
give identical estimates.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.covariance import LedoitWolf

FloatArray = npt.NDArray[np.float64]
Method = Literal["ledoit_wolf", "ewma", "sample"]
METHODS: tuple[Method, ...] = ("ledoit_wolf", "ewma", "sample")

__all__ = [
    "METHODS",
    "CovarianceConfig",
    "Method",
    "RollingCovariance",
    "correlation_from_covariance",
    "estimate_covariance",
    "ewma_covariance",
    "ledoit_wolf_covariance",
    "rolling_covariance",
]


@dataclass(frozen=True)
class CovarianceConfig:
    """Estimator settings. ``min_periods`` rows are needed before an estimate exists."""

    method: Method = "ledoit_wolf"
    window: int = 126
    min_periods: int = 30
    halflife_bars: float = 30.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.window < 2:
            raise ValueError("window must be >= 2")
        if not 2 <= self.min_periods <= self.window:
            raise ValueError("min_periods must lie in [2, window]")
        if not self.halflife_bars > 0:
            raise ValueError("halflife_bars must be positive")


def _rows(returns: npt.ArrayLike) -> FloatArray:
    arr = np.asarray(returns, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"returns must be two-dimensional (bars x symbols), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("returns must be finite (no NaN or infinity)")
    return arr


def ledoit_wolf_covariance(returns: npt.ArrayLike) -> tuple[FloatArray, float]:
    """Ledoit–Wolf shrunk covariance of ``returns`` (bars x symbols) and the shrinkage used.

    scikit-learn divides by ``n`` (not ``n - 1``); kept as is so the numbers match the library.
    """
    x = _rows(returns)
    if x.shape[0] < 2:
        raise ValueError("at least two rows are needed")
    est = LedoitWolf(assume_centered=False).fit(x)
    cov: FloatArray = np.asarray(est.covariance_, dtype=np.float64)
    return cov, float(est.shrinkage_)


def ewma_covariance(returns: npt.ArrayLike, halflife_bars: float) -> FloatArray:
    """Exponentially weighted covariance; the last row is the newest (see the module contract)."""
    x = _rows(returns)
    if x.shape[0] < 2:
        raise ValueError("at least two rows are needed")
    if not halflife_bars > 0:
        raise ValueError("halflife_bars must be positive")
    age = np.arange(x.shape[0] - 1, -1, -1, dtype=np.float64)
    w = 0.5 ** (age / halflife_bars)
    w /= w.sum()
    centred = x - w @ x
    cov: FloatArray = (centred * w[:, None]).T @ centred
    return cov


def estimate_covariance(returns: npt.ArrayLike, config: CovarianceConfig) -> FloatArray:
    """One estimate from the given rows (the caller chose the window)."""
    if config.method == "ledoit_wolf":
        return ledoit_wolf_covariance(returns)[0]
    if config.method == "ewma":
        return ewma_covariance(returns, config.halflife_bars)
    cov: FloatArray = np.atleast_2d(np.cov(_rows(returns), rowvar=False, ddof=1))
    return cov


def rolling_covariance(returns: npt.ArrayLike, config: CovarianceConfig) -> FloatArray:
    """Estimates for every bar: shape ``(bars, symbols, symbols)``; NaN before ``min_periods`` rows."""
    x = _rows(returns)
    n_bars, n = x.shape
    out = np.full((n_bars, n, n), np.nan)
    for t in range(config.min_periods - 1, n_bars):
        out[t] = estimate_covariance(x[max(0, t - config.window + 1) : t + 1], config)
    return out


def correlation_from_covariance(cov: npt.ArrayLike) -> FloatArray:
    """Correlation matrix; a zero-variance symbol gets zero correlation with the others."""
    c = np.asarray(cov, dtype=np.float64)
    sd = np.sqrt(np.clip(np.diag(c), 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = c / np.outer(sd, sd)
    corr = np.where(np.isfinite(corr), corr, 0.0)
    np.fill_diagonal(corr, 1.0)
    clipped: FloatArray = np.clip(corr, -1.0, 1.0)
    return clipped


class RollingCovariance:
    """Streaming estimator: feed one row of returns per bar with :meth:`update`.

    :meth:`covariance` is the estimate from the last ``window`` rows (``None`` until
    ``min_periods`` rows arrived); it equals :func:`rolling_covariance` at the same bar.
    """

    def __init__(self, n_symbols: int, config: CovarianceConfig | None = None) -> None:
        if n_symbols < 1:
            raise ValueError("n_symbols must be >= 1")
        self.n_symbols = n_symbols
        self.config = config or CovarianceConfig()
        self._rows: deque[tuple[float, ...]] = deque(maxlen=self.config.window)
        self._cached: FloatArray | None = None

    def update(self, row: npt.ArrayLike) -> None:
        r = np.asarray(row, dtype=np.float64)
        if r.shape != (self.n_symbols,):
            raise ValueError(f"row must have shape ({self.n_symbols},), got {r.shape}")
        if not np.all(np.isfinite(r)):
            raise ValueError("row must be finite")
        self._rows.append(tuple(float(v) for v in r))
        self._cached = None

    @property
    def count(self) -> int:
        return len(self._rows)

    def covariance(self) -> FloatArray | None:
        if len(self._rows) < self.config.min_periods:
            return None
        if self._cached is None:
            self._cached = estimate_covariance(np.array(self._rows), self.config)
        return self._cached.copy()

    def snapshot(self) -> dict[str, Any]:
        return {
            "n_symbols": self.n_symbols,
            "config": {
                "method": self.config.method,
                "window": self.config.window,
                "min_periods": self.config.min_periods,
                "halflife_bars": self.config.halflife_bars,
            },
            "rows": [list(r) for r in self._rows],
        }

    @classmethod
    def restore(cls, state: dict[str, Any]) -> RollingCovariance:
        est = cls(int(state["n_symbols"]), CovarianceConfig(**state["config"]))
        for row in state["rows"]:
            est.update(row)
        return est
