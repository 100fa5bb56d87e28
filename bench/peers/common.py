"""What both peer scripts share: the bar file they read and the JSON they print.

The peers run in their own virtual environment (``.venv-bench``), so this module imports nothing
from the project. Input: an ``.npz`` with float arrays ``open``, ``high``, ``low``, ``close``,
``volume`` and int64 ``ts`` (bar close, ns since the epoch), prices rounded to ``DECIMALS`` places
(NautilusTrader keeps prices at an instrument's fixed precision; rounding the file makes every
engine see the same numbers). Output, on stdout: one JSON object
``{"framework", "version", "bars", "seconds", "trades"}`` where ``trades`` lists
``[signal_bar, fill_bar, signed_quantity, price]`` and ``seconds`` is the wall time of the run
itself (engine set-up and data loading excluded where the framework allows).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

import numpy as np

FAST, SLOW, QUANTITY = 10, 30, 100.0
INITIAL_CASH = 1_000_000.0
DECIMALS = 6


@dataclass
class Bars:
    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return int(self.close.shape[0])


def load(path: str) -> Bars:
    with np.load(path) as data:
        return Bars(*(np.asarray(data[k]) for k in ("ts", "open", "high", "low", "close", "volume")))


@dataclass
class CrossoverRule:
    """The benchmark rule, fed one (fast, slow) pair per bar once both averages exist: long after a
    cross above, flat after a cross below; the first pair has no previous one, so it is never a cross."""

    long: bool = False
    prev: tuple[float, float] | None = field(default=None)

    def update(self, fast: float, slow: float) -> bool:
        prev, self.prev = self.prev, (fast, slow)
        if prev is not None:
            if fast > slow and prev[0] <= prev[1]:
                self.long = True
            elif fast < slow and prev[0] >= prev[1]:
                self.long = False
        return self.long


def emit(framework: str, version: str, bars: int, seconds: float, trades: list[list[float]]) -> None:
    json.dump({"framework": framework, "version": version, "bars": bars, "seconds": seconds, "trades": trades},
              sys.stdout)
