"""Events in, events out: the strategy service's pure core.

Inputs: ``BarClosed`` (drives everything), ``RegimeStateUpdated`` (per symbol and ``_market``),
``SentimentScored``. Outputs per bar: one ``SignalGenerated`` per strategy out of warm-up (unless
``publish_signals`` is off), then one ``TargetProposed`` (when any strategy had a signal), all
derived from the bar (``Message.caused_by(bar, index=i)``, built by
:class:`~ata.strategy.core.outputs.OutputFactory`), so a replay reproduces the same ids. Turning
signals off changes no other output: targets do not depend on them, and their ids use their own
salt.

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

from ata.events import MARKET_KEY, BarClosed, Message, RegimeStateUpdated, SentimentScored
from ata.strategy.core.meta import Decision, MetaStrategy
from ata.strategy.core.outputs import OutputFactory
from ata.strategy.core.strategies import Bar, MarketContext

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
        return [[t, v] for t, v in zip(self.times, self.values, strict=True)]

    @classmethod
    def restore(cls, state: list[list[Any]]) -> _Timeline:
        obj = cls()
        for t, v in state:
            obj.add(int(t), v)
        return obj


class StrategyEngine:
    """The meta-strategy behind the event contract. ``source`` stamps outputs (``strategy/<instance>``);
    ``publish_signals=False`` leaves out the per-strategy ``SignalGenerated`` events (a run where
    nothing subscribes to them, e.g. a backtest that only trades the targets)."""

    def __init__(self, meta: MetaStrategy | None = None, *, source: str = "strategy", timeframe: str | None = None,
                 symbols: Sequence[str] = (), publish_signals: bool = True) -> None:
        self.meta = meta or MetaStrategy()
        self.source = source
        self.publish_signals = publish_signals
        self._outputs = OutputFactory(source)
        self.timeframe = timeframe
        self.symbols = frozenset(symbols)
        self.regimes: dict[str, _Timeline] = {}
        self.sentiment: dict[str, _Timeline] = {}
        self.last_decision: dict[str, Decision] = {}

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
        if decision is None:
            return []
        self.last_decision[bar.symbol] = decision
        return self.to_events(bar, decision)

    def to_events(self, bar: BarClosed, decision: Decision) -> list[Message]:
        if self._outputs.source != self.source:
            self._outputs = OutputFactory(self.source)
        return self._outputs.build(bar, decision, signals=self.publish_signals)

    def snapshot(self) -> dict[str, Any]:
        return {
            "meta": self.meta.snapshot(),
            "regimes": {k: t.snapshot() for k, t in self.regimes.items()},
            "sentiment": {k: t.snapshot() for k, t in self.sentiment.items()},
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load ``snapshot()`` output into this (identically configured) engine."""
        self.meta.restore(state["meta"])
        self.regimes = {k: _Timeline.restore(v) for k, v in state["regimes"].items()}
        self.sentiment = {k: _Timeline.restore(v) for k, v in state["sentiment"].items()}
