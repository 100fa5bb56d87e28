"""Events in, events out: the strategy service's pure core.

Inputs: ``BarClosed`` (drives everything), ``RegimeStateUpdated`` (per symbol and ``_market``),
``SentimentScored``. Outputs per bar, all derived from the bar (``Message.caused_by(bar, index=i)``,
targets and signals built by :class:`~ata.strategy.core.outputs.OutputFactory`), so a replay
reproduces the same ids; each output type has its own salt, so turning one off changes no other:

1. one ``StrategySwitched`` per strategy that adaptive switching turned off or on at this bar;
   an ``AllocationFallbackEngaged`` (component ``rl_policy``, index 1 so that it never shares an id
   with a portfolio section's fallback caused by the same bar) when the RL policy's prediction
   failed for this bar and the meta-strategy fell back;
2. one ``SignalGenerated`` per strategy whose signal changed (unless ``publish_signals`` is off):
   a signal equal to the last one published for its symbol and strategy (direction, strength and
   horizon) is left out, so the topic carries each strategy's signal when it changes (the first
   after warm-up, after a bar without a signal of that strategy, or after a start without cached
   state included). The signal in force at a bar is the latest published at or before it; each
   target's ``contributions`` carry every strategy's strength at its bar all the same;
3. without portfolio construction: one ``TargetProposed`` (when any strategy had a signal), the
   meta-strategy's target, ``method`` = the aggregation method used;
4. with portfolio construction (``portfolio``, see :mod:`ata.strategy.core.portfolio`): for every
   cross-section this bar decides, an ``AllocationFallbackEngaged`` when the optimiser failed
   (caused by the bar of the section's first symbol), then the ``TargetProposed`` of each symbol
   the rebalancing policy trades (caused by that symbol's own bar of the section), ``method`` =
   the optimiser that decided the weight (or the fallback allocation's name).

Point in time, independent of arrival order:

- the regime used for a bar is the latest state with ``ts_event`` strictly *before* the bar's
  close (a bar's own regime state is computed from that bar, so it arrives after it); the
  symbol's own state wins over ``_market``'s;
- the sentiment used is the latest score with ``ts_event`` at or before the bar's close.

States and scores that arrive early are held until a bar reaches their time.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

from ata.events import (
    MARKET_KEY,
    AllocationFallbackEngaged,
    BarClosed,
    Message,
    RegimeStateUpdated,
    SentimentScored,
    StrategySwitched,
)
from ata.quant.portfolio.coordination import FallbackRecord
from ata.strategy.core.meta import Decision, MetaStrategy, SymbolBook
from ata.strategy.core.outputs import OutputFactory
from ata.strategy.core.portfolio import PortfolioConstructor, PortfolioStep
from ata.strategy.core.strategies import Bar, MarketContext, Signal

#: Regime states / sentiment scores kept per key.
MAX_HISTORY = 256


class _Timeline:
    """Values of one key by event time; ``at(ts, strict)`` is the latest at (or before) ``ts``.

    Only the latest ``MAX_HISTORY`` values are kept (bars of different symbols may be a little out
    of order with each other, so a shared ``_market`` timeline must keep some past).
    """

    __slots__ = ("times", "values")

    def __init__(self) -> None:
        self.times: list[int] = []
        self.values: list[Any] = []

    def add(self, ts: int, value: Any) -> None:
        i = bisect.bisect_right(self.times, ts)
        self.times.insert(i, ts)
        self.values.insert(i, value)
        if len(self.times) > MAX_HISTORY:
            del self.times[0], self.values[0]

    def at(self, ts: int, strict: bool) -> Any:
        i = (bisect.bisect_left if strict else bisect.bisect_right)(self.times, ts)
        return self.values[i - 1] if i else None

    def snapshot(self) -> list[list[Any]]:
        return list(map(list, zip(self.times, self.values, strict=True)))

    @classmethod
    def restore(cls, state: list[list[Any]]) -> _Timeline:
        obj = cls()
        for t, v in state:
            obj.add(int(t), v)
        return obj


class StrategyEngine:
    """The meta-strategy behind the event contract. ``source`` stamps outputs (``strategy/<instance>``);
    ``publish_signals=False`` leaves out the per-strategy ``SignalGenerated`` events (a run where
    nothing subscribes to them, e.g. a backtest that only trades the targets), otherwise each is
    published when it changes (module contract); ``portfolio``
    optimises the targets of its universe together before they are proposed."""

    def __init__(self, meta: MetaStrategy | None = None, *, source: str = "strategy", timeframe: str | None = None,
                 symbols: Sequence[str] = (), publish_signals: bool = True,
                 portfolio: PortfolioConstructor | None = None) -> None:
        self.meta = meta or MetaStrategy()
        self.portfolio = portfolio
        self.source = source
        self.publish_signals = publish_signals
        self._outputs = OutputFactory(source)
        self.timeframe = timeframe
        self.symbols = frozenset(symbols)
        self.regimes: dict[str, _Timeline] = {}
        self.sentiment: dict[str, _Timeline] = {}
        self.last_decision: dict[str, Decision] = {}
        #: Per symbol and strategy, the signal last published (only while it is in force).
        self.published: dict[str, dict[str, Signal]] = {}

    def handle(self, message: Message) -> list[Message]:
        if isinstance(message, BarClosed):
            return self.on_bar(message)
        if isinstance(message, RegimeStateUpdated):
            self.regimes.setdefault(message.symbol, _Timeline()).add(message.ts_event, message.confirmed_label.value)
        elif isinstance(message, SentimentScored):
            self.sentiment.setdefault(message.symbol, _Timeline()).add(message.ts_event, message.decayed_score)
        return []

    def context_at(self, symbol: str, ts: int) -> MarketContext:
        regime = None
        for key in (symbol, MARKET_KEY):
            timeline = self.regimes.get(key)
            if timeline is not None and (regime := timeline.at(ts, strict=True)) is not None:
                break
        sentiment_line = self.sentiment.get(symbol)
        sentiment = sentiment_line.at(ts, strict=False) if sentiment_line is not None else None
        return MarketContext(regime or "", sentiment)

    def on_bar(self, bar: BarClosed) -> list[Message]:
        if self.timeframe is not None and bar.timeframe != self.timeframe:
            return []
        if self.symbols and bar.symbol not in self.symbols:
            return []
        context = self.context_at(bar.symbol, bar.ts_event)
        decision = self.meta.on_bar(bar.symbol, Bar(bar.ts_event, bar.open, bar.high, bar.low, bar.close, bar.volume), context)
        book = self.meta.books[bar.symbol]
        out: list[Message] = self._switch_events(bar, book, context.regime) if book.last_switched else []
        if decision is not None:
            self.last_decision[bar.symbol] = decision
            if decision.fallback is not None:
                out.append(self._policy_fallback_event(bar, decision, decision.fallback))
        changed = self._changed_signals(bar.symbol, decision)
        if self.portfolio is None:
            if decision is not None:
                out += self._factory().build(bar, decision, changed)
            return out
        if decision is not None:
            out += self._factory().signals(bar, decision, changed)
        for step in self.portfolio.add(bar, decision, self.market_regime_at):
            out += self._portfolio_events(step)
        return out

    def market_regime_at(self, ts: int) -> str:
        """The ``_market`` regime label in force at ``ts`` (latest state strictly before it); ``""`` if none."""
        timeline = self.regimes.get(MARKET_KEY)
        label = timeline.at(ts, strict=True) if timeline is not None else None
        return str(label) if label else ""

    def _factory(self) -> OutputFactory:
        if self._outputs.source != self.source:
            self._outputs = OutputFactory(self.source)
        return self._outputs

    def _changed_signals(self, symbol: str, decision: Decision | None) -> list[int]:
        """Positions in ``decision.signals`` of the signals to publish (see the module contract), recorded as
        published; the strategies without a signal at this bar are forgotten."""
        if not self.publish_signals:
            return []
        if decision is None:
            self.published.pop(symbol, None)
            return []
        last = self.published.setdefault(symbol, {})
        changed = []
        for i, signal in enumerate(decision.signals):
            previous = last.get(signal.strategy)
            if previous is not signal and previous != signal:
                last[signal.strategy] = signal
                changed.append(i)
        if len(last) != len(decision.signals):  # some strategy had a signal before and has none now
            current = {signal.strategy for signal in decision.signals}
            for name in [name for name in last if name not in current]:
                del last[name]
        return changed

    def _switch_events(self, bar: BarClosed, book: SymbolBook, regime: str) -> list[Message]:
        """One ``StrategySwitched`` per switch of this bar, with the active sets before and after it."""
        cfg = self.meta.config
        active = {n for n, on in book.active.items() if on}
        for name, on in book.last_switched:  # undo this bar's switches: the set before the first one
            (active.discard if on else active.add)(name)
        out: list[Message] = []
        for index, (name, on) in enumerate(book.last_switched):
            before = "+".join(sorted(active))
            (active.add if on else active.discard)(name)
            sharpe = book.overall[name].sharpe(cfg.periods_per_year)
            rule = (f"rose above switch_on_sharpe {cfg.switch_on_sharpe:.2f}" if on
                    else f"fell below switch_off_sharpe {cfg.switch_off_sharpe:.2f}")
            out.append(StrategySwitched.caused_by(
                bar, index=index, source=self.source, symbol=bar.symbol, strategy=name, active=on,
                previous_strategy=before, current_strategy="+".join(sorted(active)),
                reason=f"{name} switched {'on' if on else 'off'}: tracked Sharpe {sharpe:.2f} {rule}",
                tracked_sharpe=sharpe, regime=regime))
        return out

    def _policy_fallback_event(self, bar: BarClosed, decision: Decision, record: FallbackRecord) -> Message:
        return AllocationFallbackEngaged.caused_by(
            bar, index=1, source=self.source, component=record.component, reason=record.reason.value,
            detail=record.detail, fallback_method=record.method, regime=decision.regime, symbols=(bar.symbol,))

    def _portfolio_events(self, step: PortfolioStep) -> list[Message]:
        out: list[Message] = []
        if step.fallback is not None:
            record = step.fallback
            out.append(AllocationFallbackEngaged.caused_by(
                step.present[min(step.present)].bar, index=0, source=self.source, component=record.component,
                reason=record.reason.value, detail=record.detail, fallback_method=record.method, regime=step.regime,
                symbols=tuple(sorted(step.present))))
        factory = self._factory()
        for symbol in sorted(step.weights):
            proposal = step.present[symbol]
            out.append(factory.target(proposal.bar, step.weights[symbol], step.method, proposal.regime or step.regime,
                                      step.contributions_of(symbol)))
        return out

    def snapshot(self) -> dict[str, Any]:
        return {
            "meta": self.meta.snapshot(),
            "regimes": {k: t.snapshot() for k, t in self.regimes.items()},
            "sentiment": {k: t.snapshot() for k, t in self.sentiment.items()},
            "portfolio": None if self.portfolio is None else self.portfolio.snapshot(),
            "published": {symbol: [[s.strategy, s.direction, s.strength, s.horizon_bars] for s in signals.values()]
                          for symbol, signals in self.published.items()},
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load ``snapshot()`` output into this (identically configured) engine."""
        self.meta.restore(state["meta"])
        self.regimes = {k: _Timeline.restore(v) for k, v in state["regimes"].items()}
        self.sentiment = {k: _Timeline.restore(v) for k, v in state["sentiment"].items()}
        # A state cached before signals were published on change has none: every signal is published once more.
        self.published = {symbol: {name: Signal(name, int(direction), float(strength), int(horizon))
                                   for name, direction, strength, horizon in signals}
                          for symbol, signals in state.get("published", {}).items()}
        if (self.portfolio is None) != (state.get("portfolio") is None):
            raise ValueError("the cached state was taken with portfolio construction configured differently")
        if self.portfolio is not None:
            self.portfolio.restore(state["portfolio"])
