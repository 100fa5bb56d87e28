"""Sliding-window mean and variance for per-bar hot paths (the regime detector, strategies).

:class:`SlidingMoments` is the single-series core of the streaming ``Sma`` /
``RollingStd`` / ``ZScore`` of :mod:`ata.quant.indicators` (sliding Welford updates,
exact zeros on constant windows, a two-pass resync every ``window`` full updates),
with the same operations in the same order, so every value is bit-for-bit the one
those indicators give. It drops what they carry for two-series use (a second series,
co-moments) and their per-call validation; callers check their inputs once per bar
instead (values must be finite). Its snapshots are those of the indicators, so callers'
snapshots stay interchangeable with the indicator-based format.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

#: Indicator kinds a window snapshots as; ``RollingStd`` and ``ZScore`` carry a ``ddof``.
_DDOF_KINDS = frozenset({"RollingStd", "ZScore"})


class SlidingMoments:
    """Mean and spread of the last ``window`` values pushed (see the module docstring)."""

    __slots__ = ("m2", "mean", "run", "since_sync", "window", "xs")

    def __init__(self, window: int) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an integer >= 1, got {window!r}")
        self.window = window
        self.xs: deque[float] = deque(maxlen=window)
        self.mean = 0.0
        self.m2 = 0.0  # sum of squared deviations from the mean
        self.run = 0  # trailing identical values: a constant window has exactly zero spread
        self.since_sync = 0

    def push(self, x: float) -> float:
        """Add ``x`` (evicting the oldest value of a full window); return the window mean, NaN until full."""
        xs = self.xs
        window = self.window
        n = len(xs)
        run = self.run + 1 if n and xs[-1] == x else 1
        mean = self.mean
        m2 = self.m2
        if n == window:
            old = xs[0]
            n -= 1
            if n == 0:
                mean = m2 = 0.0
            else:
                reduced = mean - (old - mean) / n
                m2 -= (old - reduced) * (old - mean)
                mean = reduced
        xs.append(x)
        n += 1
        dx = x - mean
        mean += dx / n
        m2 += dx * (x - mean)
        if run >= n:
            mean, m2 = x, 0.0
        self.run, self.mean, self.m2 = run, mean, m2
        if n != window:
            return math.nan
        since = self.since_sync + 1
        if since < window:
            self.since_sync = since
            return mean
        self._resync()
        return self.mean

    def _resync(self) -> None:
        """Two-pass recomputation from the buffer, discarding accumulated rounding error."""
        xs = self.xs
        self.mean = mean = math.fsum(xs) / len(xs)
        self.m2 = math.fsum((v - mean) * (v - mean) for v in xs)
        self.since_sync = 0

    def std(self) -> float:
        """Sample standard deviation (ddof 1) of a full window, 0 exactly when it is constant; NaN until full."""
        n = len(self.xs)
        if n != self.window:
            return math.nan
        if self.run >= n:
            return 0.0
        return math.sqrt(max(self.m2, 0.0) / (n - 1))

    def zscore(self) -> float:
        """``(latest - mean) / std`` of a full window; NaN until full and where the std is 0."""
        std = self.std()
        if not std > 0.0:
            return math.nan
        return (self.xs[-1] - self.mean) / std

    # -- persistence: the snapshot format of the streaming indicators ---------------------
    def snapshot(self, kind: str) -> dict[str, Any]:
        """State as the indicator ``kind`` (``Sma``, ``RollingStd`` or ``ZScore``) would snapshot it."""
        xs = list(self.xs)
        moments = {
            "kind": "_Moments",
            "version": 1,
            "window": self.window,
            "xs": xs,
            "ys": list(xs),
            "mean_x": self.mean,
            "mean_y": self.mean,
            "cxx": self.m2,
            "cyy": self.m2,
            "cxy": self.m2,
            "run_x": self.run,
            "run_y": self.run,
            "since_sync": self.since_sync,
        }
        state: dict[str, Any] = {"kind": kind, "version": 1}
        if kind in _DDOF_KINDS:
            state["ddof"] = 1
        state["_m"] = moments
        return state

    @classmethod
    def restore(cls, state: dict[str, Any]) -> SlidingMoments:
        """Rebuild from :meth:`snapshot` output (or an ``Sma``/``RollingStd``/``ZScore`` snapshot)."""
        if state.get("version") != 1 or state.get("kind") not in _DDOF_KINDS | {"Sma"} or state.get("ddof", 1) != 1:
            raise ValueError(f"not a single-series window snapshot: kind={state.get('kind')!r}")
        m = state["_m"]
        moments = cls(int(m["window"]))
        moments.xs.extend(float(x) for x in m["xs"])
        moments.mean = float(m["mean_x"])
        moments.m2 = float(m["cxx"])
        moments.run = int(m["run_x"])
        moments.since_sync = int(m["since_sync"])
        return moments


class SlidingRealizedVolatility:
    """Annualised realised volatility ``sqrt(periods_per_year * mean(r^2))`` of the last ``window``
    log returns: the streaming ``RealizedVolatility`` of :mod:`ata.quant.indicators` on
    :class:`SlidingMoments`, bit for bit and with its snapshot format. Prices must be positive and
    finite (not checked here: callers validate their bars once)."""

    __slots__ = ("log_prev", "periods_per_year", "prev_price", "squares")

    def __init__(self, window: int, periods_per_year: float = 252.0) -> None:
        self.squares = SlidingMoments(window)
        self.periods_per_year = float(periods_per_year)
        self.prev_price = math.nan
        self.log_prev = math.nan  # ln(prev_price), kept so each price's log is taken once

    def update(self, price: float) -> float:
        """Add a price; the volatility, NaN until ``window`` returns exist."""
        log_price = math.log(price)
        mean = math.nan
        if not math.isnan(self.prev_price):
            r = log_price - self.log_prev
            mean = self.squares.push(r * r)
        self.prev_price, self.log_prev = price, log_price
        if math.isnan(mean):
            return math.nan
        # Sliding updates can leave a mean of squares a few ulps below zero.
        return math.sqrt(self.periods_per_year * max(mean, 0.0))

    def snapshot(self) -> dict[str, Any]:
        """State as ``RealizedVolatility.snapshot()`` gives it."""
        return {
            "kind": "RealizedVolatility",
            "version": 1,
            "periods_per_year": self.periods_per_year,
            "prev_price": None if math.isnan(self.prev_price) else self.prev_price,
            "_mean_sq": self.squares.snapshot("Sma"),
        }

    @classmethod
    def restore(cls, state: dict[str, Any]) -> SlidingRealizedVolatility:
        """Rebuild from :meth:`snapshot` output (or a ``RealizedVolatility`` snapshot)."""
        if state.get("kind") != "RealizedVolatility" or state.get("version") != 1:
            raise ValueError(f"not a RealizedVolatility v1 snapshot: kind={state.get('kind')!r}")
        squares = SlidingMoments.restore(state["_mean_sq"])
        obj = cls(squares.window, float(state["periods_per_year"]))
        obj.squares = squares
        if state["prev_price"] is not None:
            obj.prev_price = float(state["prev_price"])
            obj.log_prev = math.log(obj.prev_price)
        return obj


class SlidingChannel:
    """Highest high and lowest low of the last ``window`` bars: the streaming ``Donchian`` of
    :mod:`ata.quant.indicators` (exact, same snapshot format) without per-call validation. Two
    monotonic deques of ``(index, value)``: amortised O(1) per bar."""

    __slots__ = ("count", "highs", "lows", "window")

    def __init__(self, window: int) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an integer >= 1, got {window!r}")
        self.window = window
        self.count = 0
        self.highs: deque[tuple[int, float]] = deque()  # values strictly decreasing from the front
        self.lows: deque[tuple[int, float]] = deque()  # values strictly increasing from the front

    def update(self, high: float, low: float) -> tuple[float, float]:
        """Add a bar; ``(upper, lower)`` over the last ``window`` bars, NaNs until that many."""
        i = self.count
        highs, lows = self.highs, self.lows
        while highs and highs[-1][1] <= high:
            highs.pop()
        highs.append((i, high))
        while lows and lows[-1][1] >= low:
            lows.pop()
        lows.append((i, low))
        self.count = i = i + 1
        expired = i - 1 - self.window  # one bar leaves the window per update
        if highs[0][0] <= expired:
            highs.popleft()
        if lows[0][0] <= expired:
            lows.popleft()
        if i < self.window:
            return math.nan, math.nan
        return highs[0][1], lows[0][1]

    def snapshot(self) -> dict[str, Any]:
        """State as ``Donchian.snapshot()`` gives it."""
        def side(sign: int, candidates: deque[tuple[int, float]]) -> dict[str, Any]:
            return {"kind": "_MonotonicExtreme", "version": 1, "window": self.window, "sign": sign,
                    "count": self.count, "candidates": [[i, v] for i, v in candidates]}

        return {"kind": "Donchian", "version": 1, "_upper": side(1, self.highs), "_lower": side(-1, self.lows)}

    @classmethod
    def restore(cls, state: dict[str, Any]) -> SlidingChannel:
        """Rebuild from :meth:`snapshot` output (or a ``Donchian`` snapshot)."""
        if state.get("kind") != "Donchian" or state.get("version") != 1:
            raise ValueError(f"not a Donchian v1 snapshot: kind={state.get('kind')!r}")
        upper, lower = state["_upper"], state["_lower"]
        obj = cls(int(upper["window"]))
        obj.count = int(upper["count"])
        obj.highs.extend((int(i), float(v)) for i, v in upper["candidates"])
        obj.lows.extend((int(i), float(v)) for i, v in lower["candidates"])
        return obj
