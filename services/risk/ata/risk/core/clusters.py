"""Aligned return history across symbols, correlation clusters and betas.

Clusters are single-linkage groups: two symbols share a cluster when a chain of pairwise
correlations at or above the threshold connects them. The correlation matrix uses only
timestamps at which every symbol in it has a return (no look-ahead, no filling).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np


class ReturnsPanel:
    """The last ``window`` bar timestamps, each with the log returns seen at it."""

    def __init__(self, window: int) -> None:
        if window < 2:
            raise ValueError("window must be >= 2")
        self.window = window
        self._rows: OrderedDict[int, dict[str, float]] = OrderedDict()

    def add(self, ts_ns: int, symbol: str, ret: float) -> None:
        row = self._rows.get(ts_ns)
        if row is None:
            row = self._rows[ts_ns] = {}
            while len(self._rows) > self.window:
                self._rows.popitem(last=False)
        row[symbol] = ret

    def matrix(self, symbols: list[str], last: int | None = None) -> np.ndarray:
        """Rows (oldest first) where all ``symbols`` have a return; shape (T, len(symbols))."""
        rows = list(self._rows.values())
        if last is not None:
            rows = rows[-last:]
        data = [[row[s] for s in symbols] for row in rows if all(s in row for s in symbols)]
        return np.asarray(data, dtype=float).reshape(len(data), len(symbols))

    def symbols(self) -> list[str]:
        return sorted({s for row in self._rows.values() for s in row})

    def to_state(self) -> dict[str, Any]:
        return {"window": self.window, "rows": [[ts, row] for ts, row in self._rows.items()]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ReturnsPanel:
        panel = cls(int(state["window"]))
        for ts, row in state["rows"]:
            panel._rows[int(ts)] = {str(s): float(r) for s, r in row.items()}
        return panel


def correlation(returns: np.ndarray) -> np.ndarray:
    """Pearson correlation of the columns; a constant column correlates 0 with the others."""
    n = returns.shape[1]
    if returns.shape[0] < 3:
        return np.eye(n)
    centred = returns - returns.mean(axis=0)
    std = np.sqrt((centred**2).sum(axis=0))
    safe = np.where(std > 0, std, 1.0)
    corr = (centred.T @ centred) / np.outer(safe, safe)
    corr[std == 0, :] = 0.0
    corr[:, std == 0] = 0.0
    np.fill_diagonal(corr, 1.0)
    return np.asarray(np.clip(corr, -1.0, 1.0), dtype=float)


def clusters(corr: np.ndarray, symbols: list[str], threshold: float) -> dict[str, str]:
    """Map each symbol to its cluster's name (the cluster's alphabetically first symbol)."""
    parent = list(range(len(symbols)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(symbols)):
        for j in range(i + 1, len(symbols)):
            if corr[i, j] >= threshold:
                parent[find(i)] = find(j)
    members: dict[int, list[str]] = {}
    for i, s in enumerate(symbols):
        members.setdefault(find(i), []).append(s)
    return {s: min(group) for group in members.values() for s in group}


def mean_pairwise_correlation(corr: np.ndarray) -> float:
    n = corr.shape[0]
    if n < 2:
        return 0.0
    return float((corr.sum() - n) / (n * (n - 1)))


def betas(returns: np.ndarray, index_column: int) -> np.ndarray:
    """OLS beta of every column against ``index_column`` (1 for the index itself)."""
    if returns.shape[0] < 3:
        return np.ones(returns.shape[1])
    centred = returns - returns.mean(axis=0)
    index = centred[:, index_column]
    var = float(index @ index)
    if var <= 0:
        return np.zeros(returns.shape[1])
    return np.asarray((centred.T @ index) / var, dtype=float)
