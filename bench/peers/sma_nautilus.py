"""The benchmark rule in NautilusTrader: ``python sma_nautilus.py BARS.npz`` prints the run as JSON.

A Python ``Strategy`` with Nautilus' own ``SimpleMovingAverage`` indicators and the shared
:class:`common.CrossoverRule`, on a cash equity account with no fees, bar execution on one venue.

Fill price: Nautilus sends a bar's open, high, low and close to its matching engine before the
strategy sees the bar, so a market order sent from ``on_bar`` fills at once at that bar's close
(with a latency model it fills only after the next bar's close, a bar late). The benchmark's
synthetic bars open at the previous close, so that close *is* the next bar's open, the rule's fill
price; the fill is booked to the next bar. The benchmark checks every trade against the reference.
"""

from __future__ import annotations

import sys
import time

import nautilus_trader
import pandas as pd
from common import DECIMALS, FAST, INITIAL_CASH, QUANTITY, SLOW, CrossoverRule, emit, load
from nautilus_trader.backtest.engine import BacktestEngine
from nautilus_trader.backtest.models import FillModel
from nautilus_trader.config import BacktestEngineConfig, LoggingConfig, StrategyConfig
from nautilus_trader.indicators import SimpleMovingAverage
from nautilus_trader.model.currencies import USD
from nautilus_trader.model.data import Bar, BarType
from nautilus_trader.model.enums import AccountType, OmsType, OrderSide
from nautilus_trader.model.events import OrderFilled
from nautilus_trader.model.identifiers import InstrumentId, Symbol, Venue
from nautilus_trader.model.instruments import Equity
from nautilus_trader.model.objects import Money, Price, Quantity
from nautilus_trader.persistence.wranglers import BarDataWrangler
from nautilus_trader.trading.strategy import Strategy

VENUE = "XNAS"


def instrument() -> Equity:
    """A US equity quoted to the bar file's precision (Nautilus rounds every price to the instrument's)."""
    return Equity(
        instrument_id=InstrumentId(symbol=Symbol("SYN"), venue=Venue(VENUE)), raw_symbol=Symbol("SYN"), currency=USD,
        price_precision=DECIMALS, price_increment=Price.from_str(f"{10.0 ** -DECIMALS:.{DECIMALS}f}"),
        lot_size=Quantity.from_int(1), ts_event=0, ts_init=0,
    )


class SmaCrossConfig(StrategyConfig, frozen=True):
    bar_type: str
    total_bars: int


class SmaCross(Strategy):  # type: ignore[misc]
    def __init__(self, config: SmaCrossConfig) -> None:
        super().__init__(config)
        self.bar_type = BarType.from_str(config.bar_type)
        self.fast = SimpleMovingAverage(FAST)
        self.slow = SimpleMovingAverage(SLOW)
        self.rule = CrossoverRule()
        self.bar = -1
        self.position_units = 0.0
        self.trades: list[list[float]] = []
        self.signal_bars: dict[str, int] = {}

    def on_start(self) -> None:
        self.instrument = self.cache.instrument(self.bar_type.instrument_id)
        self.register_indicator_for_bars(self.bar_type, self.fast)
        self.register_indicator_for_bars(self.bar_type, self.slow)
        self.subscribe_bars(self.bar_type)

    def on_bar(self, bar: Bar) -> None:
        self.bar += 1
        if not self.slow.initialized:
            return
        long = self.rule.update(self.fast.value, self.slow.value)
        want = QUANTITY if long else 0.0
        if want != self.position_units and self.bar + 1 < self.config.total_bars:
            delta = want - self.position_units
            self.position_units = want
            order = self.order_factory.market(
                instrument_id=self.bar_type.instrument_id,
                order_side=OrderSide.BUY if delta > 0 else OrderSide.SELL,
                quantity=Quantity.from_int(int(abs(delta))),
            )
            self.signal_bars[order.client_order_id.value] = self.bar
            self.submit_order(order)

    def on_order_filled(self, event: OrderFilled) -> None:
        signal_bar = self.signal_bars[event.client_order_id.value]
        sign = 1.0 if event.order_side == OrderSide.BUY else -1.0
        self.trades.append([signal_bar, signal_bar + 1, sign * float(event.last_qty), float(event.last_px)])


def main(path: str) -> None:
    bars = load(path)
    engine = BacktestEngine(BacktestEngineConfig(logging=LoggingConfig(bypass_logging=True)))
    engine.add_venue(
        venue=Venue(VENUE), oms_type=OmsType.NETTING, account_type=AccountType.CASH, base_currency=USD,
        starting_balances=[Money(INITIAL_CASH, USD)], fill_model=FillModel(),
    )
    equity = instrument()
    engine.add_instrument(equity)
    bar_type = BarType.from_str(f"{equity.id}-1-MINUTE-LAST-EXTERNAL")
    frame = pd.DataFrame({"open": bars.open, "high": bars.high, "low": bars.low, "close": bars.close,
                          "volume": bars.volume}, index=pd.to_datetime(bars.ts, unit="ns", utc=True))
    engine.add_data(BarDataWrangler(bar_type, equity).process(frame))
    strategy = SmaCross(SmaCrossConfig(bar_type=str(bar_type), total_bars=len(bars)))
    engine.add_strategy(strategy)
    started = time.perf_counter()
    engine.run()
    seconds = time.perf_counter() - started
    emit("nautilus_trader", nautilus_trader.__version__, len(bars), seconds, strategy.trades)
    engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1])
