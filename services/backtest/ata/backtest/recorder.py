"""Portfolio accounting and the run's records: equity curve, positions, trades, regimes, attribution.

The recorder subscribes like any service (bars, fills, order commands, targets, regime states,
risk decisions) and books fills with :class:`ata.quant.accounting.Portfolio`, marked at each
bar's close. It samples once per bar time — when the first bar of a later time arrives, i.e.
after every consequence of the previous bars (orders, fills) has been delivered — and at the end.

Per-strategy attribution: per symbol and sample, the change of the symbol's P&L (realised plus
unrealised, net of fees; the symbol deltas sum exactly to the equity change) is split over the
strategies in proportion to their terms ``weight_i * strength_i`` of the target in force (the
meta-strategy guarantees these terms sum to the target). P&L of a symbol with no target in force,
or a zero one, is booked as ``unattributed``. It is an approximation: it ignores that risk sizes
the target (scaling every term alike) and that fills lag the target by a bar.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ata.events import (
    MARKET_KEY,
    BarClosed,
    FillReported,
    Message,
    OrderDenied,
    RegimeStateUpdated,
    SubmitOrder,
    TargetProposed,
)
from ata.quant.accounting import Portfolio

UNATTRIBUTED = "unattributed"
TOPICS = ("market.bars.v1", "orders.fills.v1", "orders.commands.v1", "strategy.targets.v1", "regime.states.v1",
          "risk.decisions.v1")


@dataclass
class Records:
    """What a run produced, in plain arrays and rows (see :class:`Recorder`)."""

    timestamps: npt.NDArray[np.int64]
    equity: npt.NDArray[np.float64]
    symbols: list[str]
    positions: npt.NDArray[np.float64]  # market value per sample and symbol
    regimes: list[str]
    fills: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    trade_pnls: list[float]
    attribution: dict[str, float]
    attribution_by_regime: dict[str, dict[str, float]]
    denials: dict[str, int]
    bars: int
    initial_cash: float
    messages: dict[str, int] = field(default_factory=dict)


class Recorder:
    name = "recorder"
    topics = TOPICS

    def __init__(self, initial_cash: float) -> None:
        self.initial_cash = initial_cash
        self.portfolio = Portfolio(initial_cash)
        self.bars = 0
        self._ts: list[int] = []
        self._equity: list[float] = []
        self._values: list[dict[str, float]] = []
        self._regimes: list[str] = []
        self._current_ts: int | None = None
        self._close: dict[str, float] = {}
        self._regime: dict[str, str] = {}
        self._shares: dict[str, dict[str, float]] = {}  # symbol -> strategy -> share of the target
        self._pnl_seen: dict[str, float] = {}
        self._trade_open: dict[str, float] = {}
        self.trade_pnls: list[float] = []
        self.attribution: defaultdict[str, float] = defaultdict(float)
        self.by_regime: defaultdict[str, defaultdict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.fills: list[dict[str, Any]] = []
        self.orders: list[dict[str, Any]] = []
        self.denials: Counter[str] = Counter()

    async def start(self) -> list[Message]:
        return []

    async def handle(self, message: Message) -> Sequence[Message]:
        if isinstance(message, BarClosed):
            self._on_bar(message)
        elif isinstance(message, FillReported):
            self._on_fill(message)
        elif isinstance(message, TargetProposed):
            self._on_target(message)
        elif isinstance(message, RegimeStateUpdated):
            self._regime[message.symbol] = message.confirmed_label.value
        elif isinstance(message, SubmitOrder):
            self.orders.append({"ts": message.ts_event, "client_order_id": message.client_order_id, "symbol": message.symbol,
                                "side": message.side.value, "quantity": message.quantity, "reason": message.reason})
        elif isinstance(message, OrderDenied):
            self.denials[message.reason.value] += 1
        return ()

    def _on_bar(self, bar: BarClosed) -> None:
        if self._current_ts is not None and bar.ts_event > self._current_ts:
            self._sample()
        if self._current_ts is None or bar.ts_event > self._current_ts:
            self._current_ts = bar.ts_event
        self.bars += 1
        self._close[bar.symbol] = bar.close
        self.portfolio.mark(bar.symbol, bar.close)

    def _on_fill(self, fill: FillReported) -> None:
        signed = fill.quantity * fill.side.sign
        before = self.portfolio.quantity(fill.symbol)
        pnl_before = self._symbol_pnl(fill.symbol)
        self.portfolio.apply_fill(fill.symbol, signed, fill.price, fill.fee)
        close = self._close.get(fill.symbol)
        if close is not None:
            self.portfolio.mark(fill.symbol, close)  # a fill marks at its price; value the book at the close again
        after = self.portfolio.quantity(fill.symbol)
        self._book_trade(fill.symbol, before, after, pnl_before)
        self.fills.append({"ts": fill.ts_event, "client_order_id": fill.client_order_id, "fill_id": fill.fill_id,
                           "symbol": fill.symbol, "side": fill.side.value, "quantity": fill.quantity, "price": fill.price,
                           "fee": fill.fee})

    def _symbol_pnl(self, symbol: str) -> float:
        position = self.portfolio.positions.get(symbol)
        if position is None:
            return 0.0
        return position.realized_pnl + position.unrealized_pnl - position.fees

    def _book_trade(self, symbol: str, before: float, after: float, pnl_before: float) -> None:
        """A trade runs from leaving flat to returning to flat (or flipping); its P&L is the symbol's P&L
        over that span, the opening and closing fills' fees included."""
        if before == 0.0 and after != 0.0:
            self._trade_open[symbol] = pnl_before
        elif before != 0.0 and (after == 0.0 or (after > 0.0) != (before > 0.0)):
            now = self._symbol_pnl(symbol)
            self.trade_pnls.append(now - self._trade_open.pop(symbol, 0.0))
            if after != 0.0:  # flipped: the new leg starts where the old one ended
                self._trade_open[symbol] = now

    def _on_target(self, target: TargetProposed) -> None:
        total = target.target_weight
        if total == 0.0 or not target.contributions:
            self._shares[target.symbol] = {}
            return
        self._shares[target.symbol] = {c.strategy: c.weight * c.strength / total for c in target.contributions}

    def _sample(self) -> None:
        assert self._current_ts is not None
        portfolio = self.portfolio
        regime = self._regime.get(MARKET_KEY) or next(iter(self._regime.values()), "")
        for symbol in portfolio.positions:
            pnl = self._symbol_pnl(symbol)
            delta = pnl - self._pnl_seen.get(symbol, 0.0)
            self._pnl_seen[symbol] = pnl
            if delta == 0.0:
                continue
            shares = self._shares.get(symbol) or {UNATTRIBUTED: 1.0}
            for strategy, share in shares.items():
                self.attribution[strategy] += delta * share
                self.by_regime[regime or "unknown"][strategy] += delta * share
        self._ts.append(self._current_ts)
        self._equity.append(portfolio.equity)
        self._values.append({s: p.market_value for s, p in portfolio.positions.items() if p.quantity != 0.0})
        self._regimes.append(regime)

    def finish(self, messages: dict[str, int] | None = None) -> Records:
        if self._current_ts is not None and (not self._ts or self._ts[-1] != self._current_ts):
            self._sample()
        symbols = sorted(set(self._close) | {s for row in self._values for s in row})
        positions = np.zeros((len(self._ts), len(symbols)))
        index = {s: i for i, s in enumerate(symbols)}
        for t, row in enumerate(self._values):
            for s, value in row.items():
                positions[t, index[s]] = value
        return Records(
            timestamps=np.asarray(self._ts, dtype=np.int64), equity=np.asarray(self._equity, dtype=np.float64),
            symbols=symbols, positions=positions, regimes=list(self._regimes), fills=self.fills, orders=self.orders,
            trade_pnls=list(self.trade_pnls), attribution=dict(self.attribution),
            attribution_by_regime={r: dict(v) for r, v in self.by_regime.items()}, denials=dict(self.denials),
            bars=self.bars, initial_cash=self.initial_cash, messages=dict(messages or {}),
        )
