"""End to end on the embedded broker: the strategy service publishes its adaptive strategy switches,
and oversight (rule-based reviewer) publishes a review of each real switch event."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from ata.events import REGISTRY, OversightReviewed, StrategySwitched
from ata.oversight.config import OversightSettings
from ata.oversight.service import SUBSCRIPTIONS as OVERSIGHT_TOPICS
from ata.oversight.service import OversightService
from ata.oversight.testing import collect
from ata.runtime.bus import KafkaBus
from ata.runtime.config import RuntimeSettings
from ata.runtime.kafka import provision_topics
from ata.strategy.config import StrategySettings
from ata.strategy.core import MetaStrategy, StrategyEngine
from ata.strategy.data import load_bars
from ata.strategy.service import SUBSCRIPTIONS as STRATEGY_TOPICS
from ata.strategy.service import StrategyService
from ata.strategy.testing import bar_event

WAIT_S = 60.0
OUTPUTS = ("strategy.signals.v1", "strategy.allocation.v1", "oversight.reviews.v1", "system.heartbeats.v1")


async def test_real_strategy_switches_are_reviewed_by_oversight(kafka_bootstrap: str, redis_url: str,
                                                                 unique_name: Callable[[str], str]) -> None:
    names = {t: unique_name(t.split(".")[1]) for t in {*STRATEGY_TOPICS, *OVERSIGHT_TOPICS, *OUTPUTS}}
    registry = REGISTRY.renamed(names)
    await asyncio.to_thread(provision_topics, kafka_bootstrap, [registry.get(n) for n in names.values()])
    tag = uuid.uuid4().hex[:8]

    def runtime(role: str) -> RuntimeSettings:
        return RuntimeSettings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, instance_id=f"{role}-{tag}", http_port=0)

    strategy_settings = StrategySettings(publish_signals=False, state_key=f"ata:strategy:test:{tag}")
    # Only switches are subjects here: targets stay below the review thresholds.
    oversight_settings = OversightSettings(mode="advisory", provider="rules", review_min_notional=1e15,
                                           review_min_abs_weight=100.0, review_regime_changes=False,
                                           rule_max_switches=2, rule_switch_window_ms=365 * 86_400_000,
                                           redis_prefix=f"ata:oversight:test:{tag}")
    window_ns = oversight_settings.rule_switch_window_ms * 1_000_000
    bars = [bar_event("SPX", b) for b in load_bars("sp500")[:260]]
    reference = StrategyEngine(MetaStrategy(strategy_settings.meta_config()), publish_signals=False)
    expected = [m for b in bars for m in reference.handle(b) if isinstance(m, StrategySwitched)]
    assert len(expected) >= 3, "the series must make adaptive switching act"

    strategy = StrategyService(runtime("strategy"), strategy_settings, topic_names=names, group_id=f"strategy-{tag}",
                               heartbeat_topic=names["system.heartbeats.v1"])
    oversight = OversightService(runtime("oversight"), oversight_settings, registry=registry, topic_names=names,
                                 group_id=f"oversight-{tag}", heartbeat_topic=names["system.heartbeats.v1"])
    try:
        # Started together: each start waits about half the session timeout for its group join (~3 s each).
        await asyncio.gather(oversight.start(), strategy.start())
        async with KafkaBus(runtime("feeder"), service="feeder", registry=registry) as bus:
            await bus.publish(bars)
        reviews = await collect(kafka_bootstrap, names["oversight.reviews.v1"],
                                lambda seen: len(seen) >= len(expected), timeout_s=WAIT_S)
        published = await collect(kafka_bootstrap, names["strategy.targets.v1"],
                                  lambda seen: sum(isinstance(m, StrategySwitched) for m in seen) >= len(expected),
                                  timeout_s=WAIT_S)
    finally:
        await strategy.stop()
        await oversight.stop()

    switches = [m for m in published if isinstance(m, StrategySwitched)]
    assert [(s.strategy, s.active, s.ts_event) for s in switches] == [(s.strategy, s.active, s.ts_event) for s in expected]
    assert all(s.source == f"strategy/strategy-{tag}" for s in switches)
    by_subject = {r.subject_event_id: r for r in reviews if isinstance(r, OversightReviewed)}
    assert set(by_subject) == {s.event_id for s in switches} and len(reviews) == len(switches)
    for i, switch in enumerate(switches):
        review = by_subject[switch.event_id]
        assert review.subject_type == "StrategySwitch" and review.symbol == "SPX" and review.provider == "rules"
        assert review.causation_id == switch.event_id and review.correlation_id == switch.correlation_id
        # The rule: more than rule_max_switches switches of a symbol within the window is rejected.
        recent = sum(1 for s in switches[: i + 1] if switch.ts_event - s.ts_event <= window_ns)
        assert review.verdict.value == ("reject" if recent > oversight_settings.rule_max_switches else "approve"), review
    assert {r.verdict.value for r in by_subject.values()} == {"approve", "reject"}  # both sides of the rule were exercised
