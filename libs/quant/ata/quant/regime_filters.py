"""Online regime filters with frozen parameters: Hamilton filter and GARCH(1,1) recursion.

These are the per-bar hot-path pieces of regime detection. Parameters are estimated
elsewhere (statsmodels ``MarkovRegression``, ``arch``), off the hot path, and frozen
here; each filter then advances by one observation in O(k²) plain-float arithmetic
(for k = 2 or 3 regimes small numpy arrays cost more than they save).

Conventions
-----------
- ``transition[i][j]`` is P(S_t = j | S_{t-1} = i): rows sum to one (row-stochastic).
  statsmodels uses the transpose (left-stochastic, ``P[i, j] = P(i | j)``);
  :meth:`MarkovSwitchingParams.from_statsmodels` converts.
- The Markov-switching model is ``y_t = mu[S_t] + e_t``, ``e_t ~ N(0, variance[S_t])``,
  i.e. statsmodels' ``MarkovRegression(y, k, switching_variance=True)`` with its default
  switching constant.
- Filtered probabilities are P(S_t | y_1..y_t): they never use a later observation
  (smoothed probabilities do; nothing here computes them).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

#: statsmodels bounds transition and initial probabilities away from zero before it
#: takes logs; the same floor keeps this filter bit-compatible with it.
PROBABILITY_FLOOR = 1e-20
_LOG_2PI = math.log(2.0 * math.pi)

FloatArray = npt.NDArray[np.float64]


def steady_state(transition: Sequence[Sequence[float]]) -> tuple[float, ...]:
    """Ergodic distribution of a row-stochastic ``transition`` matrix.

    Computed exactly as statsmodels' ``initialize_steady_state`` does (least squares
    through a pseudo-inverse of ``[(I - P); 1]``), so filters started from it agree
    with statsmodels to rounding.
    """
    left = np.asarray(transition, dtype=np.float64).T
    k = left.shape[0]
    system = np.c_[(np.eye(k) - left).T, np.ones(k)].T
    probabilities = np.linalg.pinv(system)[:, -1]
    return tuple(float(p) for p in probabilities)


def expected_durations(transition: Sequence[Sequence[float]]) -> tuple[float, ...]:
    """Expected number of bars spent in each regime once entered: ``1 / (1 - p_ii)``."""
    return tuple(math.inf if row[i] >= 1.0 else 1.0 / (1.0 - row[i]) for i, row in enumerate(transition))


def _running_sum(values: Iterable[float]) -> float:
    """Left-to-right float sum (what ``sum`` does up to Python 3.11; 3.12 compensates)."""
    total = 0.0
    for v in values:
        total += v
    return total


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    total = 0.0
    for x, y in zip(a, b, strict=True):
        total += x * y
    return total


@dataclass(frozen=True, slots=True)
class MarkovSwitchingParams:
    """Frozen parameters of a k-regime switching-mean, switching-variance model.

    ``initial`` is the distribution of the regime *before* the first observation
    (statsmodels' ``initial_probabilities``); ``None`` means the steady state of
    ``transition``, statsmodels' default.
    """

    means: tuple[float, ...]
    variances: tuple[float, ...]
    transition: tuple[tuple[float, ...], ...]
    initial: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        k = len(self.means)
        if k < 2 or len(self.variances) != k or len(self.transition) != k or any(len(r) != k for r in self.transition):
            raise ValueError("means, variances and a k x k transition matrix must agree on k >= 2")
        if any(not (v > 0.0 and math.isfinite(v)) for v in self.variances):
            raise ValueError("variances must be positive and finite")
        for row in self.transition:
            if any(p < 0.0 for p in row) or abs(math.fsum(row) - 1.0) > 1e-8:
                raise ValueError("transition rows must be probability vectors (row-stochastic)")
        if self.initial is not None and (len(self.initial) != k or abs(math.fsum(self.initial) - 1.0) > 1e-8):
            raise ValueError("initial probabilities must be a probability vector of length k")

    @property
    def k(self) -> int:
        return len(self.means)

    @classmethod
    def from_statsmodels(cls, params: Iterable[float], k: int) -> MarkovSwitchingParams:
        """Build from the parameter vector of a fitted ``MarkovRegression(y, k, switching_variance=True)``.

        statsmodels orders it ``p[0->0], p[1->0], ..., p[k-1->k-2]`` (the first k-1 rows of
        its left-stochastic matrix, row-major), then ``const[0..k-1]``, then ``sigma2[0..k-1]``.
        """
        values = [float(p) for p in params]
        n_trans = k * (k - 1)
        if len(values) != n_trans + 2 * k:
            raise ValueError(f"expected {n_trans + 2 * k} parameters for k={k}, got {len(values)}")
        left = [[values[i * k + j] for j in range(k)] for i in range(k - 1)]
        left.append([1.0 - math.fsum(left[i][j] for i in range(k - 1)) for j in range(k)])
        transition = tuple(tuple(left[i][j] for i in range(k)) for j in range(k))
        return cls(
            means=tuple(values[n_trans : n_trans + k]),
            variances=tuple(values[n_trans + k :]),
            transition=transition,
        )

    def to_statsmodels(self) -> list[float]:
        """The parameter vector :meth:`from_statsmodels` reads (e.g. as ``start_params`` of a refit)."""
        k = self.k
        left_rows = [self.transition[j][i] for i in range(k - 1) for j in range(k)]
        return [*left_rows, *self.means, *self.variances]

    def sorted_by_variance(self) -> MarkovSwitchingParams:
        """The same model with regimes relabelled so that regime 0 has the lowest variance.

        Fits label regimes arbitrarily; sorting gives regime indices a stable meaning
        (calm first) across refits.
        """
        order = sorted(range(self.k), key=lambda i: self.variances[i])
        return MarkovSwitchingParams(
            means=tuple(self.means[i] for i in order),
            variances=tuple(self.variances[i] for i in order),
            transition=tuple(tuple(self.transition[i][j] for j in order) for i in order),
            initial=None if self.initial is None else tuple(self.initial[i] for i in order),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "means": list(self.means),
            "variances": list(self.variances),
            "transition": [list(r) for r in self.transition],
            "initial": None if self.initial is None else list(self.initial),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MarkovSwitchingParams:
        initial = data.get("initial")
        return cls(
            means=tuple(float(x) for x in data["means"]),
            variances=tuple(float(x) for x in data["variances"]),
            transition=tuple(tuple(float(x) for x in r) for r in data["transition"]),
            initial=None if initial is None else tuple(float(x) for x in initial),
        )


class HamiltonFilter:
    """Hamilton forward filter of a :class:`MarkovSwitchingParams` model, one step per observation.

    ``step(y)`` returns P(S_t = i | y_1..y_t) for every regime i. The per-step
    likelihoods are rescaled by their maximum before exponentiation, so extreme
    observations neither overflow nor underflow. ``loglik`` accumulates
    log f(y_t | y_1..y_{t-1}).
    """

    __slots__ = ("_half_inv_var", "_log_norm", "_means", "_trans", "loglik", "nobs", "params", "probabilities")

    def __init__(self, params: MarkovSwitchingParams, probabilities: Sequence[float] | None = None) -> None:
        self.params = params
        regimes = range(params.k)
        self._means = params.means
        self._half_inv_var = tuple(0.5 / v for v in params.variances)
        self._log_norm = tuple(-0.5 * (_LOG_2PI + math.log(v)) for v in params.variances)
        # Column-major copy (to-state first) so the prediction is a dot product per regime.
        self._trans = tuple(tuple(max(params.transition[j][i], PROBABILITY_FLOOR) for j in regimes) for i in regimes)
        start = params.initial if params.initial is not None else steady_state(params.transition)
        initial = probabilities if probabilities is not None else start
        self.probabilities: tuple[float, ...] = tuple(max(float(p), PROBABILITY_FLOOR) for p in initial)
        self.loglik = 0.0
        self.nobs = 0

    def predicted(self) -> tuple[float, ...]:
        """P(S_{t+1} = i | y_1..y_t): the one-step-ahead regime distribution."""
        prev = self.probabilities
        total = math.fsum(prev)
        return tuple(math.fsum(p * q for p, q in zip(col, prev, strict=True)) / total for col in self._trans)

    def step(self, y: float) -> tuple[float, ...]:
        """Absorb observation ``y``; return the filtered regime probabilities.

        k = 2 and k = 3 (the models the regime service advances every bar) are unrolled
        into scalar code; every branch performs the same operations in the same order
        (left-to-right sums), so the result does not depend on which branch ran.
        """
        prev = self.probabilities
        k = len(prev)
        probabilities: tuple[float, ...]
        if k == 2:
            p0, p1 = prev
            m0, m1 = self._means
            h0, h1 = self._half_inv_var
            n0, n1 = self._log_norm
            (a0, a1), (b0, b1) = self._trans
            d0, d1 = y - m0, y - m1
            l0, l1 = n0 - d0 * d0 * h0, n1 - d1 * d1 * h1
            # exp(0.0) is exactly 1.0: the most likely regime's weight needs no exp.
            if l1 > l0:
                top, w0, w1 = l1, (a0 * p0 + a1 * p1) * math.exp(l0 - l1), b0 * p0 + b1 * p1
            else:
                top, w0, w1 = l0, a0 * p0 + a1 * p1, (b0 * p0 + b1 * p1) * math.exp(l1 - l0)
            total = w0 + w1
            if not total > 0.0:
                raise self._collapsed(y)
            probabilities = (w0 / total, w1 / total)
            prev_total = p0 + p1
        elif k == 3:
            p0, p1, p2 = prev
            m0, m1, m2 = self._means
            h0, h1, h2 = self._half_inv_var
            n0, n1, n2 = self._log_norm
            (a0, a1, a2), (b0, b1, b2), (c0, c1, c2) = self._trans
            d0, d1, d2 = y - m0, y - m1, y - m2
            l0, l1, l2 = n0 - d0 * d0 * h0, n1 - d1 * d1 * h1, n2 - d2 * d2 * h2
            top = max(l0, l1, l2)
            w0 = (a0 * p0 + a1 * p1 + a2 * p2) * math.exp(l0 - top)
            w1 = (b0 * p0 + b1 * p1 + b2 * p2) * math.exp(l1 - top)
            w2 = (c0 * p0 + c1 * p1 + c2 * p2) * math.exp(l2 - top)
            total = w0 + w1 + w2
            if not total > 0.0:
                raise self._collapsed(y)
            probabilities = (w0 / total, w1 / total, w2 / total)
            prev_total = p0 + p1 + p2
        else:
            ll = [n - (y - m) * (y - m) * h for m, h, n in zip(self._means, self._half_inv_var, self._log_norm, strict=True)]
            top = max(ll)
            weighted = [_dot(col, prev) * math.exp(ll_i - top) for col, ll_i in zip(self._trans, ll, strict=True)]
            total = _running_sum(weighted)
            if not total > 0.0:
                raise self._collapsed(y)
            probabilities = tuple(w / total for w in weighted)
            prev_total = _running_sum(prev)
        self.probabilities = probabilities
        self.loglik += top + math.log(total / prev_total)
        self.nobs += 1
        return probabilities

    def _collapsed(self, y: float) -> FloatingPointError:
        return FloatingPointError(f"filter collapsed at observation {self.nobs} (y={y!r})")

    def run(self, ys: Iterable[float]) -> FloatArray:
        """Absorb every observation of ``ys``; return the filtered probabilities, shape (n, k)."""
        rows = [self.step(float(y)) for y in ys]
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), self.params.k)

    def snapshot(self) -> dict[str, Any]:
        return {
            "params": self.params.to_dict(),
            "probabilities": list(self.probabilities),
            "loglik": self.loglik,
            "nobs": self.nobs,
        }

    @classmethod
    def restore(cls, state: dict[str, Any]) -> HamiltonFilter:
        filt = cls(MarkovSwitchingParams.from_dict(state["params"]), state["probabilities"])
        filt.loglik = float(state["loglik"])
        filt.nobs = int(state["nobs"])
        return filt


@dataclass(frozen=True, slots=True)
class Garch11Params:
    """GARCH(1,1) with constant mean: ``r_t = mu + e_t``, ``s2_t = omega + alpha e_{t-1}^2 + beta s2_{t-1}``.

    Units are those of the returns it was fitted on (``arch`` fits are usually on
    percent returns).
    """

    mu: float
    omega: float
    alpha: float
    beta: float

    def __post_init__(self) -> None:
        if not (self.omega > 0.0 and self.alpha >= 0.0 and self.beta >= 0.0):
            raise ValueError("GARCH(1,1) needs omega > 0, alpha >= 0, beta >= 0")

    @property
    def persistence(self) -> float:
        return self.alpha + self.beta

    @property
    def unconditional_variance(self) -> float:
        """``omega / (1 - alpha - beta)``; infinite for a non-stationary fit."""
        return math.inf if self.persistence >= 1.0 else self.omega / (1.0 - self.persistence)

    def to_dict(self) -> dict[str, float]:
        return {"mu": self.mu, "omega": self.omega, "alpha": self.alpha, "beta": self.beta}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Garch11Params:
        return cls(mu=float(data["mu"]), omega=float(data["omega"]), alpha=float(data["alpha"]), beta=float(data["beta"]))


class Garch11Filter:
    """The GARCH(1,1) variance recursion with frozen parameters.

    ``variance`` is the conditional variance of the *next* return given every
    return seen so far. Start it from ``omega + (alpha + beta) * backcast`` to
    reproduce ``arch``'s in-sample ``conditional_volatility`` (see :meth:`from_backcast`).
    """

    __slots__ = ("params", "variance")

    def __init__(self, params: Garch11Params, variance: float) -> None:
        if not variance > 0.0:
            raise ValueError("variance must be positive")
        self.params = params
        self.variance = float(variance)

    @classmethod
    def from_backcast(cls, params: Garch11Params, backcast: float) -> Garch11Filter:
        return cls(params, params.omega + (params.alpha + params.beta) * backcast)

    def step(self, r: float) -> float:
        """Absorb return ``r``; return the variance forecast for the next return."""
        p = self.params
        e = r - p.mu
        self.variance = p.omega + p.alpha * e * e + p.beta * self.variance
        return self.variance

    def snapshot(self) -> dict[str, Any]:
        return {"params": self.params.to_dict(), "variance": self.variance}

    @classmethod
    def restore(cls, state: dict[str, Any]) -> Garch11Filter:
        return cls(Garch11Params.from_dict(state["params"]), float(state["variance"]))


class RollingRank:
    """Percentile rank of a value within the last ``window`` values of a series.

    ``rank(x)`` is (count below + half the count equal) / n over the history, in
    [0, 1]; ``push(x)`` then adds ``x`` and evicts the oldest value. O(log n) search,
    O(n) memmove insert, which beats a tree for windows of a few thousand.
    """

    __slots__ = ("_fifo", "_sorted", "window")

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = window
        self._fifo: deque[float] = deque()
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._fifo)

    def rank(self, x: float) -> float:
        n = len(self._sorted)
        if n == 0:
            return 0.5
        below = bisect_left(self._sorted, x)
        equal = bisect_right(self._sorted, x, lo=below) - below
        return (below + 0.5 * equal) / n

    def push(self, x: float) -> None:
        self._fifo.append(x)
        insort(self._sorted, x)
        if len(self._fifo) > self.window:
            old = self._fifo.popleft()
            del self._sorted[bisect_left(self._sorted, old)]

    def rank_push(self, x: float) -> float:
        """``rank(x)`` followed by ``push(x)``, sharing the binary searches."""
        values = self._sorted
        n = len(values)
        below = bisect_left(values, x)
        above = bisect_right(values, x, lo=below)
        rank = (below + 0.5 * (above - below)) / n if n else 0.5
        fifo = self._fifo
        fifo.append(x)
        values.insert(above, x)  # where insort (bisect_right) puts it
        if len(fifo) > self.window:
            del values[bisect_left(values, fifo.popleft())]
        return rank

    def snapshot(self) -> dict[str, Any]:
        return {"window": self.window, "values": list(self._fifo)}

    @classmethod
    def restore(cls, state: dict[str, Any]) -> RollingRank:
        ranker = cls(int(state["window"]))
        for x in state["values"]:
            ranker.push(float(x))
        return ranker
