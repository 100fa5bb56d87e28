"""The fast path: a strategy with a vectorised form, one symbol, market orders at the next open, no costs.

What it does, exactly: the strategy's ``target_quantities(close)`` gives the desired position after
every bar in one numpy pass. Orders exist only where that path changes; each is a market order
for the difference, sent at bar ``t``'s close and filled at bar ``t + 1``'s open (an order at the
last bar stays unfilled). Only those trade bars go through a Python loop, which books each fill
with :class:`ata.quant.accounting.Portfolio` (average cost, realised P&L) and records the trade. The
equity curve (cash plus position at each close) is built with numpy from the fills. No events, no
bus, no risk checks, no regime: this is the rule's arithmetic at numpy speed, the ceiling the full
pipeline (:mod:`ata.backtest.engine`) is measured against. Its trades are checked against a plain
per-bar loop of the same rule (``tests/test_backtest_fast.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from ata.quant.accounting import Portfolio

FloatArray = npt.NDArray[np.float64]


class VectorisedStrategy(Protocol):
    def target_quantities(self, close: FloatArray) -> FloatArray: ...


@dataclass(frozen=True, slots=True)
class Trade:
    """One fill: the order was sent at bar ``signal_bar``'s close and filled at ``fill_bar``'s open."""

    signal_bar: int
    fill_bar: int
    quantity: float  # signed
    price: float
    realized_pnl: float


@dataclass
class FastResult:
    trades: list[Trade]
    equity: FloatArray
    position: FloatArray
    cash: float


def run_fast(strategy: VectorisedStrategy, open_: FloatArray, close: FloatArray, initial_cash: float = 1_000_000.0,
             symbol: str = "SYM") -> FastResult:
    """Run ``strategy`` over one symbol's bars (see the module docstring)."""
    n = close.shape[0]
    desired = np.asarray(strategy.target_quantities(close), dtype=np.float64)
    delta = np.diff(desired, prepend=0.0)
    signal_bars = np.flatnonzero(delta[: n - 1])
    portfolio = Portfolio(initial_cash)
    trades: list[Trade] = []
    fill_bars = signal_bars + 1
    prices = open_[fill_bars].tolist()
    quantities = delta[signal_bars].tolist()
    for t, fill_bar, qty, price in zip(signal_bars.tolist(), fill_bars.tolist(), quantities, prices, strict=True):
        trades.append(Trade(t, fill_bar, qty, price, portfolio.apply_fill(symbol, qty, price)))
    flows = np.zeros(n)
    np.add.at(flows, fill_bars, -delta[signal_bars] * open_[fill_bars])
    position = np.zeros(n)
    np.add.at(position, fill_bars, delta[signal_bars])
    position = np.cumsum(position)
    equity = initial_cash + np.cumsum(flows) + position * close
    return FastResult(trades, equity, position, portfolio.cash)
