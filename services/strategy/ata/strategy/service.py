"""The strategy service shell: bars, regime states and sentiment in; signals and targets out.

All logic is in :class:`ata.strategy.core.StrategyEngine` (with portfolio construction when
``portfolio`` is configured). The shell loads the strategy registry (plugins included) and the
numpy RL policy file, caches the engine state in Redis (on stop and every
``state_save_every_messages`` messages) and restores it on start, through
:class:`ata.runtime.statecache.StateCache`. Redis is only a cache.

Each fetched batch is handled in one call (the runtime's batch handling): one span, one produce
call and one acknowledgement wait per batch instead of per message, which were most of the
service's cost per bar (the engine itself is tens of microseconds).

Conservative fallback: an RL policy file that cannot be read or does not fit the feature set is
not used; the rl method falls back as the meta-strategy documents (rl → performance_regime →
inverse_volatility → equal_weight) and trading continues. The switch is published at start as
an ``AllocationFallbackEngaged`` (component ``rl_policy``) on ``strategy.allocation.v1``, like
the core's optimiser fallbacks. A loaded policy whose prediction fails at run time (it raises,
or its outputs or weights are unusable) falls back the same way for that bar, and the core
publishes an ``AllocationFallbackEngaged`` (component ``rl_policy``) caused by the bar. Every
fallback is counted in ``ata_strategy_allocation_fallbacks_total{component,reason}``.

With ``coordination`` configured, each decision's cross-strategy view is exported per symbol and
strategy: ``ata_strategy_max_correlation`` (highest rolling return correlation with another
strategy in use) and ``ata_strategy_redundancy_factor`` (the down-weighting it causes).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

from prometheus_client import Counter

from ata.events import REGISTRY, AllocationFallbackEngaged, BarClosed, Message, TargetProposed
from ata.quant.portfolio.coordination import FallbackRecord, GuardedAllocator
from ata.runtime import metrics
from ata.runtime.batching import each_message
from ata.runtime.bus import Delivery
from ata.runtime.config import RuntimeSettings, load_settings
from ata.runtime.service import Service, run_service
from ata.runtime.statecache import StateCache
from ata.strategy.config import StrategySettings
from ata.strategy.core import MetaStrategy, StrategyEngine
from ata.strategy.core.features import FEATURE_NAMES
from ata.strategy.core.meta import FALLBACK, RL_COMPONENT, Method, make_factory
from ata.strategy.core.policy import NumpyPolicy
from ata.strategy.core.portfolio import PortfolioConstructor
from ata.strategy.policy_file import load_policy
from ata.strategy.registry import available_strategies

SUBSCRIPTIONS = ("market.bars.v1", "regime.states.v1", "sentiment.scores.v1")

TARGETS = metrics.counter("ata_strategy_targets_total",
                          "Target proposals by method (aggregation, or optimiser with portfolio construction)", ("method",))
POLICY_LOADED = metrics.gauge("ata_strategy_rl_policy_loaded", "1 when a numpy RL policy is loaded")
FALLBACKS = metrics.counter("ata_strategy_allocation_fallbacks_total",
                            "Allocation fallbacks engaged (failed optimiser or RL policy)", ("component", "reason"))

MAX_CORRELATION = metrics.gauge("ata_strategy_max_correlation",
                                "Highest rolling return correlation of a strategy with another in use (coordination)",
                                ("symbol", "strategy"))
REDUNDANCY = metrics.gauge("ata_strategy_redundancy_factor",
                           "Down-weighting factor of a strategy for redundancy, 1 = none (coordination)",
                           ("symbol", "strategy"))


class StrategyService(Service):
    name = "strategy"
    subscriptions: ClassVar[tuple[str, ...]] = SUBSCRIPTIONS

    def __init__(self, settings: RuntimeSettings, strategy_settings: StrategySettings, *,
                 topic_names: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        if topic_names:
            self.registry = REGISTRY.renamed(topic_names)  # type: ignore[misc]  # per-instance topics
            self.subscriptions = tuple(topic_names.get(t, t) for t in SUBSCRIPTIONS)  # type: ignore[misc]
        super().__init__(settings, **kwargs)
        self.strategy_settings = strategy_settings
        self.policy_fallback: FallbackRecord | None = None
        self.engine = self._new_engine(self._load_policy())
        self.state_cache = StateCache(self.settings.redis_url, strategy_settings.state_key,
                                      save_every_messages=strategy_settings.state_save_every_messages, log=self.log)

    @classmethod
    def from_env(cls) -> Self:
        return cls(load_settings(RuntimeSettings), load_settings(StrategySettings))

    def _load_policy(self) -> NumpyPolicy | None:
        path = self.strategy_settings.policy_path
        POLICY_LOADED.set(0)
        if path is None:
            return None
        loaded = GuardedAllocator().guard(RL_COMPONENT, lambda: load_policy(path), _policy_problem)
        if isinstance(loaded, FallbackRecord):
            self.log.error("RL policy %s unusable, the rl method falls back: %s", path, loaded.detail)
            self.policy_fallback = loaded
            return None
        POLICY_LOADED.set(1)
        return loaded

    def _new_engine(self, policy: NumpyPolicy | None) -> StrategyEngine:
        settings = self.strategy_settings
        config = settings.meta_config()
        meta = MetaStrategy(config, factory=make_factory(config, available_strategies()), policy=policy)
        portfolio = None if settings.portfolio is None else PortfolioConstructor(
            settings.portfolio, settings.symbols, max_abs_target=config.max_abs_target,
            periods_per_year=config.periods_per_year)
        return StrategyEngine(meta, source=self.source, timeframe=settings.timeframe, symbols=settings.symbols,
                              publish_signals=settings.publish_signals, portfolio=portfolio)

    async def on_start(self) -> None:
        state = await self.state_cache.load()
        if state is not None:
            try:
                self.engine.restore(state)
            except (ValueError, KeyError, TypeError) as exc:  # a cache from another configuration
                self.log.warning("cached state does not fit the configuration, starting fresh: %s", exc)
                self.engine = self._new_engine(self.engine.meta.policy)
        if self.policy_fallback is not None:
            await self.publish([self._policy_fallback_event(self.policy_fallback)])
            _count_fallback(self.policy_fallback.component, self.policy_fallback.reason.value)

    def _policy_fallback_event(self, record: FallbackRecord) -> AllocationFallbackEngaged:
        now = self.now_ns()
        return AllocationFallbackEngaged.origin(
            natural_key=(self.source, record.component, str(self.strategy_settings.policy_path), now), ts_event=now,
            ts_init=now, source=self.source, component=record.component, reason=record.reason.value,
            detail=record.detail, fallback_method=FALLBACK[Method.RL].value)

    async def on_stop(self) -> None:
        await self.state_cache.close(self._snapshot)

    def _snapshot(self) -> dict[str, Any]:
        return self.engine.snapshot()

    async def handle_batch(self, batch: Sequence[tuple[Message, Delivery]]) -> Sequence[Sequence[Message] | Exception]:
        """Every message of a fetched batch through the engine, in fetch order; the runtime publishes all
        outputs in one call and commits the batch once they are acknowledged (a redelivered message yields
        the same outputs again: the engine drops nothing by its own state). A message the engine fails on
        is that message's result, dead-lettered by the runtime; the others go on."""
        results = each_message(batch, self._handle)
        await self.state_cache.handled(self._snapshot, count=len(batch))
        return results

    def _handle(self, message: Message) -> list[Message]:
        outputs = self.engine.handle(message)
        for out in outputs:
            if isinstance(out, TargetProposed):
                _targets_of(out.method).inc()
            elif isinstance(out, AllocationFallbackEngaged):
                _count_fallback(out.component, out.reason)
        if isinstance(message, BarClosed):
            self._report_coordination(message)
        return outputs

    def _report_coordination(self, bar: BarClosed) -> None:
        decision = self.engine.last_decision.get(bar.symbol)
        if decision is None or decision.ts_ns != bar.ts_event:
            return
        for view in decision.coordination:
            if view.max_correlation is not None:
                MAX_CORRELATION.labels(bar.symbol, view.strategy).set(view.max_correlation)
            REDUNDANCY.labels(bar.symbol, view.strategy).set(view.redundancy)


def _policy_problem(policy: NumpyPolicy) -> str | None:
    """Why a loaded policy cannot drive the meta-strategy (None: it can)."""
    if policy.n_features != len(FEATURE_NAMES):
        return f"policy expects {policy.n_features} features, the feature set has {len(FEATURE_NAMES)}"
    return None


@functools.cache
def _targets_of(method: str) -> Counter:
    """The target counter of ``method``, resolved once: ``labels()`` cost more than the rest of a bar's metrics."""
    return TARGETS.labels(method)


def _count_fallback(component: str, reason: str) -> None:
    FALLBACKS.labels(component, reason).inc()


def main() -> None:
    run_service(StrategyService)
