"""Vectorised screens for the batch path of :meth:`IntegrityChecker.process_batch`. Pure numpy.

Each function answers, for a run of one symbol's bars, "would the per-record checker report
nothing here?" with exactly the per-record arithmetic (the same IEEE operations in the same
order), so a row it passes is a row the per-record path passes. Anything that needs a closer
look (a candidate spike) is handed back to the per-record code rather than re-implemented.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import maximum_filter1d, minimum_filter1d

from ata.marketdata.core.records import F64, I64

Mask = npt.NDArray[np.bool_]


def order_gap_value_ok(ts_open: I64, ts_close: I64, values: tuple[F64, F64, F64, F64, F64], *, last_ts_open: int,
                       missing: I64 | None) -> Mask:
    """Per row: strictly after the previous bar, no gap, finite and positive prices and volume, consistent OHLC.

    ``missing`` is the number of bar slots skipped before each row (``None`` when gaps are not
    checked). Zero volume fails too: the per-record path reports it (info).
    """
    o, h, low, c, v = values
    previous = np.concatenate(([last_ts_open], ts_open[:-1]))
    ok: Mask = ts_open > previous
    ok &= (ts_open >= 0) & (ts_open <= ts_close)
    ok &= np.isfinite(o + h + low + c + v)  # the per-record test sums in this order: an overflow is "non-finite" there too
    ok &= (np.minimum(np.minimum(o, h), np.minimum(low, c)) > 0) & (v > 0)
    ok &= (low <= np.minimum(o, c)) & (h >= np.maximum(o, c))
    if missing is not None:
        ok &= missing <= 0
    return ok


def missing_slots(slots: I64, last_slot: int | None) -> I64:
    """Bar slots skipped before each row given calendar slots (``-1``: outside every session)."""
    previous = np.concatenate(([-1 if last_slot is None else last_slot], slots[:-1]))
    missing: I64 = np.where((slots >= 0) & (previous >= 0), slots - previous - 1, 0)
    return missing


def missing_by_time(ts_open: I64, last_ts_open: int, bar_ns: int) -> I64:
    """Bar slots skipped before each row by plain time arithmetic (no calendar)."""
    previous = np.concatenate(([last_ts_open], ts_open[:-1]))
    missing: I64 = (ts_open - previous) // bar_ns - 1
    return missing


def log_returns(close: F64, reference: float) -> list[float]:
    """``log(close_i / close_{i-1})`` with ``reference`` before the first row, by :func:`math.log` (numpy's log
    may differ in the last bit, and these values enter the state and the evidence)."""
    previous = np.concatenate(([reference], close[:-1]))
    return list(map(math.log, (close / previous).tolist()))


class RollingWindows:
    """The spike windows of a clean run: row ``i`` is judged against the ``window`` returns before it.

    ``history`` is the symbol's current (full) window and ``returns`` the run's own returns, so
    the window of row ``i`` is ``(history + returns)[i : i + window]``.
    """

    def __init__(self, history: list[float], returns: list[float], window: int) -> None:
        self._all: F64 = np.asarray(history + returns, dtype=np.float64)
        self._returns: F64 = self._all[len(history):]
        self.window = window
        self.values: F64 = sliding_window_view(self._all, window)[: len(returns)]

    def medians(self, rows: I64) -> F64:
        """The median of the window of each of ``rows`` (the per-record ``_median`` arithmetic)."""
        n = self.window
        middle = [n // 2] if n % 2 else [n // 2 - 1, n // 2]
        parted = np.partition(self.values[rows], middle, axis=1)
        median: F64 = parted[:, n // 2] if n % 2 else 0.5 * (parted[:, n // 2 - 1] + parted[:, n // 2])
        return median

    def beyond(self, threshold: float) -> tuple[list[int], list[float]]:
        """Rows whose return lies more than ``threshold`` from their window's median, with those medians.

        The exact median (a partition per row) is computed only for rows that the window's minimum
        and maximum, found in O(rows) by running filters, cannot clear: the median lies in
        ``[min, max]`` (for an even window ``0.5 * (a + b)`` of two members too, rounding being
        monotonic), so ``r - min <= t`` and ``max - r <= t`` imply ``|r - median| <= t`` with the
        same rounded subtractions.
        """
        n, count = self.window, len(self._returns)
        low = minimum_filter1d(self._all, n, origin=-(n // 2))[:count]
        high = maximum_filter1d(self._all, n, origin=-(n // 2))[:count]
        returns = self._returns
        maybe = np.flatnonzero((returns - low > threshold) | (high - returns > threshold))
        if not len(maybe):
            return [], []
        medians = self.medians(maybe)
        hit = np.abs(returns[maybe] - medians) > threshold
        return maybe[hit].tolist(), medians[hit].tolist()

    def sorted_window(self, i: int) -> list[float]:
        return np.sort(self.values[i]).tolist()  # type: ignore[no-any-return]
