"""Average pairwise correlation of the symbols' returns over a sliding window of timestamps.

The window is kept as a matrix (rows: timestamps in arrival order, columns: symbols in
sorted order, NaN where a symbol did not report), written one row per timestamp.
Reading the average then costs one vectorised pass over a ``window x symbols`` block
instead of rebuilding that block from per-timestamp dicts, and it is evaluated on
exactly the block the dict form gives (same rows, same column order, same memory
order, same float operations), so the value is bit-for-bit the same.
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np
import numpy.typing as npt

FloatMatrix = npt.NDArray[np.float64]


class CorrelationWindow:
    """The last ``window`` cross-sections (symbol -> finite return); see the module docstring.

    A symbol missing at a timestamp is NaN in its row (returns are finite, so NaN
    marks absence only).
    """

    __slots__ = ("_end", "_names", "_start", "_values", "window")

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = window
        self._names: list[str] = []
        # Twice the window: rows are appended until the end, then the live ones move to the top.
        self._values: FloatMatrix = np.zeros((2 * window, 0))
        self._start = 0
        self._end = 0

    def __len__(self) -> int:
        return self._end - self._start

    def push(self, row: dict[str, float]) -> None:
        """Append one timestamp's returns, evicting the oldest row of a full window."""
        names = self._names
        if list(row) == names:  # the usual row: the same symbols, reported in sorted order
            line = list(row.values())
        elif len(row) != len(names) or any(name not in row for name in names):
            if any(name not in names for name in row):
                self._add_columns(row)
                names = self._names
            line = [row.get(name, math.nan) for name in names]
        else:
            line = [row[name] for name in names]
        values = self._values
        if self._end == len(values):
            keep = min(len(self), self.window - 1)
            values[:keep] = values[self._end - keep : self._end]
            self._start, self._end = 0, keep
        elif len(self) == self.window:
            self._start += 1
        values[self._end] = line
        self._end += 1

    def _add_columns(self, row: dict[str, float]) -> None:
        """Re-lay the columns out for the new names (dropping names absent from the whole window)."""
        live = cast("list[bool]", (~np.isnan(self._values[self._start : self._end])).any(axis=0).tolist())
        old = {name: j for j, name in enumerate(self._names)}
        names = sorted({n for n, keep in zip(self._names, live, strict=True) if keep} | set(row))
        values = np.full((len(self._values), len(names)), math.nan)
        for j, name in enumerate(names):
            if name in old:
                values[:, j] = self._values[:, old[name]]
        self._names, self._values = names, values

    def average(self) -> float:
        """Mean pairwise correlation over a full window among symbols present in every row (NaN if < 2).

        Symbols with zero variance over the window are left out.
        """
        if len(self) < self.window or len(self._names) < 2:
            return math.nan
        block = self._values[self._start : self._end]
        always = ~np.isnan(block).any(axis=0)
        if int(always.sum()) < 2:
            return math.nan
        # A C-ordered copy like the dict form's np.array: the reductions below round by memory order.
        m = np.ascontiguousarray(block[:, always])
        m -= m.mean(axis=0)
        sd = np.sqrt((m * m).sum(axis=0))
        live = sd > 0.0
        n = int(live.sum())
        if n < 2:
            return math.nan
        z = m[:, live] / sd[live]
        total = float((z.sum(axis=1) ** 2).sum())  # = sum of all pairwise correlations, diagonal included
        return (total - n) / (n * (n - 1))

    def rows(self) -> list[dict[str, float]]:
        """The window as one dict (symbol -> return, by name) per timestamp, oldest first."""
        names = self._names
        return [
            {name: v for name, v in zip(names, line, strict=True) if not math.isnan(v)}
            for line in self._values[self._start : self._end].tolist()
        ]
