"""Pre-trade checks. Each check is one function returning ``None`` (pass) or a
:class:`Denial` with a stable :class:`DenialReason`; :func:`run_checks` applies them in
order and returns the first denial.

Exposure checks deny only an order that makes its measure worse: a risk-reducing order
passes even while a limit is exceeded (prices moved), so the book can always be reduced.
Quantities are signed (buy > 0); ``position`` includes orders sent but not yet filled.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from ata.events import DenialReason, TradingState
from ata.risk.core.limits import Limits
from ata.risk.core.throttle import TokenBucket

NS_PER_MS = 1_000_000


@dataclass(frozen=True, slots=True)
class Denial:
    reason: DenialReason
    detail: str


@dataclass(slots=True)
class OrderCheck:
    """One proposed order and everything the checks compare it with.

    The last four fields derive from the others when the check is made (several checks read
    each of them; none of the inputs changes while the checks run).
    """

    symbol: str
    quantity: float
    reference_price: float
    ts_ns: int
    known: bool
    limits: Limits
    last_price: float
    last_ts_ns: int
    reliable: bool
    journal_available: bool
    state: TradingState
    daily_loss_breached: bool
    position: float
    equity: float
    gross: float
    net: float
    cluster: str
    cluster_other_gross: float
    bucket: TokenBucket
    new_position: float = field(init=False)  # position + quantity
    reducing: bool = field(init=False)  # the order shrinks the position without crossing zero
    notional: float = field(init=False)  # |quantity| at the last price
    gross_after: float = field(init=False)  # gross exposure once the order fills at the last price

    def __post_init__(self) -> None:
        position = self.position
        new = self.new_position = position + self.quantity
        self.reducing = abs(new) < abs(position) and (new == 0 or (new > 0) == (position > 0))
        self.notional = abs(self.quantity) * self.last_price
        self.gross_after = self.gross + (abs(new) - abs(position)) * self.last_price


Check = Callable[[OrderCheck], Denial | None]


def journal(o: OrderCheck) -> Denial | None:
    if not o.journal_available:
        return Denial(DenialReason.JOURNAL_UNAVAILABLE, "the journal cannot persist; failing closed")
    return None


def halted(o: OrderCheck) -> Denial | None:
    if o.state is TradingState.HALTED:
        return Denial(DenialReason.TRADING_HALTED, "trading is halted")
    return None


def known_symbol(o: OrderCheck) -> Denial | None:
    if not o.known:
        return Denial(DenialReason.UNKNOWN_SYMBOL, f"{o.symbol} is not in the trading universe")
    return None


def quantity_valid(o: OrderCheck) -> Denial | None:
    if not (math.isfinite(o.quantity) and o.quantity != 0):
        return Denial(DenialReason.INVALID_QUANTITY, f"quantity {o.quantity!r} is not a finite non-zero number")
    return None


def price_valid(o: OrderCheck) -> Denial | None:
    if not (math.isfinite(o.reference_price) and o.reference_price > 0 and o.last_price > 0):
        return Denial(DenialReason.INVALID_PRICE, f"no valid price (reference {o.reference_price!r}, last {o.last_price!r})")
    return None


def data_reliable(o: OrderCheck) -> Denial | None:
    if not o.reliable:
        return Denial(DenialReason.DATA_UNRELIABLE, f"market data for {o.symbol} is flagged unreliable")
    return None


def fresh_data(o: OrderCheck) -> Denial | None:
    age_ms = (o.ts_ns - o.last_ts_ns) / NS_PER_MS
    if age_ms > o.limits.max_staleness_ms:
        return Denial(DenialReason.STALE_MARKET_DATA, f"last market data is {age_ms:.0f} ms old > {o.limits.max_staleness_ms} ms")
    return None


def daily_loss(o: OrderCheck) -> Denial | None:
    if o.daily_loss_breached and not o.reducing:
        return Denial(DenialReason.DAILY_LOSS, "daily loss limit reached; only risk-reducing orders")
    return None


def reducing_only(o: OrderCheck) -> Denial | None:
    if o.state is TradingState.REDUCING and not o.reducing:
        return Denial(DenialReason.REDUCING_ONLY, "trading state is REDUCING; only risk-reducing orders")
    return None


def price_collar(o: OrderCheck) -> Denial | None:
    deviation = abs(o.reference_price - o.last_price) / o.last_price
    if deviation > o.limits.price_collar_pct:
        detail = f"price {o.reference_price} is {deviation:.2%} from last trade {o.last_price} > {o.limits.price_collar_pct:.2%}"
        return Denial(DenialReason.PRICE_COLLAR, detail)
    return None


def order_quantity(o: OrderCheck) -> Denial | None:
    if abs(o.quantity) > o.limits.max_order_quantity:
        return Denial(DenialReason.MAX_ORDER_QUANTITY, f"|{o.quantity}| > {o.limits.max_order_quantity}")
    return None


def order_notional(o: OrderCheck) -> Denial | None:
    if o.notional > o.limits.max_order_notional:
        return Denial(DenialReason.MAX_ORDER_NOTIONAL, f"notional {o.notional:.2f} > {o.limits.max_order_notional}")
    return None


def position_limit(o: OrderCheck) -> Denial | None:
    after = abs(o.new_position) * o.last_price
    if after > o.limits.max_position_notional and abs(o.new_position) > abs(o.position):
        return Denial(DenialReason.MAX_POSITION, f"position notional {after:.2f} > {o.limits.max_position_notional}")
    return None


def gross_exposure(o: OrderCheck) -> Denial | None:
    after = o.gross_after
    if after > o.limits.max_gross_exposure and after > o.gross:
        return Denial(DenialReason.GROSS_EXPOSURE, f"gross exposure {after:.2f} > {o.limits.max_gross_exposure}")
    return None


def net_exposure(o: OrderCheck) -> Denial | None:
    after = o.net + o.quantity * o.last_price
    if abs(after) > o.limits.max_net_exposure and abs(after) > abs(o.net):
        return Denial(DenialReason.NET_EXPOSURE, f"net exposure {after:.2f} beyond ±{o.limits.max_net_exposure}")
    return None


def leverage(o: OrderCheck) -> Denial | None:
    after = o.gross_after
    if after > o.gross and (o.equity <= 0 or after / o.equity > o.limits.max_leverage):
        ratio = math.inf if o.equity <= 0 else after / o.equity
        return Denial(DenialReason.LEVERAGE, f"leverage {ratio:.2f} > {o.limits.max_leverage}")
    return None


def cluster_exposure(o: OrderCheck) -> Denial | None:
    after = o.cluster_other_gross + abs(o.new_position) * o.last_price
    limit = o.limits.max_cluster_exposure_pct * max(o.equity, 0.0)
    if after > limit and abs(o.new_position) > abs(o.position):
        return Denial(DenialReason.CLUSTER_EXPOSURE, f"cluster {o.cluster} gross {after:.2f} > {limit:.2f}")
    return None


def order_rate(o: OrderCheck) -> Denial | None:
    if not o.bucket.available(o.ts_ns):
        return Denial(DenialReason.ORDER_RATE, f"more than {o.limits.max_orders_per_minute} orders per minute")
    return None


#: Order matters: fail-closed gates first, then validity, then limits; the rate check comes
#: last because passing it spends a token (the engine takes it only for an approved order).
CHECKS: tuple[Check, ...] = (
    journal,
    halted,
    known_symbol,
    quantity_valid,
    price_valid,
    data_reliable,
    fresh_data,
    daily_loss,
    reducing_only,
    price_collar,
    order_quantity,
    order_notional,
    position_limit,
    gross_exposure,
    net_exposure,
    leverage,
    cluster_exposure,
    order_rate,
)


def run_checks(order: OrderCheck, checks: tuple[Check, ...] = CHECKS) -> Denial | None:
    for check in checks:
        denial = check(order)
        if denial is not None:
            return denial
    return None
