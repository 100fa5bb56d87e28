"""The simulated broker: a deterministic paper exchange (pure core) and its in-process async adapter.

:class:`SimulatedExchange` is pure: orders, fills and expiries are driven by the market data
it is fed (quotes and bars) and by the event times passed in; nothing reads a clock.

Fill rules
----------
- An order becomes eligible ``latency_ns`` after its submission time (event time).
- Quotes: a market order fills at the slippage model's price; a limit buy fills when
  ask ≤ limit (sell: bid ≥ limit) at the model price capped at the limit; a stop buy
  triggers when ask ≥ stop (sell: bid ≤ stop) and then fills like a market order.
  The quantity is capped at ``participation`` × the displayed size on the touched side
  (unlimited when the size is unknown, i.e. 0).
- Bars: only orders eligible at the bar's open take part. Market orders fill at the open;
  a limit buy fills when low ≤ limit at min(open, limit); a stop buy triggers when
  high ≥ stop and fills at max(open, stop) (mirrored for sells); each through the
  slippage model with the bar's volume. Quantity ≤ ``participation`` × bar volume.
- DAY orders expire at the first session close (``session_close_hour_utc``) after
  submission; GTC orders never expire. IOC orders cancel what the first eligible market
  event does not fill.
- Fees: ``bps`` of notional + ``per_share`` × quantity, at least ``minimum`` per fill.
- A reused client order id is refused with "client_order_id must be unique".

Faults (for tests and chaos): ``reject`` (refused, nothing recorded), ``disconnect``
(refused before reaching the exchange), ``timeout`` (recorded, but the caller sees an
ambiguous outcome) and ``duplicate_report`` (every update of that order is published
twice). Faults are drawn from a seeded RNG by rate, or forced with :meth:`SimulatedExchange.inject`.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ata.events import BarClosed, OrderStatus, OrderType, QuoteUpdated, Side, TimeInForce
from ata.execution.core.ports import (
    DUPLICATE_MESSAGE,
    AmbiguousOutcomeError,
    BrokerFill,
    BrokerOrder,
    BrokerPosition,
    BrokerUnavailableError,
    DuplicateClientOrderIdError,
    FillPage,
    OrderRejectedError,
    OrderRequest,
)
from ata.execution.core.slippage import HalfSpread, MarketState, SlippageModel

NS_PER_HOUR = 3_600_000_000_000
NS_PER_DAY = 24 * NS_PER_HOUR
UPDATE_LOG_MAX = 200_000


class FaultKind(StrEnum):
    REJECT = "reject"
    DISCONNECT = "disconnect"
    TIMEOUT = "timeout"
    DUPLICATE_REPORT = "duplicate_report"


@dataclass(frozen=True)
class FeeModel:
    bps: float = 0.0
    per_share: float = 0.0
    minimum: float = 0.0

    def fee(self, quantity: float, price: float) -> float:
        raw = quantity * price * self.bps / 1e4 + quantity * self.per_share
        return max(raw, self.minimum) if raw > 0 or self.minimum > 0 else 0.0


@dataclass(frozen=True)
class SimConfig:
    slippage: SlippageModel = field(default_factory=HalfSpread)
    fees: FeeModel = field(default_factory=FeeModel)
    latency_ns: int = 0
    participation: float = 1.0
    session_close_hour_utc: int = 20
    fault_rates: dict[FaultKind, float] = field(default_factory=dict)
    seed: int = 0


@dataclass
class _SimOrder:
    request: OrderRequest
    broker_order_id: str
    submitted_ts: int
    eligible_ts: int
    expire_ts: int | None
    status: OrderStatus = OrderStatus.ACCEPTED
    cum_qty: float = 0.0
    notional: float = 0.0
    cum_fee: float = 0.0
    triggered: bool = False
    reason: str = ""
    ts_event: int = 0
    fills: int = 0
    last_fill: tuple[str, float, float] | None = None  # fill id, price, qty
    duplicate_reports: bool = False

    @property
    def remaining(self) -> float:
        return max(0.0, self.request.quantity - self.cum_qty)

    def view(self) -> BrokerOrder:
        fill_id, price, qty = self.last_fill if self.last_fill else (None, None, None)
        return BrokerOrder(request=self.request, broker_order_id=self.broker_order_id, status=self.status,
                           cum_filled_qty=self.cum_qty, avg_fill_price=self.notional / self.cum_qty if self.cum_qty else None,
                           cum_fee=self.cum_fee, reason=self.reason, ts_event=self.ts_event, fill_id=fill_id,
                           last_fill_price=price, last_fill_qty=qty)


class SimulatedExchange:
    """Deterministic paper exchange. See the module docstring for the rules."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self._rng = random.Random(self.config.seed)
        self._orders: dict[str, _SimOrder] = {}
        self._open: dict[str, _SimOrder] = {}
        self._fills: list[BrokerFill] = []
        self._positions: dict[str, tuple[float, float]] = {}  # symbol -> (qty, avg price)
        self._updates: deque[tuple[int, BrokerOrder]] = deque(maxlen=UPDATE_LOG_MAX)
        self._update_seq = 0
        self._forced: deque[FaultKind] = deque()
        self._market: dict[str, MarketState] = {}
        self.submissions = 0  # accepted submissions, i.e. orders that exist here

    # -- faults --------------------------------------------------------------------------------
    def inject(self, kind: FaultKind, count: int = 1) -> None:
        """Force ``kind`` on the next ``count`` submissions."""
        self._forced.extend([kind] * count)

    def _draw_fault(self) -> FaultKind | None:
        if self._forced:
            return self._forced.popleft()
        for kind, rate in self.config.fault_rates.items():
            if rate > 0 and self._rng.random() < rate:
                return kind
        return None

    # -- orders --------------------------------------------------------------------------------
    def submit(self, request: OrderRequest, ts: int) -> BrokerOrder:
        """Place an order. Raises the port errors (duplicate, reject, disconnect, ambiguous timeout)."""
        fault = self._draw_fault()
        if fault is FaultKind.DISCONNECT:
            raise BrokerUnavailableError("simulated disconnect")
        if request.client_order_id in self._orders:
            raise DuplicateClientOrderIdError(DUPLICATE_MESSAGE)
        if fault is FaultKind.REJECT:
            raise OrderRejectedError("simulated reject")
        problem = self._validate(request)
        if problem:
            raise OrderRejectedError(problem)
        self.submissions += 1
        order = _SimOrder(request=request, broker_order_id=f"sim-{self.submissions}", submitted_ts=ts,
                          eligible_ts=ts + self.config.latency_ns, expire_ts=self._expiry(request, ts), ts_event=ts,
                          duplicate_reports=fault is FaultKind.DUPLICATE_REPORT)
        self._orders[request.client_order_id] = order
        self._open[request.client_order_id] = order
        self._publish(order)
        if fault is FaultKind.TIMEOUT:
            raise AmbiguousOutcomeError("simulated timeout after the order was placed")
        return order.view()

    @staticmethod
    def _validate(request: OrderRequest) -> str:
        if not (request.quantity > 0 and math.isfinite(request.quantity)):
            return "quantity must be positive"
        if request.order_type is OrderType.LIMIT and not request.limit_price:
            return "limit order needs a limit price"
        if request.order_type is OrderType.STOP and not request.stop_price:
            return "stop order needs a stop price"
        return ""

    def _expiry(self, request: OrderRequest, ts: int) -> int | None:
        if request.time_in_force is not TimeInForce.DAY:
            return None
        close = (ts // NS_PER_DAY) * NS_PER_DAY + self.config.session_close_hour_utc * NS_PER_HOUR
        return close if close > ts else close + NS_PER_DAY

    def cancel(self, client_order_id: str, ts: int) -> BrokerOrder | None:
        order = self._orders.get(client_order_id)
        if order is None:
            return None
        if client_order_id in self._open:
            self._close(order, OrderStatus.CANCELED, ts, "canceled on request")
        return order.view()

    def get(self, client_order_id: str) -> BrokerOrder | None:
        order = self._orders.get(client_order_id)
        return order.view() if order else None

    def open_orders(self) -> list[BrokerOrder]:
        return [o.view() for o in self._open.values()]

    def positions(self) -> list[BrokerPosition]:
        return [BrokerPosition(sym, qty, avg) for sym, (qty, avg) in sorted(self._positions.items()) if qty != 0]

    def fills_since(self, cursor: str | None) -> FillPage:
        start = int(cursor) if cursor else 0
        return FillPage(tuple(self._fills[start:]), str(len(self._fills)))

    def updates_since(self, seq: int, limit: int = 10_000) -> tuple[list[BrokerOrder], int]:
        """Order snapshots published after ``seq`` (oldest first, at most ``limit``) and the last seq returned."""
        batch = self.numbered_updates(seq, limit)
        return [view for _, view in batch], (batch[-1][0] if batch else seq)

    def numbered_updates(self, seq: int, limit: int = 10_000) -> list[tuple[int, BrokerOrder]]:
        """(seq, order snapshot) of the updates published after ``seq``, oldest first, at most ``limit``."""
        newer = min(self._update_seq - seq, len(self._updates))  # seqs are consecutive up to the newest
        if newer <= 0:
            return []
        # From the newest end: the cost is what is returned, not the length of the log.
        batch = list(itertools.islice(reversed(self._updates), newer))
        batch.reverse()
        return batch[:limit]

    @property
    def update_seq(self) -> int:
        return self._update_seq

    # -- market data ---------------------------------------------------------------------------
    def on_quote(self, quote: QuoteUpdated) -> list[BrokerOrder]:
        symbol, bid, ask, ts = quote.symbol, quote.bid, quote.ask, quote.ts_event
        bid_size, ask_size = quote.bid_size, quote.ask_size
        self._market[symbol] = MarketState(last=(bid + ask) / 2, bid=bid, ask=ask)
        changed: list[BrokerOrder] = []
        for order in self._live(symbol, ts):
            if order.eligible_ts > ts:
                continue
            buy = order.request.side is Side.BUY
            touch = ask if buy else bid
            size = ask_size if buy else bid_size
            if not self._triggers(order, touch, touch):
                self._ioc_leftover(order, ts, changed)
                continue
            cap = self.config.participation * size if size > 0 else math.inf
            market = MarketState(last=(bid + ask) / 2, bid=bid, ask=ask, volume=size if size > 0 else None)
            self._fill(order, min(order.remaining, cap), market, ts, changed)
            self._ioc_leftover(order, ts, changed)
        return changed

    def on_bar(self, bar: BarClosed) -> list[BrokerOrder]:
        symbol, open_, high, low, volume = bar.symbol, bar.open, bar.high, bar.low, bar.volume
        ts_open, ts = bar.ts_open, bar.ts_event
        self._market[symbol] = MarketState(last=bar.close)
        changed: list[BrokerOrder] = []
        # Expiry is judged at the bar's open: a DAY order placed after one close trades at the next
        # session's open, before that session's close expires it.
        for order in self._live(symbol, ts_open, changed):
            if order.eligible_ts > ts_open or volume <= 0:
                continue
            buy = order.request.side is Side.BUY
            # The most favourable and least favourable prints of the bar for this side.
            best, worst = (low, high) if buy else (high, low)
            triggered_before = order.triggered
            if not self._triggers(order, worst, best):
                self._ioc_leftover(order, ts, changed)
                continue
            ref = self._bar_reference(order, open_, triggered_before)
            market = MarketState(last=ref, volume=volume)
            self._fill(order, min(order.remaining, self.config.participation * volume), market, ts, changed)
            self._ioc_leftover(order, ts, changed)
        return changed

    def advance(self, ts: int) -> list[BrokerOrder]:
        """Let event time pass without market data (expires DAY orders)."""
        changed: list[BrokerOrder] = []
        for symbol in {o.request.symbol for o in self._open.values()}:
            self._live(symbol, ts, changed)
        return changed

    @staticmethod
    def _bar_reference(order: _SimOrder, open_: float, triggered_before: bool) -> float:
        req = order.request
        buy = req.side is Side.BUY
        if req.order_type is OrderType.LIMIT and req.limit_price is not None:
            return min(open_, req.limit_price) if buy else max(open_, req.limit_price)
        if req.order_type is OrderType.STOP and req.stop_price is not None and not triggered_before:
            return max(open_, req.stop_price) if buy else min(open_, req.stop_price)
        return open_

    def _triggers(self, order: _SimOrder, stop_print: float, limit_print: float) -> bool:
        """Whether the order may trade: stops trigger on ``stop_print``, limits need ``limit_print``."""
        req = order.request
        buy = req.side is Side.BUY
        if req.order_type is OrderType.STOP and not order.triggered:
            assert req.stop_price is not None
            if (buy and stop_print >= req.stop_price) or (not buy and stop_print <= req.stop_price):
                order.triggered = True
            return order.triggered
        if req.order_type is OrderType.LIMIT:
            assert req.limit_price is not None
            return limit_print <= req.limit_price if buy else limit_print >= req.limit_price
        return True

    def _live(self, symbol: str, ts: int, changed: list[BrokerOrder] | None = None) -> list[_SimOrder]:
        """Open orders for ``symbol`` in submission order, after expiring those past their session."""
        live: list[_SimOrder] = []
        for order in list(self._open.values()):
            if order.request.symbol != symbol:
                continue
            if order.expire_ts is not None and ts >= order.expire_ts:
                view = self._close(order, OrderStatus.EXPIRED, ts, "day order expired at session close")
                if changed is not None:
                    changed.append(view)
                continue
            live.append(order)
        return live

    def _ioc_leftover(self, order: _SimOrder, ts: int, changed: list[BrokerOrder]) -> None:
        if order.request.time_in_force is TimeInForce.IOC and order.request.client_order_id in self._open:
            changed.append(self._close(order, OrderStatus.CANCELED, ts, "immediate-or-cancel remainder"))

    def _fill(self, order: _SimOrder, qty: float, market: MarketState, ts: int, changed: list[BrokerOrder]) -> None:
        if qty <= 0:
            return
        req = order.request
        price = self.config.slippage.fill_price(req.side, market, qty)
        if req.order_type is OrderType.LIMIT and req.limit_price is not None:
            price = min(price, req.limit_price) if req.side is Side.BUY else max(price, req.limit_price)
        fee = self.config.fees.fee(qty, price)
        order.fills += 1
        fill_id = f"{order.broker_order_id}-{order.fills}"
        order.cum_qty += qty
        order.notional += qty * price
        order.cum_fee += fee
        order.last_fill = (fill_id, price, qty)
        order.ts_event = ts
        self._fills.append(BrokerFill(fill_id, req.client_order_id, req.symbol, req.side, qty, price, fee, ts))
        self._book_position(req.symbol, req.side.sign * qty, price)
        if order.remaining <= 1e-12 * req.quantity:
            order.cum_qty = req.quantity
            order.status = OrderStatus.FILLED
            del self._open[req.client_order_id]
        else:
            order.status = OrderStatus.PARTIALLY_FILLED
        changed.append(self._publish(order))

    def _book_position(self, symbol: str, signed_qty: float, price: float) -> None:
        qty, avg = self._positions.get(symbol, (0.0, 0.0))
        new_qty = qty + signed_qty
        if qty == 0 or (qty > 0) == (signed_qty > 0):
            avg = (abs(qty) * avg + abs(signed_qty) * price) / abs(new_qty) if new_qty else 0.0
        elif (new_qty > 0) != (qty > 0) and new_qty != 0:
            avg = price  # flipped through zero: the remainder opened at this price
        self._positions[symbol] = (new_qty, avg if new_qty else 0.0)

    def _close(self, order: _SimOrder, status: OrderStatus, ts: int, reason: str) -> BrokerOrder:
        order.status = status
        order.reason = reason
        order.ts_event = ts
        order.last_fill = None
        self._open.pop(order.request.client_order_id, None)
        return self._publish(order)

    def _publish(self, order: _SimOrder) -> BrokerOrder:
        view = order.view()
        for _ in range(2 if order.duplicate_reports else 1):
            self._update_seq += 1
            self._updates.append((self._update_seq, view))
        return view

    # -- state ---------------------------------------------------------------------------------
    def seed_order(self, request: OrderRequest, ts: int, *, status: OrderStatus = OrderStatus.ACCEPTED,
                   cum_qty: float = 0.0, price: float | None = None) -> BrokerOrder:
        """Place an order directly, bypassing faults (tests seed divergences with it)."""
        self.submissions += 1
        order = _SimOrder(request=request, broker_order_id=f"sim-{self.submissions}", submitted_ts=ts,
                          eligible_ts=ts, expire_ts=None, status=status, ts_event=ts)
        self._orders[request.client_order_id] = order
        if not status.terminal:
            self._open[request.client_order_id] = order
        if cum_qty > 0 and price is not None:
            changed: list[BrokerOrder] = []
            self._fill(order, cum_qty, MarketState(last=price), ts, changed)
        return order.view()

    def snapshot(self) -> dict[str, Any]:
        return {"orders": [o.view().to_json() for o in self._orders.values()],
                "positions": {s: list(p) for s, p in self._positions.items()}, "fills": [f.to_json() for f in self._fills]}


def _zero_clock() -> int:
    return 0


class SimulatedBroker:
    """In-process async adapter over a :class:`SimulatedExchange` (backtests and unit tests).

    ``clock`` gives event time (ns) for submissions; backtests pass the replay clock.
    ``timeout_delay_s`` is how long an injected timeout stalls before the ambiguous error.
    """

    def __init__(self, name: str = "sim", exchange: SimulatedExchange | None = None,
                 clock: Callable[[], int] = _zero_clock, timeout_delay_s: float = 0.0) -> None:
        self.name = name
        self.exchange = exchange or SimulatedExchange()
        self._clock = clock
        self._timeout_delay_s = timeout_delay_s
        self._closed = asyncio.Event()
        self._changed = asyncio.Condition()

    async def submit(self, request: OrderRequest) -> BrokerOrder:
        try:
            order = self.exchange.submit(request, self._clock())
        except AmbiguousOutcomeError:
            await asyncio.sleep(self._timeout_delay_s)
            raise
        finally:
            await self._notify()
        return order

    async def cancel(self, client_order_id: str) -> BrokerOrder | None:
        order = self.exchange.cancel(client_order_id, self._clock())
        await self._notify()
        return order

    async def get_order(self, client_order_id: str) -> BrokerOrder | None:
        return self.exchange.get(client_order_id)

    async def open_orders(self) -> list[BrokerOrder]:
        return self.exchange.open_orders()

    async def positions(self) -> list[BrokerPosition]:
        return self.exchange.positions()

    async def fills_since(self, cursor: str | None) -> FillPage:
        return self.exchange.fills_since(cursor)

    async def on_market(self, event: QuoteUpdated | BarClosed) -> None:
        """Feed one market event (simulated brokers only)."""
        if isinstance(event, QuoteUpdated):
            self.exchange.on_quote(event)
        else:
            self.exchange.on_bar(event)
        await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def updates(self) -> AsyncIterator[BrokerOrder]:
        seq = self.exchange.update_seq
        while not self._closed.is_set():
            batch, seq = self.exchange.updates_since(seq)
            for view in batch:
                yield view
            if not batch:
                async with self._changed:
                    await self._changed.wait()

    async def close(self) -> None:
        self._closed.set()
        await self._notify()

