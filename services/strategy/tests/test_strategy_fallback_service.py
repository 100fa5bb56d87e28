"""The conservative fallback in the running service, on the real broker and Redis: a corrupt RL
policy file, a policy that fails at run time and a non-converging optimiser each engage the fallback,
an ``AllocationFallbackEngaged`` is published on ``strategy.allocation.v1`` and counted, and target
proposals keep flowing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

from prometheus_client import REGISTRY as METRICS

from ata.events import REGISTRY, AllocationFallbackEngaged, Message, TargetProposed
from ata.quant.portfolio.coordination import FALLBACK_METHOD
from ata.runtime.bus import KafkaBus
from ata.runtime.config import RuntimeSettings
from ata.runtime.kafka import provision_topics
from ata.runtime.testing import read_messages
from ata.strategy.config import StrategySettings
from ata.strategy.core import MetaStrategy, Method, StrategyEngine
from ata.strategy.core.portfolio import PortfolioConstructor, PortfolioSettings
from ata.strategy.policy_file import load_policy, save_policy
from ata.strategy.service import SUBSCRIPTIONS, StrategyService
from ata.strategy.testing import interleaved, overflowing_policy, universe_bars

WAIT_S = 60.0
OUTPUTS = ("strategy.signals.v1", "strategy.targets.v1", "strategy.allocation.v1", "system.heartbeats.v1")
PARAMS = {"ma_crossover": {"fast": 3, "slow": 8}, "ts_momentum": {"lookback": 10, "vol_window": 5},
          "mean_reversion": {"window": 5}, "donchian_breakout": {"window": 6}, "vol_managed": {"vol_window": 5}}


def fallbacks_counted(component: str, reason: str) -> float:
    value = METRICS.get_sample_value("ata_strategy_allocation_fallbacks_total", {"component": component, "reason": reason})
    return value or 0.0


def of_type(messages: list[Message], kind: type[TargetProposed]) -> list[TargetProposed]:
    return [m for m in messages if isinstance(m, kind)]


async def read_until(bootstrap: str, topic: str, done: Callable[[list[Message]], bool]) -> list[Message]:
    async with asyncio.timeout(WAIT_S):
        while True:
            messages = await read_messages(bootstrap, topic)
            if done(messages):
                return messages
            await asyncio.sleep(0.2)


async def test_corrupt_policy_and_non_converging_optimiser_fall_back_and_trading_continues(
        kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str], tmp_path: Path) -> None:
    names = {t: unique_name(t.split(".")[1]) for t in (*SUBSCRIPTIONS, *OUTPUTS)}
    registry = REGISTRY.renamed(names)
    await asyncio.to_thread(provision_topics, kafka_bootstrap, [registry.get(n) for n in names.values()])
    policy = tmp_path / "policy.npz"
    policy.write_bytes(b"PK\x03\x04 truncated download")  # a zip header and nothing else
    bars = universe_bars(120, synthetic=1)
    universe = tuple(sorted(bars))
    portfolio = PortfolioSettings(covariance_window_bars=60, covariance_min_bars=20,
                                  optimisers={"default": "risk_parity", "params": {"risk_parity": {"tol": 0.5}}})
    settings = StrategySettings(params=PARAMS, min_history_bars=5, symbols=universe, default_method=Method.RL,
                                methods_by_regime={}, policy_path=policy, publish_signals=False, portfolio=portfolio,
                                state_key=f"ata:strategy:test:{uuid.uuid4().hex}")
    runtime = RuntimeSettings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, instance_id="fallback-test", http_port=0)
    events = interleaved(bars)
    # What trading looks like without the policy: the meta-strategy's documented rl fallback chain.
    reference = StrategyEngine(MetaStrategy(settings.meta_config()), source="strategy/fallback-test", publish_signals=False,
                               portfolio=PortfolioConstructor(portfolio, universe, max_abs_target=1.0, periods_per_year=252.0))
    expected = [m for e in events for m in reference.handle(e)]
    expected_targets = {m.event_id: m for m in expected if isinstance(m, TargetProposed)}
    expected_fallbacks = {m.event_id: m for m in expected if isinstance(m, AllocationFallbackEngaged)}
    assert expected_targets and expected_fallbacks
    counted_before = {key: fallbacks_counted(*key) for key in (("rl_policy", "exception"),
                                                               ("optimiser:risk_parity", "not_converged"))}

    service = StrategyService(runtime, settings, topic_names=names, group_id=f"strategy-{uuid.uuid4().hex[:8]}",
                              heartbeat_topic=names["system.heartbeats.v1"])
    await service.start()
    try:
        assert service.engine.meta.policy is None and service.policy_fallback is not None
        async with KafkaBus(runtime, service="feeder", registry=registry) as bus:
            await bus.publish(events)
        proposals = await read_until(kafka_bootstrap, names["strategy.targets.v1"],
                                     lambda seen: len(of_type(seen, TargetProposed)) >= len(expected_targets))
        allocation = await read_until(kafka_bootstrap, names["strategy.allocation.v1"],
                                      lambda seen: len(seen) >= len(expected_fallbacks) + 1)
    finally:
        await service.stop()

    [policy_fallback] = [m for m in allocation if isinstance(m, AllocationFallbackEngaged) and m.component == "rl_policy"]
    assert policy_fallback.reason == "exception" and str(policy) in policy_fallback.detail
    assert policy_fallback.fallback_method == "performance_regime"
    optimiser_fallbacks = {m.event_id: m for m in allocation if m.event_id != policy_fallback.event_id}
    assert optimiser_fallbacks == expected_fallbacks
    assert {(m.reason, m.fallback_method) for m in optimiser_fallbacks.values()} == {("not_converged", FALLBACK_METHOD)}
    # Trading went on: every proposal of the reference run, once, the last bars included.
    targets = of_type(proposals, TargetProposed)
    assert {m.event_id: m for m in targets} == expected_targets and len(targets) == len(expected_targets)
    assert max(m.ts_event for m in targets) == max(m.ts_event for m in expected_targets.values()) > events[-10].ts_event
    assert fallbacks_counted("rl_policy", "exception") == counted_before[("rl_policy", "exception")] + 1
    assert (fallbacks_counted("optimiser:risk_parity", "not_converged")
            == counted_before[("optimiser:risk_parity", "not_converged")] + len(expected_fallbacks))


async def test_policy_failing_at_run_time_falls_back_and_publishes_each_failure(
        kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str], tmp_path: Path) -> None:
    names = {t: unique_name(t.split(".")[1]) for t in (*SUBSCRIPTIONS, *OUTPUTS)}
    registry = REGISTRY.renamed(names)
    await asyncio.to_thread(provision_topics, kafka_bootstrap, [registry.get(n) for n in names.values()])
    bars = universe_bars(200, synthetic=1)
    settings = StrategySettings(params=PARAMS, min_history_bars=5, default_method=Method.RL, methods_by_regime={},
                                publish_signals=False, policy_path=tmp_path / "policy.npz",
                                state_key=f"ata:strategy:test:{uuid.uuid4().hex}")
    save_policy(overflowing_policy(settings.strategies), tmp_path / "policy.npz")
    runtime = RuntimeSettings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, instance_id="rl-runtime-test", http_port=0)
    events = interleaved(bars)
    # The same loaded file in process: which bars it fails on, and the fallback each one gets.
    reference = StrategyEngine(MetaStrategy(settings.meta_config(), policy=load_policy(tmp_path / "policy.npz")),
                               source="strategy/rl-runtime-test", publish_signals=False)
    expected = [m for e in events for m in reference.handle(e)]
    expected_targets = {m.event_id: m for m in expected if isinstance(m, TargetProposed)}
    expected_fallbacks = {m.event_id: m for m in expected if isinstance(m, AllocationFallbackEngaged)}
    assert {(m.component, m.reason) for m in expected_fallbacks.values()} == {("rl_policy", "non_finite")}
    assert any(m.method == Method.RL.value for m in expected_targets.values())  # it fails on some bars only
    counted_before = fallbacks_counted("rl_policy", "non_finite")

    service = StrategyService(runtime, settings, topic_names=names, group_id=f"strategy-{uuid.uuid4().hex[:8]}",
                              heartbeat_topic=names["system.heartbeats.v1"])
    await service.start()
    try:
        assert service.engine.meta.policy is not None and service.policy_fallback is None  # the file itself loads
        async with KafkaBus(runtime, service="feeder", registry=registry) as bus:
            await bus.publish(events)
        proposals = await read_until(kafka_bootstrap, names["strategy.targets.v1"],
                                     lambda seen: len(of_type(seen, TargetProposed)) >= len(expected_targets))
        allocation = await read_until(kafka_bootstrap, names["strategy.allocation.v1"],
                                      lambda seen: len(seen) >= len(expected_fallbacks))
    finally:
        await service.stop()

    assert {m.event_id: m for m in allocation} == expected_fallbacks and len(allocation) == len(expected_fallbacks)
    targets = {m.event_id: m for m in of_type(proposals, TargetProposed)}
    assert targets == expected_targets
    for fallback in expected_fallbacks.values():  # each failing bar traded on the method it fell back to
        [target] = [t for t in targets.values() if t.causation_id == fallback.causation_id]
        assert target.method == fallback.fallback_method != Method.RL.value
    assert fallbacks_counted("rl_policy", "non_finite") == counted_before + len(expected_fallbacks)
