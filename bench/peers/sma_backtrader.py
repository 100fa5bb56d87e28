"""The benchmark rule in backtrader: ``python sma_backtrader.py BARS.npz`` prints the run as JSON.

backtrader's defaults fill a market order at the next bar's open, which is the rule. Indicators
are backtrader's own ``SMA``; the cross logic is :class:`common.CrossoverRule` so that both peers
and the reference decide identically. ``stdstats=False``: the default observers only feed plots.
"""

from __future__ import annotations

import sys
import time

import backtrader as bt
import pandas as pd
from common import FAST, INITIAL_CASH, QUANTITY, SLOW, CrossoverRule, emit, load


class SmaCross(bt.Strategy):  # type: ignore[misc]
    def __init__(self) -> None:
        self.fast = bt.indicators.SMA(self.data.close, period=FAST)
        self.slow = bt.indicators.SMA(self.data.close, period=SLOW)
        self.rule = CrossoverRule()
        self.trades: list[list[float]] = []
        self.total = self.data.buflen()

    def notify_order(self, order: bt.Order) -> None:
        if order.status == order.Completed:
            fill_bar = len(self) - 1
            self.trades.append([fill_bar - 1, fill_bar, float(order.executed.size), float(order.executed.price)])

    def next(self) -> None:
        long = self.rule.update(self.fast[0], self.slow[0])
        want = QUANTITY if long else 0.0
        have = self.position.size
        if want != have and len(self) < self.total:
            if want > have:
                self.buy(size=want - have)
            else:
                self.sell(size=have - want)


def main(path: str) -> None:
    bars = load(path)
    frame = pd.DataFrame({"open": bars.open, "high": bars.high, "low": bars.low, "close": bars.close,
                          "volume": bars.volume}, index=pd.to_datetime(bars.ts, unit="ns"))
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame))
    cerebro.addstrategy(SmaCross)
    cerebro.broker.setcash(INITIAL_CASH)
    started = time.perf_counter()
    strategy = cerebro.run()[0]
    emit("backtrader", bt.__version__, len(bars), time.perf_counter() - started, strategy.trades)


if __name__ == "__main__":
    main(sys.argv[1])
