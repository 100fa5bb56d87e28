"""Per-symbol temporal sentiment, point in time.

Contract of :class:`SentimentEngine`:

- **Point in time.** A ``NewsPublished`` item is usable only from ``ts_event`` (publication) plus
  ``availability_delay_ns``. Items wait in a queue until the engine's clock reaches that time;
  the clock moves with :meth:`~SentimentEngine.advance` (a live shell's wall clock, a backtest's
  bar times) and with each item seen (seeing an item published at ``t`` proves time is at least
  ``t``). An item that arrives after its availability time (the clock is already past it) is
  applied at arrival, never back-dated. Every output therefore has ``ts_event`` ≥ its item's availability time and ≥ every
  earlier output's; no item can change a score at an earlier time.
- **Decay.** Per symbol a decayed level ``L`` (sum of novelty-weighted item scores) and a decayed
  volume ``V`` (count of items), both halving every ``half_life_ns``. The published
  ``decayed_score`` is ``L / max(V, 1)``: the recent mean while news flows, fading toward 0 as
  it ages; always in [-1, 1].
- **Novelty.** ``1 - max Jaccard`` of the item's content words against the symbol's last
  ``novelty_items`` items still within ``novelty_window_ns``: a re-hash of a story already
  counted gets little weight, so ten outlets repeating one headline do not look like ten events.
- **Outputs.** One ``SentimentScored`` per (item, symbol), caused by the item (deterministic id
  from the item's id and the symbol's index). With ``decay_tick_ns`` > 0, :meth:`advance` also
  emits a decay update for each symbol whose last update is older than that.
- Free text is data: the headline only ever feeds the scorer; nothing in it selects code paths,
  symbols outside the universe, or outputs other than the score.
- :meth:`snapshot` / :meth:`restore` carry the whole state (queue included) as JSON-safe data.
"""

from __future__ import annotations

import heapq
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ata.events import NewsPublished, SentimentScored
from ata.sentiment.core.scoring import ItemScore, Scorer

NS_PER_MS = 1_000_000
_WORDS = re.compile(r"[a-z0-9][a-z0-9'\-]+")
#: Words that say nothing about which story an item tells.
_STOPWORDS = frozenset({
    "the", "a", "an", "and", "or", "of", "to", "in", "on", "for", "at", "by", "with", "as", "from", "its", "it", "is", "are",
    "be", "after", "over", "amid", "into", "than", "that", "this", "his", "her", "their", "shares", "stock", "stocks", "inc",
    "corp", "co", "ltd", "company", "says", "said", "report", "reports",
})


@dataclass(frozen=True, slots=True)
class EngineParams:
    half_life_ns: int = 4 * 3600 * 10**9
    availability_delay_ns: int = 60 * 10**9
    novelty_items: int = 20
    novelty_window_ns: int = 24 * 3600 * 10**9
    decay_tick_ns: int = 0

    def __post_init__(self) -> None:
        if self.half_life_ns <= 0 or self.availability_delay_ns < 0 or self.novelty_items < 1 or self.novelty_window_ns <= 0:
            raise ValueError("half life and novelty window must be positive, delay non-negative, novelty_items >= 1")


def content_words(text: str) -> frozenset[str]:
    return frozenset(w for w in _WORDS.findall(text.lower()) if w not in _STOPWORDS)


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@dataclass(slots=True)
class SymbolState:
    """Decayed level and volume as of ``ts``, plus the recent items' words for novelty."""

    ts: int = 0
    level: float = 0.0
    volume: float = 0.0
    last_emit_ts: int = 0
    recent: deque[tuple[int, frozenset[str]]] = field(default_factory=deque)

    def decayed_to(self, now: int, half_life_ns: int) -> tuple[float, float]:
        factor = 0.5 ** (max(0, now - self.ts) / half_life_ns)
        return self.level * factor, self.volume * factor

    def roll(self, now: int, half_life_ns: int) -> None:
        self.level, self.volume = self.decayed_to(now, half_life_ns)
        self.ts = max(self.ts, now)

    @staticmethod
    def score(level: float, volume: float) -> float:
        return max(-1.0, min(1.0, level / max(volume, 1.0)))


@dataclass(frozen=True, slots=True)
class SymbolView:
    """What :meth:`SentimentEngine.view` reports for one symbol at one time."""

    decayed_score: float
    news_volume: float


class SentimentEngine:
    """Pure per-symbol sentiment state machine (see the module contract)."""

    def __init__(self, scorer: Scorer, params: EngineParams | None = None, *, source: str = "sentiment") -> None:
        self.scorer = scorer
        self.params = params or EngineParams()
        self.source = source
        self.clock = 0
        self.states: dict[str, SymbolState] = {}
        self._pending: list[tuple[int, str, NewsPublished]] = []

    # -- input --------------------------------------------------------------------------------

    def on_news(self, item: NewsPublished) -> list[SentimentScored]:
        """Queue ``item`` until it is available; return what became available up to its publication time."""
        # Late arrival (available before the clock already reached here): usable from arrival, not back-dated.
        effective = max(item.ts_event + self.params.availability_delay_ns, self.clock)
        heapq.heappush(self._pending, (effective, str(item.event_id), item))
        return self.advance(item.ts_event)

    def advance(self, now_ns: int) -> list[SentimentScored]:
        """Move the clock to ``now_ns`` (never backwards); apply items available by then, in availability order."""
        self.clock = max(self.clock, now_ns)
        outputs: list[SentimentScored] = []
        while self._pending and self._pending[0][0] <= self.clock:
            effective, _, item = heapq.heappop(self._pending)
            outputs.extend(self._apply(item, max(effective, self._watermark(item))))
        if self.params.decay_tick_ns > 0:
            outputs.extend(self._decay_ticks())
        return outputs

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- queries ------------------------------------------------------------------------------

    def view(self, symbol: str, at_ns: int) -> SymbolView:
        """Decayed score and volume of ``symbol`` at ``at_ns`` from items already applied (no mutation)."""
        state = self.states.get(symbol)
        if state is None:
            return SymbolView(0.0, 0.0)
        level, volume = state.decayed_to(at_ns, self.params.half_life_ns)
        return SymbolView(SymbolState.score(level, volume), volume)

    # -- internals ----------------------------------------------------------------------------

    def _watermark(self, item: NewsPublished) -> int:
        """An item is never applied before the latest state time of its symbols (no back-dating)."""
        return max((self.states[s].ts for s in item.symbols if s in self.states), default=0)

    def _apply(self, item: NewsPublished, at: int) -> list[SentimentScored]:
        if not item.symbols:
            return []
        text = f"{item.headline}\n{item.summary}" if item.summary else item.headline
        scored = self.scorer.score(item.headline)
        words = content_words(text)
        return [
            self._apply_symbol(item, index, symbol, at=at, scored=scored, words=words)
            for index, symbol in enumerate(item.symbols)
        ]

    def _apply_symbol(
        self, item: NewsPublished, index: int, symbol: str, *, at: int, scored: ItemScore, words: frozenset[str]
    ) -> SentimentScored:
        p = self.params
        state = self.states.setdefault(symbol, SymbolState(ts=at))
        state.roll(at, p.half_life_ns)
        while state.recent and state.recent[0][0] < at - p.novelty_window_ns:
            state.recent.popleft()
        novelty = 1.0 - max((jaccard(words, seen) for _, seen in state.recent), default=0.0)
        state.recent.append((at, words))
        while len(state.recent) > p.novelty_items:
            state.recent.popleft()
        state.level += scored.score * novelty
        state.volume += 1.0
        state.last_emit_ts = at
        return SentimentScored.caused_by(
            item,
            index=index,
            source=self.source,
            ts_event=at,
            symbol=symbol,
            article_id=item.article_id,
            item_score=scored.score,
            decayed_score=SymbolState.score(state.level, state.volume),
            novelty=novelty,
            news_volume=state.volume,
            components=dict(scored.components),
        )

    def _decay_ticks(self) -> list[SentimentScored]:
        outputs = []
        for symbol in sorted(self.states):
            state = self.states[symbol]
            if self.clock - state.last_emit_ts < self.params.decay_tick_ns:
                continue
            # Ticks land on a grid of decay_tick_ns after the last update, so replays give the same ids.
            at = state.last_emit_ts + (self.clock - state.last_emit_ts) // self.params.decay_tick_ns * self.params.decay_tick_ns
            state.roll(at, self.params.half_life_ns)
            state.last_emit_ts = at
            outputs.append(
                SentimentScored.origin(
                    natural_key=("decay", symbol, at),
                    ts_event=at,
                    ts_init=at,
                    source=self.source,
                    symbol=symbol,
                    item_score=0.0,
                    decayed_score=SymbolState.score(state.level, state.volume),
                    novelty=0.0,
                    news_volume=state.volume,
                )
            )
        return outputs

    # -- state --------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "clock": self.clock,
            "states": {
                s: {"ts": st.ts, "level": st.level, "volume": st.volume, "last_emit_ts": st.last_emit_ts,
                    "recent": [[ts, sorted(words)] for ts, words in st.recent]}
                for s, st in self.states.items()
            },
            "pending": [[effective, item.model_dump(mode="json")] for effective, _, item in sorted(self._pending)],
        }

    @classmethod
    def restore(cls, scorer: Scorer, params: EngineParams, data: dict[str, Any], *, source: str = "sentiment") -> SentimentEngine:
        engine = cls(scorer, params, source=source)
        engine.clock = int(data["clock"])
        for symbol, st in data["states"].items():
            engine.states[symbol] = SymbolState(
                ts=int(st["ts"]), level=float(st["level"]), volume=float(st["volume"]), last_emit_ts=int(st["last_emit_ts"]),
                recent=deque((int(ts), frozenset(words)) for ts, words in st["recent"]),
            )
        for effective, raw in data["pending"]:
            item = NewsPublished.model_validate(raw)
            heapq.heappush(engine._pending, (int(effective), str(item.event_id), item))
        return engine
