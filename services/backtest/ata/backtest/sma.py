"""The benchmark rule as a strategy with two forms: long-only SMA fast/slow crossover on close.

Rule: when the fast SMA crosses above the slow one (``fast_t > slow_t`` and
``fast_{t-1} <= slow_{t-1}``) go long; when it crosses below (``fast_t < slow_t`` and
``fast_{t-1} >= slow_{t-1}``) go flat; otherwise keep the state. The first bar with both averages
defined has no previous pair, so it is never a cross.

- Event form (:class:`SmaCrossover`): a :class:`~ata.strategy.core.strategies.Strategy` for the
  strategy core (strength 1 while long, 0 while flat), so the full pipeline can run the rule.
- Vectorised form (:meth:`SmaCrossover.target_quantities`): the whole state path from a close
  array in numpy, which :mod:`ata.backtest.fast` uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from ata.quant.indicators import Sma, sma
from ata.strategy.core.strategies import Bar, MarketContext, Signal, Strategy, StrategyParams

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SmaCrossParams(StrategyParams):
    fast: int = 10
    slow: int = 30
    quantity: float = 100.0

    LOOKBACKS: ClassVar[tuple[str, ...]] = ("fast", "slow")

    def validate(self) -> None:
        if not self.fast < self.slow:
            raise ValueError("sma_cross needs fast < slow")


def crossover_states(close: FloatArray, fast: int, slow: int) -> npt.NDArray[np.bool_]:
    """Long (True) or flat after each bar's close, by the module's rule, vectorised."""
    f, s = sma(close, fast), sma(close, slow)
    prev_f, prev_s = np.roll(f, 1), np.roll(s, 1)
    prev_f[0] = prev_s[0] = np.nan  # comparisons with NaN are False: no cross without a previous pair
    up = (f > s) & (prev_f <= prev_s)
    down = (f < s) & (prev_f >= prev_s)
    index = np.where(up | down, np.arange(close.shape[0]), -1)
    np.maximum.accumulate(index, out=index)
    return np.where(index >= 0, up[np.maximum(index, 0)], False)


class SmaCrossover(Strategy):
    name = "sma_cross"
    description = "benchmark rule: long-only fast/slow SMA crossover on close"
    params_type = SmaCrossParams
    _indicators = ("_fast", "_slow")
    _state = ("_prev", "_long")
    params: SmaCrossParams

    def __init__(self, params: SmaCrossParams | None = None) -> None:
        super().__init__(params)
        self._fast = Sma(self.params.fast)
        self._slow = Sma(self.params.slow)
        self._prev: list[float] | None = None
        self._long = False

    def update(self, bar: Bar, context: MarketContext) -> Signal | None:
        f, s = self._fast.update(bar.close), self._slow.update(bar.close)
        if math.isnan(s):
            return None
        prev, self._prev = self._prev, [f, s]
        if prev is not None:
            if f > s and prev[0] <= prev[1]:
                self._long = True
            elif f < s and prev[0] >= prev[1]:
                self._long = False
        return self._signal(1.0 if self._long else 0.0, self.params.fast)

    def target_quantities(self, close: FloatArray) -> FloatArray:
        """Desired position (units) after each bar's close."""
        states = crossover_states(close, self.params.fast, self.params.slow)
        return np.where(states, self.params.quantity, 0.0)


def reference_trades(open_: FloatArray, close: FloatArray, *, fast: int = 10, slow: int = 30, qty: float = 100.0,
                     initial_cash: float = 1_000_000.0) -> tuple[list[tuple[int, int, float, float]], FloatArray]:
    """The rule written out bar by bar, independently of both forms: windows summed directly, a market
    order at a close filled at the next open. Returns ``(signal bar, fill bar, signed qty, price)`` per
    trade and the equity at each close. The reference the fast path and the benchmark are checked against."""
    trades: list[tuple[int, int, float, float]] = []
    long = False
    prev: tuple[float, float] | None = None
    position = 0.0
    pending: float | None = None
    cash = initial_cash
    equity: list[float] = []
    for t in range(close.shape[0]):
        if pending is not None:  # the order sent at the previous close fills at this open
            position += pending
            cash -= pending * open_[t]
            trades.append((t - 1, t, pending, float(open_[t])))
            pending: float | None = None
        if t + 1 >= slow:
            f = float(close[t + 1 - fast : t + 1].sum()) / fast
            s = float(close[t + 1 - slow : t + 1].sum()) / slow
            if prev is not None:
                if f > s and prev[0] <= prev[1]:
                    long = True
                elif f < s and prev[0] >= prev[1]:
                    long = False
            prev = (f, s)
        want = qty if long else 0.0
        if want != position and t + 1 < close.shape[0]:
            pending = want - position
        equity.append(float(cash + position * close[t]))
    return trades, np.asarray(equity, dtype=np.float64)
