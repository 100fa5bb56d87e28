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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ata.events import (
    MARKET_KEY,
    BarClosed,
    FillReported,
    Message,
    OrderDenied,
    RegimeLabel,
    RegimeStateUpdated,
    SubmitOrder,
    TargetProposed,
)
from ata.quant.accounting import Portfolio

UNATTRIBUTED = "unattributed"
_UNATTRIBUTED_ONLY: Final = {UNATTRIBUTED: 1.0}
#: A regime label's text by member (an enum's ``.value`` is a descriptor call; two states arrive per bar).
_LABELS: Final = {label: label.value for label in RegimeLabel}
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
        self._targets: dict[str, TargetProposed] = {}  # symbol -> target in force
        self._books: dict[type[Message], Callable[[Message], None]] = {}
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

    def handle(self, message: Message) -> Sequence[Message]:
        """Book ``message``; the recorder publishes nothing."""
        book = self._books.get(type(message))
        if book is None:
            book = self._books[type(message)] = self._book_for(message)
        book(message)
        return ()

    def _book_for(self, message: Message) -> Callable[[Message], None]:
        """How a message of this type is booked (looked up once per type: a message's type decides it)."""
        books: tuple[tuple[type[Message], Callable[[Any], None]], ...] = (
            (BarClosed, self._on_bar), (FillReported, self._on_fill), (TargetProposed, self._on_target),
            (RegimeStateUpdated, self._on_regime), (SubmitOrder, self._on_order), (OrderDenied, self._on_denial))
        return next((book for kind, book in books if isinstance(message, kind)), _ignore)

    def _on_regime(self, state: RegimeStateUpdated) -> None:
        self._regime[state.symbol] = _LABELS[state.confirmed_label]

    def _on_order(self, order: SubmitOrder) -> None:
        self.orders.append({"ts": order.ts_event, "client_order_id": order.client_order_id, "symbol": order.symbol,
                            "side": order.side.value, "quantity": order.quantity, "reason": order.reason})

    def _on_denial(self, denial: OrderDenied) -> None:
        self.denials[denial.reason.value] += 1

    def _on_bar(self, bar: BarClosed) -> None:
        ts = bar.ts_event
        current = self._current_ts
        if current is None or ts > current:
            if current is not None:
                self._sample()
            self._current_ts = ts
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
        self._targets[target.symbol] = target

    def _shares(self, symbol: str) -> dict[str, float]:
        """Each strategy's share of ``symbol``'s target in force (``unattributed`` without one, or for a zero one)."""
        target = self._targets.get(symbol)
        total = 0.0 if target is None else target.target_weight
        if target is None or total == 0.0 or not target.contributions:
            return _UNATTRIBUTED_ONLY
        return {c.strategy: c.weight * c.strength / total for c in target.contributions}

    def _sample(self) -> None:
        assert self._current_ts is not None
        portfolio = self.portfolio
        regime = self._regime.get(MARKET_KEY) or next(iter(self._regime.values()), "")
        values: dict[str, float] = {}
        for symbol, position in portfolio.positions.items():
            pnl = position.realized_pnl + position.unrealized_pnl - position.fees  # _symbol_pnl, inlined
            delta = pnl - self._pnl_seen.get(symbol, 0.0)
            self._pnl_seen[symbol] = pnl
            if position.quantity != 0.0:
                values[symbol] = position.market_value
            if delta == 0.0:
                continue
            by_strategy = self.by_regime[regime or "unknown"]
            for strategy, share in self._shares(symbol).items():
                self.attribution[strategy] += delta * share
                by_strategy[strategy] += delta * share
        self._ts.append(self._current_ts)
        self._equity.append(portfolio.equity)
        self._values.append(values)
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


def _ignore(_message: Message) -> None:
    """Booking of a message type the recorder keeps nothing of."""
