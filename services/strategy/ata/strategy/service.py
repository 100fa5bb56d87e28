"""The strategy service shell: bars, regime states and sentiment in; signals and targets out.

All logic is in :class:`ata.strategy.core.StrategyEngine`. The shell loads the strategy registry
(plugins included) and the numpy RL policy file (an unreadable policy is logged and the rl method
falls back, documented in the meta-strategy), caches the engine state in Redis (on stop and every
``state_save_every_messages`` messages) and restores it on start, through
:class:`ata.runtime.statecache.StateCache`. Redis is only a cache.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

from ata.events import REGISTRY, Message, TargetProposed
from ata.runtime import metrics
from ata.runtime.bus import Delivery
from ata.runtime.config import RuntimeSettings, load_settings
from ata.runtime.service import Service, run_service
from ata.runtime.statecache import StateCache
from ata.strategy.config import StrategySettings
from ata.strategy.core import MetaStrategy, StrategyEngine
from ata.strategy.core.meta import make_factory
from ata.strategy.core.policy import NumpyPolicy, PolicyError
from ata.strategy.policy_file import load_policy
from ata.strategy.registry import available_strategies

SUBSCRIPTIONS = ("market.bars.v1", "regime.states.v1", "sentiment.scores.v1")

TARGETS = metrics.counter("ata_strategy_targets_total", "Target proposals by aggregation method", ("method",))
POLICY_LOADED = metrics.gauge("ata_strategy_rl_policy_loaded", "1 when a numpy RL policy is loaded")


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
        self.engine = self._new_engine(self._load_policy())
        self.state_cache = StateCache(self.settings.redis_url, strategy_settings.state_key,
                                      save_every_messages=strategy_settings.state_save_every_messages, log=self.log)

    @classmethod
    def from_env(cls) -> Self:
        return cls(load_settings(RuntimeSettings), load_settings(StrategySettings))

    def _load_policy(self) -> NumpyPolicy | None:
        path = self.strategy_settings.policy_path
        if path is None:
            POLICY_LOADED.set(0)
            return None
        try:
            policy = load_policy(path)
        except PolicyError as exc:
            self.log.error("RL policy unusable, the rl method falls back: %s", exc)
            POLICY_LOADED.set(0)
            return None
        POLICY_LOADED.set(1)
        return policy

    def _new_engine(self, policy: NumpyPolicy | None) -> StrategyEngine:
        config = self.strategy_settings.meta_config()
        meta = MetaStrategy(config, factory=make_factory(config, available_strategies()), policy=policy)
        return StrategyEngine(meta, source=self.source, timeframe=self.strategy_settings.timeframe,
                              symbols=self.strategy_settings.symbols, publish_signals=self.strategy_settings.publish_signals)

    async def on_start(self) -> None:
        state = await self.state_cache.load()
        if state is not None:
            try:
                self.engine.restore(state)
            except (ValueError, KeyError, TypeError) as exc:  # a cache from another configuration
                self.log.warning("cached state does not fit the configuration, starting fresh: %s", exc)
                self.engine = self._new_engine(self.engine.meta.policy)

    async def on_stop(self) -> None:
        await self.state_cache.close(self._snapshot)

    def _snapshot(self) -> dict[str, Any]:
        return self.engine.snapshot()

    async def handle(self, message: Message, delivery: Delivery) -> Sequence[Message]:
        outputs = self.engine.handle(message)
        for out in outputs:
            if isinstance(out, TargetProposed):
                TARGETS.labels(out.method).inc()
        await self.state_cache.handled(self._snapshot)
        return outputs


def main() -> None:
    run_service(StrategyService)
