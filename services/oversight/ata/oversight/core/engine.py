"""The oversight engine: which subjects to review, in what context, and the audit event of each review.

Pure and deterministic: messages in, :class:`ReviewRequest` s out; a :class:`ReviewOutcome`
(what a provider or the fallback answered) in, an :class:`OversightReviewed` out. Time comes
from ``ts_event``. The shell performs the provider calls in between.

Modes: ``off`` requests nothing; ``advisory`` requests reviews of the subjects the
:class:`ReviewPolicy` selects; ``gating`` also answers every target below the thresholds with a
policy approval (``below_threshold``), so risk, which waits for a verdict on each target it
gates, never waits for one oversight would not give.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from ata.events import MARKET_KEY, Message, NewsPublished, OversightReviewed, RegimeStateUpdated, Verdict
from ata.oversight.config import OversightSettings
from ata.oversight.core.outputs import reviewed_event
from ata.oversight.core.rules import RuleLimits
from ata.oversight.core.subjects import (
    Headline,
    RegimeView,
    ReviewPolicy,
    ReviewRequest,
    StrategySwitch,
    SubjectKind,
    kind_of,
)
from ata.oversight.core.verdict import VerdictAnswer

NS_PER_MS = 1_000_000
MAX_RATIONALE = 5000
MAX_AUDIT_TEXT = 100_000
Mode = Literal["off", "advisory", "gating"]


@dataclass(frozen=True, slots=True)
class ReviewOutcome:
    """What came back for one request. ``answer`` None means unreviewed (``detail`` says why)."""

    answer: VerdictAnswer | None
    provider: str
    model: str = ""
    prompt: str = ""
    prompt_sha256: str = ""
    response: str = ""
    latency_ms: float = 0.0
    fallback_used: bool = False
    cache_hit: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failure: str = ""
    detail: str = ""


def rule_limits(settings: OversightSettings) -> RuleLimits:
    return RuleLimits(
        max_abs_weight=settings.rule_max_abs_weight, reject_abs_weight=settings.rule_reject_abs_weight,
        crisis_max_abs_weight=settings.rule_crisis_max_abs_weight, min_signal_agreement=settings.rule_min_signal_agreement,
        regime_min_confidence=settings.rule_regime_min_confidence, max_switches=settings.rule_max_switches,
    )


class OversightEngine:
    """Keeps the review context (regime states, headlines, switch history) and selects subjects."""

    def __init__(self, settings: OversightSettings, *, source: str = "oversight/core") -> None:
        self.settings = settings
        self.source = source
        self.mode: Mode = settings.mode
        self.policy = ReviewPolicy(settings.review_min_notional, settings.review_min_abs_weight, settings.account_equity,
                                   settings.review_regime_changes, settings.review_strategy_switches)
        self._regimes: dict[str, RegimeView] = {}
        # Regime states arrive for every symbol at every bar, reviews need a few: a state is kept as it
        # came and turned into its view only when a review asks for it (then it replaces the view).
        self._latest_states: dict[str, RegimeStateUpdated] = {}
        self.headlines: dict[str, deque[Headline]] = {}
        self.switches: dict[str, deque[int]] = {}

    # ------------------------------------------------------------------ input
    def observe(self, message: Message) -> list[ReviewRequest]:
        """Apply one input; return the reviews it calls for (none in ``off`` mode)."""
        if isinstance(message, RegimeStateUpdated):
            self._latest_states[message.symbol] = message
            return []
        if isinstance(message, NewsPublished):
            self._remember_news(message)
            return []
        kind = kind_of(message)
        if kind is None:
            return []
        symbol = str(getattr(message, "symbol", ""))
        switches = 0
        if kind is SubjectKind.STRATEGY_SWITCH:
            assert isinstance(message, StrategySwitch)
            switches = self._count_switch(message)
        if self.mode == "off":
            return []
        needed = self.policy.needs_review(kind, message)
        if not needed and not (self.mode == "gating" and kind is SubjectKind.TARGET):
            return []
        return [ReviewRequest(kind=kind, subject=message, symbol=symbol, regime=self.regime(symbol),
                              market_regime=self.regime(MARKET_KEY), headlines=self._news_for(symbol, message.ts_event),
                              recent_switches=switches, below_threshold=not needed)]

    def regime(self, symbol: str) -> RegimeView | None:
        """The view of the latest regime state of ``symbol`` (or ``_market``); None before any."""
        state = self._latest_states.pop(symbol, None)
        if state is not None:
            self._regimes[symbol] = RegimeView(
                label=state.label.value, confirmed_label=state.confirmed_label.value, confidence=state.confidence,
                probabilities=tuple(sorted(state.probabilities.items())))
        return self._regimes.get(symbol)

    @property
    def regimes(self) -> dict[str, RegimeView]:
        """The latest regime view of every symbol (and ``_market``) seen."""
        for symbol in list(self._latest_states):
            self.regime(symbol)
        return self._regimes

    def _remember_news(self, item: NewsPublished) -> None:
        if self.settings.news_max_items == 0:
            return
        headline = Headline(ts_event=item.ts_event, news_source=item.news_source, headline=item.headline, summary=item.summary)
        for symbol in item.symbols or (MARKET_KEY,):
            queue = self.headlines.setdefault(symbol, deque(maxlen=self.settings.news_max_items))
            queue.append(headline)

    def _news_for(self, symbol: str, ts_ns: int) -> tuple[Headline, ...]:
        """Headlines about ``symbol`` (or the whole market) published within the window before ``ts_ns``, newest last."""
        horizon = ts_ns - self.settings.news_window_ms * NS_PER_MS
        items = [h for key in (symbol, MARKET_KEY) for h in self.headlines.get(key, ()) if horizon <= h.ts_event <= ts_ns]
        items.sort(key=lambda h: h.ts_event)
        return tuple(items[-self.settings.news_max_items:]) if self.settings.news_max_items else ()

    def _count_switch(self, switch: StrategySwitch) -> int:
        """Record the switch; the number of switches of its symbol within the window, this one included."""
        history = self.switches.setdefault(switch.symbol, deque())
        history.append(switch.ts_event)
        horizon = switch.ts_event - self.settings.rule_switch_window_ms * NS_PER_MS
        while history and history[0] < horizon:
            history.popleft()
        return len(history)

    # ------------------------------------------------------------------ output
    def reviewed(self, request: ReviewRequest, outcome: ReviewOutcome, *, ts_init: int | None = None) -> OversightReviewed:
        """The audit event of one review: the verdict and everything that led to it."""
        answer = outcome.answer
        flags: tuple[str, ...]
        if answer is None:
            verdict, rationale, confidence, flags, cap = (
                Verdict.UNREVIEWED, f"unreviewed: {outcome.failure} {outcome.detail}".strip(), 0.0, (), None)
        else:
            verdict, rationale, confidence, flags, cap = (
                Verdict(answer.verdict), answer.rationale, answer.confidence, answer.risk_flags, answer.max_target_weight)
        if outcome.fallback_used and outcome.failure:
            flags = (*flags, f"fallback_{outcome.failure}")
        return reviewed_event(request.subject, source=self.source, ts_init=ts_init, fields={
            "subject_event_id": request.subject_event_id, "subject_type": request.kind.value, "symbol": request.symbol,
            "verdict": verdict, "rationale": rationale[:MAX_RATIONALE], "confidence": confidence,
            "risk_flags": tuple(flags), "max_target_weight": cap, "provider": outcome.provider, "model": outcome.model,
            "fallback_used": outcome.fallback_used, "latency_ms": max(0.0, outcome.latency_ms),
            "prompt": outcome.prompt[:MAX_AUDIT_TEXT], "response": outcome.response[:MAX_AUDIT_TEXT], "mode": self.mode,
            "prompt_sha256": outcome.prompt_sha256, "cache_hit": outcome.cache_hit,
            "prompt_tokens": outcome.prompt_tokens, "completion_tokens": outcome.completion_tokens,
        })

    # ------------------------------------------------------------------ state
    def snapshot(self) -> dict[str, Any]:
        return {
            "regimes": {s: {"label": v.label, "confirmed_label": v.confirmed_label, "confidence": v.confidence,
                            "probabilities": [list(p) for p in v.probabilities]} for s, v in self.regimes.items()},
            "headlines": {s: [[h.ts_event, h.news_source, h.headline, h.summary] for h in q] for s, q in self.headlines.items()},
            "switches": {s: list(q) for s, q in self.switches.items()},
        }

    @classmethod
    def restore(cls, settings: OversightSettings, state: dict[str, Any], *, source: str = "oversight/core") -> OversightEngine:
        engine = cls(settings, source=source)
        engine._regimes = {s: RegimeView(v["label"], v["confirmed_label"], v["confidence"],
                                        tuple((str(k), float(p)) for k, p in v["probabilities"]))
                          for s, v in state["regimes"].items()}
        engine.headlines = {s: deque((Headline(int(t), src, text, summary) for t, src, text, summary in items),
                                     maxlen=settings.news_max_items or None)
                            for s, items in state["headlines"].items()}
        engine.switches = {s: deque(int(t) for t in q) for s, q in state["switches"].items()}
        return engine
