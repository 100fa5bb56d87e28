"""The risk engine: events in, orders/denials/state changes/snapshots out. Pure and deterministic.

``RiskEngine.handle(message)`` folds one input event into the state and returns the output
messages.

Time comes only from ``ts_event`` (and :meth:`RiskEngine.advance` for the oversight
timeout when a shell wants wall-clock progress without new events). Output ids derive from
the causing event (``Message.caused_by``); an order's intent id derives from the target's
event id, so replays reproduce the same intents and client order ids.

A bar time's fills and marks before its targets: a target for bar time T is sized against the
portfolio as of the end of T, so its order does not depend on the order in which fills, bars and
targets reach risk (live they come on different topics; the backtest delivers a bar time one
symbol at a time). It waits in :attr:`RiskEngine.waiting_targets` while an order risk sent before
T has not reported at T or later (a fill stamped at or after T) and has not ended, or while its
own symbol or a held one has not had its bar of T. Its own symbol's next bar releases it, before
that bar is applied (with bars published a bar time at a time, as in a lock-step replay, what did
not happen at T will not); a shell bounds the wait on its own clock with
:meth:`RiskEngine.release_waiting`, so a lost fill cannot hold trading. Inputs of other symbols
stamped after T do not release it: in a free-running replay partitions run ahead of each other. Targets
released together are decided in a canonical order. ``target_wait_ms = 0`` switches this off.

A target none of which fits the exposure limits (its symbol's position, with orders in flight, already
sits at a position, gross, net, leverage or cluster limit) is denied with that limit's reason once, when
the limit starts binding: the same target weight denied for the same reason under the same symbol
limits is not denied again on every following bar, only counted in :attr:`RiskEngine.repeats_suppressed`.
Any other outcome for the symbol (an order, another denial, nothing left to trade) ends the episode,
so the next time the limit binds its denial goes out again; so does a changed target weight or limit.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ata.events import (
    BarClosed,
    DataReliabilityChanged,
    DenialReason,
    FillReported,
    FlattenAll,
    HaltTrading,
    JournalAvailabilityChanged,
    Message,
    OrderCanceled,
    OrderExpired,
    OrderRejected,
    OversightReviewed,
    PortfolioSnapshotTaken,
    QuoteUpdated,
    RegimeLabel,
    RegimeStateUpdated,
    ResumeTrading,
    RiskLimitsChanged,
    SetRiskLimits,
    Side,
    TargetProposed,
    TradingState,
    TradingStateChanged,
    Verdict,
    client_order_id_for,
    round_quantity,
)
from ata.events.fastpath import uuid5_of
from ata.events.values import MARKET_KEY
from ata.quant.accounting import Portfolio
from ata.risk.config import RiskSettings
from ata.risk.core import checks, clusters
from ata.risk.core.clipping import clip_to_limits
from ata.risk.core.drawdown import DailyLoss, DrawdownPolicy, DrawdownTier
from ata.risk.core.limits import LimitBook, Limits, LimitsError
from ata.risk.core.market import MarketParams, SymbolMarket
from ata.risk.core.outputs import OrderOutputs, derived_id
from ata.risk.core.sizing import SizingInput, SizingParams, annual_vol, size_target
from ata.risk.core.states import TradingStateMachine, Transition
from ata.risk.core.stress import Exposure, StressPolicy, StressSignals, UnwindLeg, hedge_quantity, next_slice, plan_unwind
from ata.risk.core.throttle import TokenBucket

NS_PER_MS = 1_000_000
#: Bounded memory for verdicts that arrive before their target, and for seen fill ids.
MAX_EARLY_REVIEWS = 10_000
MAX_SEEN_FILLS = 50_000
#: A horizon past any bar time: nothing open, nothing held.
_NO_HORIZON = 2**63 - 1
TERMINAL_ORDER_EVENTS = (OrderCanceled, OrderRejected, OrderExpired)


def limits_from(settings: RiskSettings) -> Limits:
    return Limits(**{name: getattr(settings, name) for name in Limits.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class AtLimit:
    """A symbol's target denied because its position already sits at an exposure limit (see the module doc)."""

    target_weight: float
    max_weight: float | None  # an oversight modification's bound on the target, if any
    reason: DenialReason
    limits: Limits

    def to_state(self) -> list[Any]:
        return [self.target_weight, self.max_weight, self.reason.value, self.limits.to_state()]

    @classmethod
    def from_state(cls, state: list[Any]) -> AtLimit:
        weight, max_weight, reason, limits = state
        return cls(float(weight), None if max_weight is None else float(max_weight), DenialReason(reason),
                   Limits.from_state(limits))


@dataclass(slots=True)
class PendingTarget:
    target: TargetProposed
    deadline_ns: int


class RiskEngine:
    """Risk's functional core. Not thread-safe; one instance per account."""

    def __init__(self, settings: RiskSettings, source: str = "risk") -> None:
        self.settings = settings
        self.source = source
        self.market_params = MarketParams(
            vol_lambda=settings.vol_ewma_lambda,
            short_vol_lambda=settings.stress_short_vol_lambda,
            long_vol_lambda=settings.stress_long_vol_lambda,
            atr_bars=settings.atr_bars,
            volume_lambda=settings.volume_ewma_lambda,
            min_vol_observations=settings.min_vol_observations,
        )
        self.sizing_params = SizingParams(
            bars_per_year=settings.bars_per_year,
            position_vol_target_annual=settings.position_vol_target_annual or None,
            portfolio_vol_target_annual=settings.portfolio_vol_target_annual or None,
            max_vol_scale=settings.max_vol_scale,
            default_vol_annual=settings.default_vol_annual,
            kelly_fraction=settings.kelly_fraction or None,
            assumed_sharpe=settings.kelly_assumed_sharpe,
            atr_multiple=settings.atr_stop_multiple,
            risk_per_trade_pct=settings.risk_per_trade_pct or None,
            max_leverage=settings.max_leverage,
            margin_rate=settings.margin_rate,
        )
        self.drawdown_policy = DrawdownPolicy(
            settings.drawdown_warning_pct, settings.drawdown_critical_pct, settings.drawdown_fatal_pct,
            settings.drawdown_warning_scale,
        )
        self.stress_policy = StressPolicy(
            vol_spike_ratio=settings.stress_vol_spike_ratio,
            correlation_spike=settings.stress_correlation_spike,
            liquidity_drop_ratio=settings.stress_liquidity_drop_ratio,
            spread_spike_ratio=settings.stress_spread_spike_ratio,
            level_scales=settings.stress_level_scales,
            reducing_level=settings.stress_reducing_level,
            unwind_level=settings.stress_unwind_level,
        )
        self.universe = frozenset(settings.symbols)
        self.outputs = OrderOutputs(source)
        # -- state (everything below is in snapshot()) --
        self.portfolio = Portfolio(settings.initial_cash)
        self.limits = LimitBook(limits_from(settings))
        self.markets: dict[str, SymbolMarket] = {}
        self.panel = clusters.ReturnsPanel(max(settings.correlation_window_bars, settings.stress_correlation_window_bars))
        self.cluster_of: dict[str, str] = {}
        self.corr_symbols: list[str] = []
        self.corr: list[list[float]] = []
        self._corr_index: dict[str, int] = {}  # derived: position of each symbol in corr_symbols
        self.betas: dict[str, float] = {}
        self.bar_stamps = 0
        self.last_bar_stamp_ns = 0
        self.bucket = TokenBucket(settings.max_orders_per_minute, settings.order_burst)
        self.states = TradingStateMachine()
        self.unreliable: set[str] = set()
        self.journal_available = True
        self.regimes: dict[str, str] = {}
        self.daily = DailyLoss()
        self.drawdown_tier = DrawdownTier.NORMAL
        self.stress = StressSignals()
        self.correlation_spike = False
        self.vol_spikes: set[str] = set()
        self.liquidity_drops: set[str] = set()
        self.unwind: list[UnwindLeg] = []
        # client_order_id -> [symbol, signed remaining, time of its latest report: sent or last filled (ns)]
        self.open_orders: dict[str, list[Any]] = {}
        # The same order lists by symbol, in open_orders' order (derived; change both through _open/_close).
        self._orders_by_symbol: dict[str, dict[str, list[Any]]] = {}
        # Per symbol, the signed sum of those orders (what _pending() returns), recomputed (not
        # updated incrementally, which float rounding would make order-dependent) whenever the
        # symbol's orders change; read on every order check.
        self._pending_sums: dict[str, float] = {}
        self.pending_targets: dict[str, PendingTarget] = {}  # by symbol: newest target awaiting a verdict
        self.waiting_targets: list[TargetProposed] = []  # targets waiting for their bar time's fills and marks
        self.early_reviews: OrderedDict[str, OversightReviewed] = OrderedDict()
        self.seen_fills: OrderedDict[str, None] = OrderedDict()
        self.next_snapshot_ns = 0
        self.last_ts_ns = 0
        self.decisions: Counter[str] = Counter()  # "approved" or a DenialReason value -> count
        self.clips: Counter[str] = Counter()  # orders sized down to a limit, by the tightest limit's reason code
        self.at_limit: dict[str, AtLimit] = {}  # by symbol: the at-limit denial last published, while it holds
        self.repeats_suppressed: Counter[str] = Counter()  # at-limit denials not repeated, by reason code

    # ------------------------------------------------------------------ dispatch
    def handle(self, message: Message) -> list[Message]:
        """Apply one input event; return the messages to publish, in order."""
        out: list[Message] = []
        ts = message.ts_event
        if self.waiting_targets and isinstance(message, BarClosed):
            symbol = message.symbol
            self._release_waiting(lambda target: target.symbol == symbol and target.ts_event < ts, out)
        self.last_ts_ns = max(self.last_ts_ns, ts)
        self._expire_reviews(ts, out)
        # The input types are unrelated classes, so the order of these tests only saves time.
        if isinstance(message, TargetProposed):
            self._on_target(message, out)
        elif isinstance(message, FillReported):
            self._on_fill(message, out)
        elif isinstance(message, BarClosed):
            self._on_bar(message, out)
        elif isinstance(message, QuoteUpdated):
            self._market(message.symbol).on_quote(ts, message.bid, message.ask)
            self._liquidity_from_quote(message.symbol)
        elif isinstance(message, OversightReviewed):
            self._on_review(message, out)
        elif isinstance(message, TERMINAL_ORDER_EVENTS):
            self._close(message.client_order_id)
        elif isinstance(message, RegimeStateUpdated):
            self.regimes[message.symbol] = message.confirmed_label.value
            if message.symbol in (MARKET_KEY, self.settings.hedge_symbol):
                self._reassess_stress(message, out)
        elif isinstance(message, DataReliabilityChanged):
            (self.unreliable.discard if message.reliable else self.unreliable.add)(message.symbol)
        elif isinstance(message, JournalAvailabilityChanged):
            self.journal_available = message.available
        elif isinstance(message, HaltTrading):
            self._transition(message, out, "operator", TradingState.HALTED, message.reason)
        elif isinstance(message, ResumeTrading):
            self._on_resume(message, out)
        elif isinstance(message, FlattenAll):
            self._transition(message, out, "operator", TradingState.REDUCING, f"flatten all: {message.reason}")
            self._flatten(message, out, f"flatten all: {message.reason}")
        elif isinstance(message, SetRiskLimits):
            self._on_set_limits(message, out)
        if self.waiting_targets:
            horizon = self._ready_horizon()
            self._release_waiting(lambda target: target.ts_event <= horizon and self._has_own_bar(target), out)
        self._maybe_snapshot(message, out)
        return out

    def waiting_for(self) -> list[str]:
        """What the waiting targets wait for: client order ids without a report, ``bar <symbol>`` marks."""
        return sorted({m for target in self.waiting_targets for m in self._missing(target)})

    def release_waiting(self) -> list[Message]:
        """Decide every waiting target now (a shell's bound on the wait expired)."""
        out: list[Message] = []
        self._release_waiting(lambda _target: True, out)
        return out

    def advance(self, ts_ns: int) -> list[Message]:
        """Let time pass without an event (oversight timeouts); for live shells."""
        out: list[Message] = []
        self.last_ts_ns = max(self.last_ts_ns, ts_ns)
        self._expire_reviews(ts_ns, out)
        return out

    # ------------------------------------------------------------------ market data
    def _market(self, symbol: str) -> SymbolMarket:
        market = self.markets.get(symbol)
        if market is None:
            market = self.markets[symbol] = SymbolMarket(symbol)
        return market

    def _on_bar(self, bar: BarClosed, out: list[Message]) -> None:
        market = self._market(bar.symbol)
        ret = market.on_bar(self.market_params, bar.ts_event, high=bar.high, low=bar.low, close=bar.close,
                            volume=bar.volume)
        self.portfolio.mark(bar.symbol, bar.close)
        if ret is not None:
            self.panel.add(bar.ts_event, bar.symbol, ret)
        if bar.ts_event > self.last_bar_stamp_ns:
            self.last_bar_stamp_ns = bar.ts_event
            self.bar_stamps += 1
            if self.bar_stamps % self.settings.correlation_refresh_bars == 0:
                self._refresh_correlations(bar, out)
        self._unwind_step(bar, out)  # before reassessing: a plan started by this bar sends its first slices once
        self._update_symbol_stress(bar.symbol, market)
        self._reassess_stress(bar, out)
        self._reassess_drawdown(bar, out)

    def _refresh_correlations(self, cause: Message, out: list[Message]) -> None:
        symbols = [s for s in self.panel.symbols() if self.markets.get(s) is not None]
        if len(symbols) < 2:
            return
        returns = self.panel.matrix(symbols, last=self.settings.correlation_window_bars)
        corr = clusters.correlation(returns)
        self.corr_symbols, self.corr = symbols, corr.tolist()
        self._corr_index = {s: i for i, s in enumerate(symbols)}
        self.cluster_of = clusters.clusters(corr, symbols, self.settings.cluster_threshold)
        self.correlation_spike = self._correlation_spike(symbols)
        if self.settings.hedge_symbol in symbols:
            beta = clusters.betas(returns, symbols.index(self.settings.hedge_symbol))
            self.betas = {s: float(b) for s, b in zip(symbols, beta, strict=True)}
            if self.settings.hedge_enabled:
                self._hedge(cause, out)

    # ------------------------------------------------------------------ stress
    def _update_symbol_stress(self, symbol: str, market: SymbolMarket) -> None:
        policy = self.stress_policy
        spike_level = policy.vol_spike_ratio**2 * market.long_variance
        spiking = market.warm(self.market_params) and market.short_variance >= spike_level > 0
        (self.vol_spikes.add if spiking else self.vol_spikes.discard)(symbol)
        dry = market.avg_volume > 0 and market.last_volume <= policy.liquidity_drop_ratio * market.avg_volume
        wide = market.avg_spread_pct > 0 and market.spread_pct >= policy.spread_spike_ratio * market.avg_spread_pct
        (self.liquidity_drops.add if dry or wide else self.liquidity_drops.discard)(symbol)

    def _liquidity_from_quote(self, symbol: str) -> None:
        self._update_symbol_stress(symbol, self.markets[symbol])

    def _correlation_spike(self, symbols: list[str]) -> bool:
        """Mean pairwise correlation over the short stress window at or above the spike level."""
        returns = self.panel.matrix(symbols, last=self.settings.stress_correlation_window_bars)
        if returns.shape[0] < 3:
            return False
        return bool(clusters.mean_pairwise_correlation(clusters.correlation(returns)) >= self.stress_policy.correlation_spike)

    def _reassess_stress(self, cause: Message, out: list[Message]) -> None:
        if not self.settings.stress_enabled:
            return
        market_regime = self.regimes.get(MARKET_KEY, self.regimes.get(self.settings.hedge_symbol))
        signals = StressSignals(
            crisis=market_regime == RegimeLabel.CRISIS.value,
            vol_spike=self._any_in_scope(self.vol_spikes),
            correlation_spike=self.correlation_spike,
            liquidity_drop=self._any_in_scope(self.liquidity_drops),
        )
        before = self.stress.level
        self.stress = signals
        level = signals.level
        if level >= self.stress_policy.reducing_level:
            self._transition(cause, out, "stress", TradingState.REDUCING, f"stress level {level}: {signals.describe()}")
        elif before >= self.stress_policy.reducing_level:
            self._transition(cause, out, "stress", TradingState.ACTIVE, f"stress level {level}")
        if self.settings.unwind_enabled and level >= self.stress_policy.unwind_level and not self.unwind:
            self._start_unwind(cause, out)

    def _any_in_scope(self, flagged: set[str]) -> bool:
        """Whether a ``flagged`` symbol counts for stress: one held or in the universe, or any while neither
        holds a symbol. Runs on every bar, so nothing is built when nothing is flagged."""
        if not flagged:
            return False
        positions = self.portfolio.positions
        if not self.universe and not any(p.quantity != 0.0 for p in positions.values()):
            return True
        return any(s in self.universe or (s in positions and positions[s].quantity != 0.0) for s in flagged)

    def _start_unwind(self, cause: Message, out: list[Message]) -> None:
        exposures = [
            Exposure(p.symbol, self.portfolio.quantity(p.symbol) + self._pending(p.symbol), p.mark_price or 0.0,
                     self._market(p.symbol).vol_per_bar(self.market_params, 0.0) or 1.0, self._market(p.symbol).avg_volume)
            for p in self.portfolio.open_positions()
        ]
        self.unwind = plan_unwind([e for e in exposures if e.quantity != 0], self.settings.unwind_participation_pct)
        for leg in list(self.unwind):
            self._send_slice(cause, leg, out)

    def _unwind_step(self, bar: BarClosed, out: list[Message]) -> None:
        for leg in self.unwind:
            if leg.symbol == bar.symbol and leg.remaining != 0:
                self._send_slice(bar, leg, out)
        self.unwind = [leg for leg in self.unwind if leg.remaining != 0]

    def _send_slice(self, cause: Message, leg: UnwindLeg, out: list[Message]) -> None:
        qty = round_quantity(next_slice(leg), self.settings.lot_size)
        if qty == 0 and leg.remaining != 0:
            qty, leg.remaining = leg.remaining + 0.0, 0.0  # the last fraction of a lot goes out whole
        if qty != 0:
            self._emit_order(cause, leg.symbol, qty, "emergency unwind slice", out)

    def _hedge(self, cause: Message, out: list[Message]) -> None:
        index = self.settings.hedge_symbol
        price = self._market(index).last_price
        net_beta_value = sum(
            self.betas.get(p.symbol, 1.0) * (self.portfolio.quantity(p.symbol) + self._pending(p.symbol)) * (p.mark_price or 0.0)
            for p in self.portfolio.open_positions()
        )
        qty = round_quantity(hedge_quantity(net_beta_value, self.portfolio.equity, self.settings.hedge_max_net_beta, price),
                             self.settings.lot_size)
        if qty != 0:
            self._check_and_emit(cause, index, qty, price, reason=f"auto-hedge: net beta value {net_beta_value:.2f}", out=out)

    # ------------------------------------------------------------------ drawdown and daily loss
    def _reassess_drawdown(self, cause: Message, out: list[Message]) -> None:
        equity = self.portfolio.equity
        if self.daily.observe(cause.ts_event, equity, self.limits.portfolio.daily_loss_limit_pct):
            if self.daily.breached:
                limit = self.limits.portfolio.daily_loss_limit_pct
                self._transition(cause, out, "daily_loss", TradingState.REDUCING,
                                 f"daily loss {self.daily.loss_pct(equity):.2%} >= {limit:.2%}")
            else:
                self._transition(cause, out, "daily_loss", TradingState.ACTIVE, "new trading day")
        if not self.settings.drawdown_enabled or self.drawdown_tier is DrawdownTier.FATAL:
            return
        dd = self.portfolio.drawdown
        tier = self.drawdown_policy.tier(dd)
        if tier is self.drawdown_tier:
            return
        self.drawdown_tier = tier
        why = f"drawdown {dd:.2%} at tier {tier.name}"
        if tier is DrawdownTier.FATAL:
            self._transition(cause, out, "drawdown", TradingState.HALTED, why)
            self._flatten(cause, out, why)
        elif tier is DrawdownTier.CRITICAL:
            self._transition(cause, out, "drawdown", TradingState.REDUCING, why)
        else:
            self._transition(cause, out, "drawdown", TradingState.ACTIVE, why)

    # ------------------------------------------------------------------ control
    def _transition(self, cause: Message, out: list[Message], source: str, state: TradingState, reason: str) -> None:
        change: Transition | None = self.states.request(source, state, reason)
        if change is not None:
            out.append(TradingStateChanged.caused_by(cause, index=len(out), source=self.source, previous=change.previous,
                                                     current=change.current, reason=change.reason[:1000]))

    def _on_resume(self, cmd: ResumeTrading, out: list[Message]) -> None:
        """Operator resume: clears operator and drawdown restrictions and re-bases drawdown at current equity."""
        self.portfolio.reset_high_water_mark()
        self.drawdown_tier = DrawdownTier.NORMAL
        self._transition(cmd, out, "drawdown", TradingState.ACTIVE, f"operator resume: {cmd.reason}")
        self._transition(cmd, out, "operator", TradingState.ACTIVE, cmd.reason)

    def _on_set_limits(self, cmd: SetRiskLimits, out: list[Message]) -> None:
        unknown = [s for s in cmd.symbols if self.universe and s not in self.universe]
        try:
            if unknown:
                raise LimitsError(f"unknown symbols: {', '.join(unknown)}")
            self.limits.apply(cmd.limits, cmd.symbols)
        except LimitsError as exc:
            out.append(RiskLimitsChanged.caused_by(cmd, index=len(out), source=self.source, accepted=False,
                                                   requested=cmd.limits, symbols=cmd.symbols, reason=str(exc)[:1000]))
            return
        portfolio = self.limits.portfolio
        self.bucket.reconfigure(portfolio.max_orders_per_minute, portfolio.order_burst)
        out.append(RiskLimitsChanged.caused_by(cmd, index=len(out), source=self.source, accepted=True,
                                               requested=cmd.limits, symbols=cmd.symbols, reason=cmd.reason))

    def _flatten(self, cause: Message, out: list[Message], reason: str) -> None:
        """Orders that take every position (including orders in flight) to zero; risk-reducing, so unchecked."""
        self.unwind = []
        for position in self.portfolio.open_positions():
            qty = -(position.quantity + self._pending(position.symbol))
            if qty != 0:
                self._emit_order(cause, position.symbol, qty, reason, out)

    # ------------------------------------------------------------------ orders and fills
    def _pending(self, symbol: str) -> float:
        """Signed quantity of ``symbol``'s orders sent and not yet filled (summed in the order they were sent)."""
        return self._pending_sums.get(symbol, 0.0)

    def _resum_pending(self, symbol: str) -> None:
        """Recompute ``symbol``'s pending sum after its orders changed."""
        orders = self._orders_by_symbol.get(symbol)
        if orders:
            self._pending_sums[symbol] = float(sum(order[1] for order in orders.values()))
        else:
            self._pending_sums.pop(symbol, None)

    def _open(self, client_order_id: str, symbol: str, qty: float, ts_ns: int) -> None:
        order = [symbol, qty, ts_ns]
        previous = self.open_orders.get(client_order_id)
        if previous is not None and previous[0] != symbol:
            self._close(client_order_id)
        self.open_orders[client_order_id] = order
        self._orders_by_symbol.setdefault(symbol, {})[client_order_id] = order
        self._resum_pending(symbol)

    def _close(self, client_order_id: str) -> None:
        order = self.open_orders.pop(client_order_id, None)
        if order is not None:
            orders = self._orders_by_symbol[order[0]]
            del orders[client_order_id]
            if not orders:
                del self._orders_by_symbol[order[0]]
            self._resum_pending(order[0])

    def _index_open_orders(self) -> None:
        self._orders_by_symbol = {}
        for client_order_id, order in self.open_orders.items():
            self._orders_by_symbol.setdefault(order[0], {})[client_order_id] = order
        self._pending_sums = {}
        for symbol in self._orders_by_symbol:
            self._resum_pending(symbol)

    def _on_fill(self, fill: FillReported, out: list[Message]) -> None:
        key = f"{fill.client_order_id}\x1f{fill.fill_id}"
        if key in self.seen_fills:
            return
        self.seen_fills[key] = None
        while len(self.seen_fills) > MAX_SEEN_FILLS:
            self.seen_fills.popitem(last=False)
        signed = fill.quantity * fill.side.sign
        self.portfolio.apply_fill(fill.symbol, signed, fill.price, fill.fee)
        market = self.markets.get(fill.symbol)
        if market is not None and market.has_price and market.last_bar_ts_ns >= fill.ts_event:
            # A fill does not overwrite a newer mark: a bar's fill at its open, reported after the bar,
            # is valued at the bar's close as when it comes first, so equity does not depend on which does.
            self.portfolio.mark(fill.symbol, market.last_price)
        order = self.open_orders.get(fill.client_order_id)
        if order is not None:
            before = order[1]
            order[1] = before - signed
            order[2] = max(order[2], fill.ts_event)
            if order[1] * before <= 0 or abs(order[1]) <= 1e-9 * abs(before):  # completely filled
                self._close(fill.client_order_id)
            else:
                self._resum_pending(order[0])
        self._reassess_drawdown(fill, out)

    @staticmethod
    def _intent(cause: Message, out: list[Message]) -> uuid.UUID:
        """A target causes at most one order: its intent depends on the target alone. Other causes
        (flatten, unwind, hedge) may cause several, numbered by output position."""
        if isinstance(cause, TargetProposed):
            return intent_for(cause.event_id)
        return derived_id(cause.event_id, len(out), INTENT_SALT)

    def _emit_order(self, cause: Message, symbol: str, qty: float, reason: str, out: list[Message]) -> None:
        intent = self._intent(cause, out)
        coid = client_order_id_for(intent)
        ts = max(cause.ts_event, self.last_ts_ns)
        out.append(self.outputs.submit_order(cause, len(out), ts, intent_id=intent,
                                             client_order_id=coid, symbol=symbol, side=Side.BUY if qty > 0 else Side.SELL,
                                             quantity=abs(qty), reason=reason[:500]))
        self._open(coid, symbol, qty, ts)
        self.decisions["approved"] += 1

    def _deny(self, cause: Message, symbol: str, reason: DenialReason, detail: str, out: list[Message]) -> None:
        intent = self._intent(cause, out)
        out.append(self.outputs.order_denied(cause, len(out), max(cause.ts_event, self.last_ts_ns), intent_id=intent,
                                             symbol=symbol, reason=reason, detail=detail[:1000]))
        self.decisions[reason.value] += 1

    def order_check(self, symbol: str, qty: float, reference_price: float, ts_ns: int) -> checks.OrderCheck:
        """Everything the pre-trade checks need about a proposed order (signed ``qty``)."""
        market = self.markets.get(symbol)
        limits = self.limits.for_symbol(symbol)
        cluster = self.cluster_of.get(symbol, symbol)
        last_price = market.last_price if market is not None else 0.0
        pending_of = self._pending_sums.get
        positions = self.portfolio.positions
        own = positions.get(symbol)
        position = (own.quantity if own is not None else 0.0) + pending_of(symbol, 0.0)
        cluster_of = self.cluster_of
        cluster_other = gross = net = 0.0
        # Summed in the portfolio's position order, so the sums are reproducible bit for bit. A symbol
        # with orders in flight but no position yet has no mark: only the order's own symbol counts.
        for sym, book in positions.items():
            held = book.quantity + pending_of(sym, 0.0)
            if sym == symbol:
                mark = last_price
            else:
                mark = book.mark_price or 0.0
                if cluster_of.get(sym, sym) == cluster:
                    cluster_other += abs(held) * mark
            gross += abs(held) * mark
            net += held * mark
        if own is None:
            gross += abs(position) * last_price
            net += position * last_price
        return checks.OrderCheck(
            symbol=symbol, quantity=qty, reference_price=reference_price, ts_ns=ts_ns,
            known=(symbol in self.universe) if self.universe else (market is not None and market.has_price),
            limits=limits, last_price=last_price, last_ts_ns=market.last_ts_ns if market is not None else 0,
            reliable=symbol not in self.unreliable, journal_available=self.journal_available, state=self.states.state,
            daily_loss_breached=self.daily.breached, position=position, equity=self.portfolio.equity, gross=gross, net=net,
            cluster=cluster, cluster_other_gross=cluster_other, bucket=self.bucket,
        )

    def check_order(self, cause: Message, symbol: str, quantity: float, reference_price: float,
                    reason: str = "") -> list[Message]:
        """Decide one proposed order (signed ``quantity``) that ``cause`` asks for, without sizing.

        Returns ``[SubmitOrder]`` (the order is booked as in flight and spends a rate token) or
        ``[OrderDenied]`` with the first failing check's reason. Ids derive from ``cause`` exactly as
        when :meth:`handle` decides a target (a target's order gets :func:`intent_for` the target).
        """
        out: list[Message] = []
        self.last_ts_ns = max(self.last_ts_ns, cause.ts_event)
        self._check_and_emit(cause, symbol, quantity, reference_price, reason=reason, out=out)
        return out

    def _decision_ts(self, cause: Message) -> int:
        """When an order ``cause`` asks for is judged (staleness, rate): on the market clock the cause's
        own event time, so a backlog decided after later bars arrived is judged as of its bar rather
        than crowded into the latest time seen; on the wall clock the engine's now."""
        return cause.ts_event if self.settings.clock == "market" else max(cause.ts_event, self.last_ts_ns)

    def _check_and_emit(self, cause: Message, symbol: str, qty: float, reference_price: float, *, reason: str,
                        out: list[Message]) -> None:
        self._judge(cause, self.order_check(symbol, qty, reference_price, self._decision_ts(cause)), reason, out)

    def _judge(self, cause: Message, order: checks.OrderCheck, reason: str, out: list[Message]) -> None:
        """Send ``order`` if every check passes, else deny it with the first failing check's reason."""
        denial = checks.run_checks(order)
        if denial is not None:
            self._deny(cause, order.symbol, denial.reason, denial.detail, out)
            return
        self.bucket.take(order.ts_ns)
        self._emit_order(cause, order.symbol, order.quantity, reason, out)

    # ------------------------------------------------------------------ targets and oversight
    def _needs_review(self, target: TargetProposed) -> bool:
        return bool(self.settings.oversight_mode == "gating"
                and abs(target.target_weight) * max(self.portfolio.equity, 0.0) >= self.settings.oversight_min_notional)

    def _missing(self, target: TargetProposed) -> list[str]:
        """What ``target`` waits for: open orders that have not reported since before its bar time
        (their fills of that time may be due) and symbols (its own, held ones) without a bar of it."""
        ts = target.ts_event
        missing = [coid for coid, order in self.open_orders.items() if order[2] < ts]
        own = self.markets.get(target.symbol)
        if own is None or own.last_bar_ts_ns < ts:
            missing.append(f"bar {target.symbol}")
        for symbol, position in self.portfolio.positions.items():  # order-free: callers test or sort the result
            market = self.markets.get(symbol)  # a held symbol without market data has no bar to wait for
            if position.quantity != 0.0 and symbol != target.symbol and market is not None and market.last_bar_ts_ns < ts:
                missing.append(f"bar {symbol}")
        return missing

    def _ready_horizon(self) -> int:
        """The latest bar time up to which nothing but its own symbol's bar is missing: every open order has
        reported at or after it and every held symbol with market data has had its bar of it. Equivalent to
        :meth:`_missing` for a target that has its own bar, computed once for all waiting targets (a backlog
        holds hundreds, and checking each against every open order and position on every input was
        quadratic)."""
        horizon = min((order[2] for order in self.open_orders.values()), default=_NO_HORIZON)
        for symbol, position in self.portfolio.positions.items():
            market = self.markets.get(symbol)
            if market is not None and position.quantity != 0.0 and market.last_bar_ts_ns < horizon:
                horizon = market.last_bar_ts_ns
        return horizon

    def _has_own_bar(self, target: TargetProposed) -> bool:
        own = self.markets.get(target.symbol)
        return own is not None and own.last_bar_ts_ns >= target.ts_event

    def _release_waiting(self, due: Callable[[TargetProposed], bool], out: list[Message]) -> None:
        """Take the ``due`` targets off :attr:`waiting_targets` and handle them in a canonical order (bar
        time, symbol, id), not in arrival order, which live delivery permutes."""
        released: list[TargetProposed] = []
        kept: list[TargetProposed] = []
        for waiting in self.waiting_targets:
            (released if due(waiting) else kept).append(waiting)
        if not released:
            return
        self.waiting_targets = kept
        released.sort(key=lambda t: (t.ts_event, t.symbol, t.event_id.bytes))
        for target in released:
            self._on_ready_target(target, out)

    def _on_target(self, target: TargetProposed, out: list[Message]) -> None:
        if self.settings.target_wait_ms and self._missing(target):
            self.waiting_targets.append(target)
            return
        self._on_ready_target(target, out)

    def _on_ready_target(self, target: TargetProposed, out: list[Message]) -> None:
        """Decide (or hold for a verdict) a target that waits for nothing more of its bar time. Its outputs are numbered from 0
        whatever ``out`` holds already, so their ids do not depend on whether it waited for fills."""
        own: list[Message] = []
        self._review_or_decide(target, own)
        out += own

    def _review_or_decide(self, target: TargetProposed, out: list[Message]) -> None:
        if not self._needs_review(target):
            self._decide(target, None, out)
            return
        review = self.early_reviews.pop(str(target.event_id), None)
        if review is not None:
            self._apply_verdict(target, review, out)
            return
        # A newer target supersedes one still waiting for its verdict.
        deadline = target.ts_event + self.settings.oversight_timeout_ms * NS_PER_MS
        self.pending_targets[target.symbol] = PendingTarget(target, deadline)

    def _on_review(self, review: OversightReviewed, out: list[Message]) -> None:
        if self.settings.oversight_mode != "gating":
            return
        for symbol, pending in self.pending_targets.items():
            if pending.target.event_id == review.subject_event_id:
                del self.pending_targets[symbol]
                self._apply_verdict(pending.target, review, out)
                return
        self.early_reviews[str(review.subject_event_id)] = review
        while len(self.early_reviews) > MAX_EARLY_REVIEWS:
            self.early_reviews.popitem(last=False)

    def _expire_reviews(self, ts_ns: int, out: list[Message]) -> None:
        if not self.pending_targets:
            return
        for symbol in sorted(self.pending_targets):
            pending = self.pending_targets[symbol]
            if ts_ns >= pending.deadline_ns:
                del self.pending_targets[symbol]
                self._fallback(pending.target, "no verdict before the timeout", out)

    def _fallback(self, target: TargetProposed, why: str, out: list[Message]) -> None:
        if self.settings.oversight_fallback == "allow":
            self._decide(target, None, out)
        else:
            self._deny(target, target.symbol, DenialReason.OVERSIGHT_TIMEOUT, f"oversight fallback deny: {why}", out)

    def _apply_verdict(self, target: TargetProposed, review: OversightReviewed, out: list[Message]) -> None:
        if review.verdict is Verdict.APPROVE:
            self._decide(target, None, out)
        elif review.verdict is Verdict.REJECT:
            self._deny(target, target.symbol, DenialReason.OVERSIGHT_REJECTED, review.rationale[:900], out)
        elif review.verdict is Verdict.ESCALATE:
            detail = f"escalated to a human: {review.rationale[:800]}"
            self._deny(target, target.symbol, DenialReason.OVERSIGHT_REJECTED, detail, out)
        elif review.verdict is Verdict.MODIFY and review.max_target_weight is not None:
            self._decide(target, review.max_target_weight, out)
        else:  # UNREVIEWED, or a MODIFY without bounds: never executed as a modification
            self._fallback(target, f"verdict {review.verdict.value} without usable bounds", out)

    def _risk_scale(self, symbol: str) -> float:
        scale = 1.0
        if self.settings.regime_scaling_enabled:
            label = self.regimes.get(symbol, self.regimes.get(MARKET_KEY))
            if label is not None:
                scale *= self.settings.regime_scales.get(label, 1.0)
        if self.settings.drawdown_enabled:
            scale *= self.drawdown_policy.scale(self.drawdown_tier)
        if self.settings.stress_enabled:
            scale *= self.stress_policy.level_scales[self.stress.level]
        return scale

    def _portfolio_terms(self, symbol: str, vol_i: float) -> tuple[float, float, float]:
        """(other gross, sum_jk w_j w_k cov_jk over others, sum_j w_j cov_ij) in annual units."""
        equity = self.portfolio.equity
        own = self.portfolio.positions.get(symbol)
        other_gross = max(0.0, self.portfolio.gross_exposure - (abs(own.market_value) if own is not None else 0.0))
        if self.sizing_params.portfolio_vol_target_annual is None or equity <= 0:
            return other_gross, 0.0, 0.0
        others = [p for p in self.portfolio.open_positions() if p.symbol != symbol]
        index = self._corr_index
        corr = self.corr  # plain floats (the matrix's tolist()): no numpy scalar per element

        def rho(a: str, b: str) -> float:
            if a == b:
                return 1.0
            ia, ib = index.get(a), index.get(b)
            return corr[ia][ib] if ia is not None and ib is not None else 0.0

        weights = [(p.symbol, p.quantity * (p.mark_price or 0.0) / equity,
                    annual_vol(self._market(p.symbol).vol_per_bar(self.market_params, 0.0), self.sizing_params)) for p in others]
        cov_others = sum(wa * wb * va * vb * rho(a, b) for a, wa, va in weights for b, wb, vb in weights)
        cross = sum(w * v * vol_i * rho(symbol, s) for s, w, v in weights)
        return other_gross, cov_others, cross

    def _decide(self, target: TargetProposed, max_weight: float | None, out: list[Message]) -> None:
        symbol = target.symbol
        at_limit = self.at_limit.pop(symbol, None)  # put back only while this target repeats the same denial
        market = self.markets.get(symbol)
        if market is not None:
            price = market.last_price if market.has_price else target.reference_price
            vol_bar, atr = market.vol_per_bar(self.market_params, 0.0), market.atr
        else:
            price, vol_bar, atr = target.reference_price, 0.0, 0.0
        params = self.sizing_params
        other_gross, cov_others, cross = self._portfolio_terms(symbol, annual_vol(vol_bar, params))
        sizing = size_target(SizingInput(target.target_weight, self.portfolio.equity, price, vol_bar, atr,
                                         self._risk_scale(symbol), other_gross, (cov_others, cross), max_weight), params)
        held = self.portfolio.quantity(symbol) + self._pending(symbol)
        lot = self.settings.lot_size
        delta = _to_lot(sizing.quantity - held, lot)
        if delta == 0 or abs(delta) * price < self.settings.min_trade_notional:
            return
        limits = self.limits.for_symbol(symbol)
        # Move toward the target in steps no order limit refuses; the checks still run on the step.
        step_cap = _to_lot(min(limits.max_order_quantity, limits.max_order_notional / price), lot)
        if abs(delta) > step_cap:
            delta = math.copysign(step_cap, delta)
        if delta == 0:
            self._deny(target, symbol, DenialReason.MAX_ORDER_NOTIONAL, "one lot exceeds the order limits", out)
            return
        reason = (f"target {target.target_weight:+.4f} -> sized {sizing.weight:+.4f} ({sizing.binding})"
                  f"; stop distance {sizing.stop_distance:.4f}")
        ts = self._decision_ts(target)
        order = self.order_check(symbol, delta, target.reference_price, ts)
        fitted, binding = clip_to_limits(order)
        fitted = _to_lot(fitted, lot)
        if binding and fitted != 0:
            order = self.order_check(symbol, fitted, target.reference_price, ts)
            reason += f"; clipped by {', '.join(r.value for r in binding)}"
            self.clips[binding[-1].value] += 1
        elif binding and self._repeats_at_limit(target, max_weight, order, binding, at_limit):
            return
        self._judge(target, order, reason, out)  # nothing fits: the order goes on whole and is denied with the limit's reason

    def _repeats_at_limit(self, target: TargetProposed, max_weight: float | None, order: checks.OrderCheck,
                          binding: tuple[DenialReason, ...], previous: AtLimit | None) -> bool:
        """For a target none of which fits the limits: whether its denial repeats ``previous``, the symbol's
        at-limit denial still in force (then it is counted instead of published). Records the denial it will
        get when an exposure limit named by ``binding`` is what denies it (another check may deny first)."""
        denial = checks.run_checks(order)
        if denial is None or denial.reason not in binding:
            return False
        current = AtLimit(target.target_weight, max_weight, denial.reason, order.limits)
        self.at_limit[target.symbol] = current
        if current != previous:
            return False
        self.repeats_suppressed[denial.reason.value] += 1
        return True

    # ------------------------------------------------------------------ snapshots
    def portfolio_snapshot(self, cause: Message, index: int) -> PortfolioSnapshotTaken:
        p = self.portfolio
        positions = [(pos.symbol, pos.quantity, pos.avg_price, pos.mark_price, pos.realized_pnl, pos.unrealized_pnl)
                     for pos in p.open_positions()]
        return self.outputs.portfolio_snapshot(
            cause, index, positions=positions, cash=p.cash, equity=p.equity, realized_pnl=p.realized_pnl,
            unrealized_pnl=p.unrealized_pnl, fees=p.fees, gross_exposure=p.gross_exposure, net_exposure=p.net_exposure,
            drawdown=p.drawdown, trading_state=self.states.state,
        )

    def _maybe_snapshot(self, cause: Message, out: list[Message]) -> None:
        if cause.ts_event < self.next_snapshot_ns:
            return
        interval = self.settings.snapshot_interval_ms * NS_PER_MS
        if self.next_snapshot_ns:
            out.append(self.portfolio_snapshot(cause, len(out)))
        self.next_snapshot_ns = (cause.ts_event // interval + 1) * interval

    def snapshot(self) -> dict[str, Any]:
        """The whole state as plain JSON-serialisable data; :meth:`restore` rebuilds an equal engine."""
        return {
            "portfolio": self.portfolio.snapshot(),
            "limits": self.limits.to_state(),
            "markets": {s: m.to_state() for s, m in sorted(self.markets.items())},
            "panel": self.panel.to_state(),
            "cluster_of": dict(sorted(self.cluster_of.items())),
            "corr_symbols": list(self.corr_symbols),
            "corr": [list(row) for row in self.corr],
            "betas": dict(sorted(self.betas.items())),
            "bar_stamps": self.bar_stamps,
            "last_bar_stamp_ns": self.last_bar_stamp_ns,
            "bucket": self.bucket.to_state(),
            "states": self.states.to_state(),
            "unreliable": sorted(self.unreliable),
            "journal_available": self.journal_available,
            "regimes": dict(sorted(self.regimes.items())),
            "daily": self.daily.to_state(),
            "drawdown_tier": int(self.drawdown_tier),
            "stress": [self.stress.crisis, self.stress.vol_spike, self.stress.correlation_spike, self.stress.liquidity_drop],
            "correlation_spike": self.correlation_spike,
            "vol_spikes": sorted(self.vol_spikes),
            "liquidity_drops": sorted(self.liquidity_drops),
            "unwind": [leg.to_state() for leg in self.unwind],
            "open_orders": {k: list(v) for k, v in self.open_orders.items()},
            "pending_targets": {
                s: [p.target.model_dump(mode="json"), p.deadline_ns] for s, p in sorted(self.pending_targets.items())
            },
            "waiting_targets": [t.model_dump(mode="json") for t in self.waiting_targets],
            "early_reviews": [r.model_dump(mode="json") for r in self.early_reviews.values()],
            "seen_fills": list(self.seen_fills),
            "next_snapshot_ns": self.next_snapshot_ns,
            "last_ts_ns": self.last_ts_ns,
            "decisions": dict(sorted(self.decisions.items())),
            "clips": dict(sorted(self.clips.items())),
            "at_limit": {s: a.to_state() for s, a in sorted(self.at_limit.items())},
            "repeats_suppressed": dict(sorted(self.repeats_suppressed.items())),
        }

    @classmethod
    def restore(cls, settings: RiskSettings, state: dict[str, Any], source: str = "risk") -> RiskEngine:
        engine = cls(settings, source)
        engine.portfolio = Portfolio.restore(state["portfolio"])
        engine.limits = LimitBook.from_state(state["limits"])
        engine.markets = {s: SymbolMarket.from_state(m) for s, m in state["markets"].items()}
        engine.panel = clusters.ReturnsPanel.from_state(state["panel"])
        engine.cluster_of = dict(state["cluster_of"])
        engine.corr_symbols = list(state["corr_symbols"])
        engine.corr = [[float(x) for x in row] for row in state["corr"]]
        engine._corr_index = {s: i for i, s in enumerate(engine.corr_symbols)}
        engine.betas = dict(state["betas"])
        engine.bar_stamps = int(state["bar_stamps"])
        engine.last_bar_stamp_ns = int(state["last_bar_stamp_ns"])
        engine.bucket = TokenBucket.from_state(state["bucket"])
        engine.states = TradingStateMachine.from_state(state["states"])
        engine.unreliable = set(state["unreliable"])
        engine.journal_available = bool(state["journal_available"])
        engine.regimes = dict(state["regimes"])
        engine.daily = DailyLoss.from_state(state["daily"])
        engine.drawdown_tier = DrawdownTier(state["drawdown_tier"])
        engine.stress = StressSignals(*state["stress"])
        engine.correlation_spike = bool(state["correlation_spike"])
        engine.vol_spikes = set(state["vol_spikes"])
        engine.liquidity_drops = set(state["liquidity_drops"])
        engine.unwind = [UnwindLeg(s, float(r), float(q)) for s, r, q in state["unwind"]]
        # A state cached before orders carried their report time (two fields) reads as reported long ago.
        engine.open_orders = {k: [v[0], float(v[1]), int(v[2]) if len(v) > 2 else 0] for k, v in state["open_orders"].items()}
        engine._index_open_orders()
        engine.pending_targets = {s: PendingTarget(TargetProposed.model_validate(t), int(d))
                                  for s, (t, d) in state["pending_targets"].items()}
        engine.waiting_targets = [TargetProposed.model_validate(t) for t in state.get("waiting_targets", ())]
        engine.early_reviews = OrderedDict(
            (str(r.subject_event_id), r) for r in (OversightReviewed.model_validate(x) for x in state["early_reviews"])
        )
        engine.seen_fills = OrderedDict((k, None) for k in state["seen_fills"])
        engine.next_snapshot_ns = int(state["next_snapshot_ns"])
        engine.last_ts_ns = int(state["last_ts_ns"])
        engine.decisions = Counter(state["decisions"])
        engine.clips = Counter(state.get("clips", {}))
        engine.at_limit = {s: AtLimit.from_state(a) for s, a in state.get("at_limit", {}).items()}
        engine.repeats_suppressed = Counter(state.get("repeats_suppressed", {}))
        return engine


def _to_lot(quantity: float, lot: float) -> float:
    """``round_quantity`` (toward zero), with a fast path for whole-unit lots on the hot path."""
    if lot == 1.0:
        return float(math.trunc(quantity))
    return round_quantity(quantity, lot)


INTENT_SALT = "risk:intent"
_FIRST_INTENT_NAME = f"{INTENT_SALT}\x1f0".encode()


def intent_for(target_event_id: uuid.UUID) -> uuid.UUID:
    """The intent id risk gives the first order caused by a target: ``derived_id(target, 0, salt="risk:intent")``."""
    return uuid5_of(target_event_id.bytes, _FIRST_INTENT_NAME)
