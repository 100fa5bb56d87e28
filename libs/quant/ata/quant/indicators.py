"""Technical indicators shared by the services, in two forms that agree with each other.

Vectorised functions take whole NumPy arrays (research, backtest set-up, bulk checks)::

    sma(values, window)                      rolling mean
    ema(values, span=None, *, alpha=None)    exponential moving average
    rolling_std(values, window, ddof=1)      rolling standard deviation
    zscore(values, window, ddof=1)           (x_t - mean_t) / std_t over the window ending at t
    atr(high, low, close, window)            Wilder's average true range
    donchian(high, low, window)              (highest high, lowest low) over the window
    realized_volatility(prices, window, periods_per_year=252)
    rolling_correlation(x, y, window)        Pearson correlation over the window

Streaming classes (``Sma``, ``Ema``, ``RollingStd``, ``ZScore``, ``Atr``, ``Donchian``,
``RealizedVolatility``, ``RollingCorrelation``) consume one observation at a time with
``update(...)``, which returns the current value. They use O(window) memory and O(1) amortised
time per update, and are what service cores use, so a backtest and a live run compute the same
numbers from the same events. Every streaming class has ``value``, ``ready``, ``snapshot()``
(a JSON-serialisable dict without NaN) and ``restore(state)`` (a classmethod); a restored
indicator continues bit-for-bit as the original would have.

Shared contract:

- No look-ahead: output ``t`` depends only on inputs ``0..t``; the window ending at ``t``
  includes observation ``t``. To test a breakout against the *previous* channel, compare the
  current price with the value returned by the previous update.
- Warm-up: outputs are NaN until enough observations arrived (``window`` of them, or
  ``window + 1`` prices for ``realized_volatility``); ``ema`` is defined from the first
  observation (seeded with it, as pandas ``ewm(adjust=False)``).
- Inputs must be finite; NaN or infinity raises ``ValueError`` (fill or drop gaps upstream, the
  market data service quarantines bad bars).
- Degenerate windows: when every value in a window is identical the standard deviation is
  exactly 0, and the z-score and correlation are NaN (undefined), in both forms.
- Streaming and vectorised results agree to floating-point rounding (relative 1e-9 in the
  tests; Donchian channels agree exactly). Streaming rolling moments use sliding Welford updates
  and are re-computed from the window buffer every ``window`` updates, so rounding error never
  accumulates over long runs.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import lfilter

FloatArray = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike

__all__ = [
    "Atr",
    "Donchian",
    "Ema",
    "FloatArray",
    "RealizedVolatility",
    "RollingCorrelation",
    "RollingStd",
    "Sma",
    "StreamingIndicator",
    "ZScore",
    "atr",
    "donchian",
    "ema",
    "log_returns",
    "realized_volatility",
    "rolling_correlation",
    "rolling_std",
    "sma",
    "true_range",
    "zscore",
]

# Rows of sliding windows materialised at once; bounds memory to ~_CHUNK * window floats.
_CHUNK = 1 << 15


# ----------------------------------------------------------------------------- validation


def _as_series(values: ArrayLike, name: str = "values") -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (no NaN or infinity)")
    return arr


def _check_window(window: int, minimum: int = 1) -> int:
    if isinstance(window, bool) or not isinstance(window, int) or window < minimum:
        raise ValueError(f"window must be an integer >= {minimum}, got {window!r}")
    return window


def _finite(*values: float) -> tuple[float, ...]:
    """The inputs as Python floats (NumPy scalars make the arithmetic several times slower)."""
    for v in values:
        if not math.isfinite(v):
            raise ValueError(f"indicator input must be finite, got {v!r}")
    return tuple(map(float, values))


def _ema_alpha(span: float | None, alpha: float | None) -> float:
    if (span is None) == (alpha is None):
        raise ValueError("give exactly one of span or alpha")
    if span is not None:
        if span < 1:
            raise ValueError(f"span must be >= 1, got {span!r}")
        return 2.0 / (span + 1.0)
    assert alpha is not None
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
    return alpha


# ----------------------------------------------------------------------------- vectorised


def _rolling(values: FloatArray, window: int, reducer: Callable[[FloatArray], FloatArray]) -> FloatArray:
    """Apply ``reducer`` to every full window (rows of a 2-D view); NaN before the first one."""
    out = np.full(values.shape[0], np.nan)
    if values.shape[0] < window:
        return out
    view = sliding_window_view(values, window)
    for start in range(0, view.shape[0], _CHUNK):
        block = view[start : start + _CHUNK]
        out[start + window - 1 : start + window - 1 + block.shape[0]] = reducer(block)
    return out


def _window_var(block: FloatArray, ddof: int) -> FloatArray:
    """Two-pass variance per row; exactly 0 for constant rows (max == min)."""
    dev = block - block.mean(axis=1, keepdims=True)
    var = np.einsum("ij,ij->i", dev, dev) / (block.shape[1] - ddof)
    var[block.max(axis=1) == block.min(axis=1)] = 0.0
    return np.asarray(var, dtype=np.float64)


def sma(values: ArrayLike, window: int) -> FloatArray:
    """Simple moving average over the last ``window`` observations (NaN during warm-up)."""
    _check_window(window)
    return _rolling(_as_series(values), window, lambda b: np.asarray(b.mean(axis=1), dtype=np.float64))


def ema(values: ArrayLike, span: float | None = None, *, alpha: float | None = None) -> FloatArray:
    """Exponential moving average ``y_t = a*x_t + (1-a)*y_{t-1}``, ``y_0 = x_0``.

    ``alpha = 2 / (span + 1)`` unless ``alpha`` is given; identical to pandas
    ``Series.ewm(span=..., adjust=False).mean()``.
    """
    a = _ema_alpha(span, alpha)
    x = _as_series(values)
    if x.shape[0] == 0:
        return x.copy()
    return _recursive_smooth(x, a, x[0], 0)


def _recursive_smooth(x: FloatArray, a: float, seed: float, seed_index: int) -> FloatArray:
    """``y[seed_index] = seed``, then ``y_t = a*x_t + (1-a)*y_{t-1}``; NaN before ``seed_index``."""
    out = np.full(x.shape[0], np.nan)
    out[seed_index] = seed
    tail = x[seed_index + 1 :]
    if tail.shape[0]:
        smoothed, _ = lfilter([a], [1.0, -(1.0 - a)], tail, zi=[(1.0 - a) * seed])
        out[seed_index + 1 :] = smoothed
    return out


def rolling_std(values: ArrayLike, window: int, ddof: int = 1) -> FloatArray:
    """Rolling standard deviation (``ddof=1``: sample; ``ddof=0``: population)."""
    _check_window(window, ddof + 1)
    return _rolling(_as_series(values), window, lambda b: np.sqrt(_window_var(b, ddof)))


def zscore(values: ArrayLike, window: int, ddof: int = 1) -> FloatArray:
    """``(x_t - mean_t) / std_t`` over the window ending at ``t``; NaN where the std is 0."""
    x = _as_series(values)
    std = rolling_std(x, window, ddof)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (x - sma(x, window)) / std
    z[std == 0.0] = np.nan
    return np.asarray(z, dtype=np.float64)


def true_range(high: ArrayLike, low: ArrayLike, close: ArrayLike) -> FloatArray:
    """``max(h-l, |h-c_prev|, |l-c_prev|)``; the first bar has no previous close, so ``h-l``."""
    h, lo, c = _as_series(high, "high"), _as_series(low, "low"), _as_series(close, "close")
    if not h.shape == lo.shape == c.shape:
        raise ValueError("high, low and close must have the same length")
    tr = h - lo
    if tr.shape[0] > 1:
        prev = c[:-1]
        tr[1:] = np.maximum(tr[1:], np.maximum(np.abs(h[1:] - prev), np.abs(lo[1:] - prev)))
    return tr


def atr(high: ArrayLike, low: ArrayLike, close: ArrayLike, window: int) -> FloatArray:
    """Wilder's average true range: the mean of the first ``window`` true ranges (at index
    ``window - 1``), then ``atr_t = a*tr_t + (1-a)*atr_{t-1}`` with ``a = 1/window``."""
    _check_window(window)
    tr = true_range(high, low, close)
    if tr.shape[0] < window:
        return np.full(tr.shape[0], np.nan)
    return _recursive_smooth(tr, 1.0 / window, math.fsum(tr[:window].tolist()) / window, window - 1)


def donchian(high: ArrayLike, low: ArrayLike, window: int) -> tuple[FloatArray, FloatArray]:
    """(highest high, lowest low) over the last ``window`` bars, current bar included."""
    _check_window(window)
    h, lo = _as_series(high, "high"), _as_series(low, "low")
    if h.shape != lo.shape:
        raise ValueError("high and low must have the same length")
    upper = _rolling(h, window, lambda b: np.asarray(b.max(axis=1), dtype=np.float64))
    lower = _rolling(lo, window, lambda b: np.asarray(b.min(axis=1), dtype=np.float64))
    return upper, lower


def log_returns(prices: ArrayLike) -> FloatArray:
    """``ln(p_t / p_{t-1})``; one element shorter than ``prices``, which must be positive."""
    p = _as_series(prices, "prices")
    if np.any(p <= 0.0):
        raise ValueError("prices must be positive")
    return np.asarray(np.diff(np.log(p)), dtype=np.float64)


def realized_volatility(prices: ArrayLike, window: int, periods_per_year: float = 252.0) -> FloatArray:
    """Annualised realised volatility ``sqrt(periods_per_year * mean(r^2))`` over the last
    ``window`` log returns (not demeaned, the usual realised-variance convention). Aligned with
    ``prices``: element ``t`` uses returns ending at ``t``; NaN until ``window`` returns exist.
    Pass ``periods_per_year=1`` for per-period volatility."""
    _check_window(window)
    p = _as_series(prices, "prices")
    r = log_returns(p)
    out = np.full(p.shape[0], np.nan)
    if r.shape[0]:
        out[1:] = np.sqrt(periods_per_year * sma(r * r, window))
    return out


def rolling_correlation(x: ArrayLike, y: ArrayLike, window: int) -> FloatArray:
    """Pearson correlation of ``x`` and ``y`` over the last ``window`` pairs; NaN where either
    series is constant over the window."""
    _check_window(window, 2)
    a, b = _as_series(x, "x"), _as_series(y, "y")
    if a.shape != b.shape:
        raise ValueError("x and y must have the same length")
    out = np.full(a.shape[0], np.nan)
    if a.shape[0] < window:
        return out
    va, vb = sliding_window_view(a, window), sliding_window_view(b, window)
    for start in range(0, va.shape[0], _CHUNK):
        ba, bb = va[start : start + _CHUNK], vb[start : start + _CHUNK]
        da = ba - ba.mean(axis=1, keepdims=True)
        db = bb - bb.mean(axis=1, keepdims=True)
        cov = np.einsum("ij,ij->i", da, db)
        var_a, var_b = _window_var(ba, 0), _window_var(bb, 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = np.clip(cov / window / np.sqrt(var_a * var_b), -1.0, 1.0)
        corr[(var_a == 0.0) | (var_b == 0.0)] = np.nan
        out[start + window - 1 : start + window - 1 + corr.shape[0]] = corr
    return out


# ----------------------------------------------------------------------------- streaming


def _nan_to_none(v: float) -> float | None:
    return None if math.isnan(v) else v


def _none_to_nan(v: float | None) -> float:
    return math.nan if v is None else float(v)


class StreamingIndicator:
    """Base of the streaming indicators: snapshot/restore plumbing.

    Subclasses list their state attributes in ``_state`` (floats may be NaN, stored as ``None``;
    deques are stored as lists; everything else must already be JSON-serialisable), nested
    indicators in ``_nested`` (attribute name -> class), and provide ``value`` and ``ready``.
    """

    _state: ClassVar[tuple[str, ...]] = ()
    _nested: ClassVar[dict[str, type[StreamingIndicator]]] = {}

    @property
    def value(self) -> float:
        """The latest output (NaN during warm-up)."""
        raise NotImplementedError

    @property
    def ready(self) -> bool:
        """True once warm-up is over and ``value`` is defined by the window."""
        raise NotImplementedError

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state (no NaN), restorable with ``type(self).restore``."""
        state: dict[str, Any] = {"kind": type(self).__name__, "version": 1}
        for name in self._state:
            v = getattr(self, name)
            state[name] = _nan_to_none(v) if isinstance(v, float) else _copy_json(v)
        for name in self._nested:
            state[name] = getattr(self, name).snapshot()
        return state

    @classmethod
    def restore(cls, state: dict[str, Any]) -> Self:
        """Rebuild an indicator from ``snapshot()`` output."""
        if state.get("kind") != cls.__name__ or state.get("version") != 1:
            raise ValueError(f"not a {cls.__name__} v1 snapshot: kind={state.get('kind')!r} version={state.get('version')!r}")
        obj = cls.__new__(cls)
        for name in cls._state:
            v = state[name]
            setattr(obj, name, _none_to_nan(v) if v is None or isinstance(v, float) else _copy_json(v))
        for name, nested_cls in cls._nested.items():
            setattr(obj, name, nested_cls.restore(state[name]))
        obj._after_restore()
        return obj

    def _after_restore(self) -> None:
        """Hook to rebuild derived attributes (e.g. deques) after ``restore``."""


def _copy_json(v: Any) -> Any:
    if isinstance(v, list | tuple | deque):
        return [_copy_json(i) for i in v]
    return v


class _Moments(StreamingIndicator):
    """Sliding-window means and co-moments of one or two series (Welford add/remove updates).

    ``cxx``, ``cyy``, ``cxy`` are sums of centred products. ``run_x``/``run_y`` count trailing
    identical values so that constant windows give exactly zero (co)variance, like the
    vectorised forms. Every ``window`` full updates the moments are recomputed from the buffer.
    """

    _state = ("window", "xs", "ys", "mean_x", "mean_y", "cxx", "cyy", "cxy", "run_x", "run_y", "since_sync")

    def __init__(self, window: int) -> None:
        self.window = _check_window(window)
        self.xs: deque[float] = deque(maxlen=window)
        self.ys: deque[float] = deque(maxlen=window)
        self.mean_x = self.mean_y = self.cxx = self.cyy = self.cxy = 0.0
        self.run_x = self.run_y = self.since_sync = 0

    def _after_restore(self) -> None:
        self.xs = deque(self.xs, maxlen=self.window)
        self.ys = deque(self.ys, maxlen=self.window)

    @property
    def n(self) -> int:
        return len(self.xs)

    @property
    def ready(self) -> bool:
        return self.n == self.window

    @property
    def value(self) -> float:
        return self.mean_x if self.ready else math.nan

    def push(self, x: float, y: float) -> None:
        x, y = _finite(x, y)
        xs, ys = self.xs, self.ys
        self.run_x = self.run_x + 1 if xs and xs[-1] == x else 1
        self.run_y = self.run_y + 1 if ys and ys[-1] == y else 1
        n = len(xs)
        if n == self.window:
            self._remove(xs[0], ys[0], n)
            n -= 1
        xs.append(x)
        ys.append(y)
        n += 1
        dx = x - self.mean_x
        self.mean_x += dx / n
        my_old = self.mean_y
        self.mean_y += (y - my_old) / n
        self.cxx += dx * (x - self.mean_x)
        self.cyy += (y - my_old) * (y - self.mean_y)
        self.cxy += dx * (y - self.mean_y)
        # A constant window has an exact mean and no spread; pin them so rounding left over from
        # earlier values cannot show (e.g. a mean of squares of -3e-18 after a flat stretch).
        if self.run_x >= n:
            self.mean_x, self.cxx, self.cxy = x, 0.0, 0.0
        if self.run_y >= n:
            self.mean_y, self.cyy, self.cxy = y, 0.0, 0.0
        if n == self.window:
            self.since_sync += 1
            if self.since_sync >= self.window:
                self._resync()

    def _remove(self, xo: float, yo: float, n: int) -> None:
        if n == 1:
            self.mean_x = self.mean_y = self.cxx = self.cyy = self.cxy = 0.0
            return
        mx = self.mean_x - (xo - self.mean_x) / (n - 1)
        my = self.mean_y - (yo - self.mean_y) / (n - 1)
        self.cxx -= (xo - mx) * (xo - self.mean_x)
        self.cyy -= (yo - my) * (yo - self.mean_y)
        self.cxy -= (xo - mx) * (yo - self.mean_y)
        self.mean_x, self.mean_y = mx, my

    def _resync(self) -> None:
        """Two-pass recomputation from the buffer, discarding accumulated rounding error."""
        n = len(self.xs)
        self.mean_x = math.fsum(self.xs) / n
        self.mean_y = math.fsum(self.ys) / n
        dxs = [v - self.mean_x for v in self.xs]
        dys = [v - self.mean_y for v in self.ys]
        self.cxx = math.fsum(d * d for d in dxs)
        self.cyy = math.fsum(d * d for d in dys)
        self.cxy = math.fsum(a * b for a, b in zip(dxs, dys, strict=True))
        self.since_sync = 0

    def var_x(self, ddof: int) -> float:
        """Variance of x over the window (0 exactly when the window is constant)."""
        if self.run_x >= self.n:
            return 0.0
        return max(self.cxx, 0.0) / (self.n - ddof)

    def var_y(self, ddof: int) -> float:
        if self.run_y >= self.n:
            return 0.0
        return max(self.cyy, 0.0) / (self.n - ddof)


class Sma(StreamingIndicator):
    """Streaming simple moving average; ``update(x)`` returns the mean of the last ``window``."""

    _nested = {"_m": _Moments}

    def __init__(self, window: int) -> None:
        self._m = _Moments(window)

    def update(self, x: float) -> float:
        self._m.push(x, x)
        return self.value

    @property
    def ready(self) -> bool:
        return self._m.ready

    @property
    def mean(self) -> float:
        """Mean of the current window (NaN during warm-up)."""
        return self._m.value

    @property
    def value(self) -> float:
        return self.mean


class RollingStd(Sma):
    """Streaming rolling standard deviation (sliding Welford); ``ddof`` as in ``rolling_std``."""

    _state = ("ddof",)

    def __init__(self, window: int, ddof: int = 1) -> None:
        _check_window(window, ddof + 1)
        super().__init__(window)
        self.ddof = ddof

    @property
    def std(self) -> float:
        """Standard deviation of the current window (NaN during warm-up)."""
        return math.sqrt(self._m.var_x(self.ddof)) if self.ready else math.nan

    @property
    def value(self) -> float:
        return self.std


class ZScore(RollingStd):
    """Streaming z-score ``(x_t - mean_t) / std_t``; NaN during warm-up and where the std is 0."""

    @property
    def value(self) -> float:
        std = self.std
        if not std > 0.0:
            return math.nan
        return (self._m.xs[-1] - self.mean) / std


class _Smoothed(StreamingIndicator):
    """Exponential smoothing ``y = a*x + (1-a)*y_prev`` in the same operation order as the
    vectorised ``_recursive_smooth``, so both forms produce identical floats."""

    _value = math.nan

    def _smooth(self, a: float, x: float) -> float:
        self._value = a * x + (1.0 - a) * self._value
        return self._value

    @property
    def ready(self) -> bool:
        return not math.isnan(self._value)

    @property
    def value(self) -> float:
        return self._value


class Ema(_Smoothed):
    """Streaming EMA, identical in definition to ``ema`` (seeded with the first observation)."""

    _state = ("alpha", "_value")

    def __init__(self, span: float | None = None, *, alpha: float | None = None) -> None:
        self.alpha = _ema_alpha(span, alpha)
        self._value = math.nan

    def update(self, x: float) -> float:
        (x,) = _finite(x)
        if not self.ready:
            self._value = x
            return x
        return self._smooth(self.alpha, x)


class Atr(_Smoothed):
    """Streaming Wilder ATR, identical in definition to ``atr``; ``update(high, low, close)``."""

    _state = ("window", "prev_close", "warmup", "_value")

    def __init__(self, window: int) -> None:
        self.window = _check_window(window)
        self.prev_close = math.nan
        self.warmup: list[float] = []
        self._value = math.nan

    def update(self, high: float, low: float, close: float) -> float:
        high, low, close = _finite(high, low, close)
        tr = high - low
        if not math.isnan(self.prev_close):
            tr = max(tr, abs(high - self.prev_close), abs(low - self.prev_close))
        self.prev_close = close
        if self.ready:
            return self._smooth(1.0 / self.window, tr)
        self.warmup.append(tr)
        if len(self.warmup) == self.window:
            self._value = math.fsum(self.warmup) / self.window
            self.warmup = []
        return self._value


class _MonotonicExtreme(StreamingIndicator):
    """Sliding-window maximum (``sign=1``) or minimum (``sign=-1``) with a monotonic deque:
    amortised O(1) per update, exact."""

    _state = ("window", "sign", "count", "candidates")

    def __init__(self, window: int, sign: int) -> None:
        self.window = _check_window(window)
        self.sign = sign
        self.count = 0
        # [index, value] pairs, values strictly decreasing in sign*value order from the front.
        self.candidates: deque[list[float]] = deque()

    def _after_restore(self) -> None:
        self.candidates = deque(self.candidates)

    def push(self, x: float) -> float:
        cand = self.candidates
        key = self.sign * x
        while cand and self.sign * cand[-1][1] <= key:
            cand.pop()
        cand.append([self.count, x])
        self.count += 1
        if cand[0][0] <= self.count - 1 - self.window:
            cand.popleft()
        return self.value

    @property
    def ready(self) -> bool:
        return self.count >= self.window

    @property
    def value(self) -> float:
        return float(self.candidates[0][1]) if self.ready else math.nan


class Donchian(StreamingIndicator):
    """Streaming Donchian channel; ``update(high, low)`` returns ``(upper, lower)``."""

    _nested = {"_upper": _MonotonicExtreme, "_lower": _MonotonicExtreme}

    def __init__(self, window: int) -> None:
        self._upper = _MonotonicExtreme(window, 1)
        self._lower = _MonotonicExtreme(window, -1)

    def update(self, high: float, low: float) -> tuple[float, float]:
        high, low = _finite(high, low)
        return self._upper.push(high), self._lower.push(low)

    @property
    def ready(self) -> bool:
        return self._upper.ready

    @property
    def upper(self) -> float:
        return self._upper.value

    @property
    def lower(self) -> float:
        return self._lower.value

    @property
    def value(self) -> float:
        """Channel mid-point ``(upper + lower) / 2``."""
        return (self.upper + self.lower) / 2.0


class RealizedVolatility(StreamingIndicator):
    """Streaming annualised realised volatility, as ``realized_volatility``; ``update(price)``."""

    _state = ("periods_per_year", "prev_price")
    _nested = {"_mean_sq": Sma}

    def __init__(self, window: int, periods_per_year: float = 252.0) -> None:
        self._mean_sq = Sma(window)
        self.periods_per_year = float(periods_per_year)
        self.prev_price = math.nan

    def update(self, price: float) -> float:
        (price,) = _finite(price)
        if price <= 0.0:
            raise ValueError(f"price must be positive, got {price!r}")
        if not math.isnan(self.prev_price):
            r = math.log(price) - math.log(self.prev_price)
            self._mean_sq.update(r * r)
        self.prev_price = price
        return self.value

    @property
    def ready(self) -> bool:
        return self._mean_sq.ready

    @property
    def value(self) -> float:
        # Sliding updates can leave a mean of squares a few ulps below zero.
        return math.sqrt(self.periods_per_year * max(self._mean_sq.value, 0.0)) if self.ready else math.nan


class RollingCorrelation(StreamingIndicator):
    """Streaming Pearson correlation over the last ``window`` pairs; ``update(x, y)``."""

    _nested = {"_m": _Moments}

    def __init__(self, window: int) -> None:
        _check_window(window, 2)
        self._m = _Moments(window)

    def update(self, x: float, y: float) -> float:
        self._m.push(x, y)
        return self.value

    @property
    def ready(self) -> bool:
        return self._m.ready

    @property
    def value(self) -> float:
        m = self._m
        if not m.ready:
            return math.nan
        if m.var_x(0) == 0.0 or m.var_y(0) == 0.0:
            return math.nan
        # Two passes over the window, not the running co-moment: after a large value has left
        # the window, the running sums cancel catastrophically on a nearly constant window.
        xs, ys, n = m.xs, m.ys, len(m.xs)
        mx, my = math.fsum(xs) / n, math.fsum(ys) / n
        sxy = sxx = syy = 0.0
        for x, y in zip(xs, ys, strict=True):
            dx, dy = x - mx, y - my
            sxy += dx * dy
            sxx += dx * dx
            syy += dy * dy
        if sxx == 0.0 or syy == 0.0:
            return math.nan
        return min(1.0, max(-1.0, sxy / math.sqrt(sxx * syy)))
