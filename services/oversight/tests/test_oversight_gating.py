"""Gating mode end to end: strategy targets -> oversight (scripted LLM) -> risk, over the real embedded broker and Redis.

Risk (unchanged) waits for a verdict on every gated target up to its timeout, then applies its
fallback. Oversight and risk run in-process as real services on isolated topics.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY as METRICS

from ata.events import DenialReason, Message, OrderDenied, OversightReviewed, SubmitOrder, TargetProposed, Verdict
from ata.oversight.config import OversightSettings
from ata.oversight.core import data_block
from ata.oversight.service import SUBSCRIPTIONS as OVERSIGHT_TOPICS
from ata.oversight.service import OversightService
from ata.oversight.testing import NS_PER_S, Action, Reply, ScriptedLLMServer, Stall, collect, verdict_json
from ata.oversight.testing import target as make_target
from ata.risk.config import RiskSettings
from ata.risk.service import SUBSCRIPTIONS as RISK_TOPICS
from ata.risk.service import RiskService, renamed_registry
from ata.risk.testing import bar
from ata.runtime.bus import KafkaBus
from ata.runtime.config import RuntimeSettings
from ata.runtime.kafka import provision_topics

OUTPUTS = ("oversight.reviews.v1", "orders.commands.v1", "risk.decisions.v1", "risk.state.v1", "risk.limits.v1",
           "portfolio.snapshots.v1", "system.heartbeats.v1")
WAIT_S = 30.0
MINUTE = 60 * NS_PER_S


async def until(condition: Callable[[], bool], failure: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, failure
        await asyncio.sleep(0.05)


@dataclass
class Rig:
    bootstrap: str
    names: dict[str, str]
    bus: KafkaBus
    risk: RiskService
    server: ScriptedLLMServer

    async def market(self, symbols: tuple[str, ...], now_ns: int) -> None:
        """Recent bars for ``symbols``, consumed by risk before any target (topics are not ordered with each other)."""
        await self.bus.publish([bar(s, now_ns - (10 - i) * MINUTE, 100.0) for s in symbols for i in range(10)])
        await until(lambda: all(s in self.risk.engine.markets for s in symbols), "risk did not consume the bars")

    async def outcomes(self, targets: list[TargetProposed]) -> dict[str, Message]:
        """Risk's decision (an order or a denial) per target symbol, once every target has one."""
        symbols = {t.symbol for t in targets}

        def decided(messages: list[Message]) -> dict[str, Message]:
            return {m.symbol: m for m in messages if isinstance(m, SubmitOrder | OrderDenied) and m.symbol in symbols}

        async def read(topic: str) -> list[Message]:
            return await collect(self.bootstrap, self.names[topic], lambda _seen: True, timeout_s=WAIT_S)

        deadline = time.monotonic() + WAIT_S
        while True:
            found = decided([*await read("orders.commands.v1"), *await read("risk.decisions.v1")])
            if set(found) == symbols:
                return found
            assert time.monotonic() < deadline, f"decisions so far: {sorted(found)}"
            await asyncio.sleep(0.1)


def by_symbol(script: dict[str, Action]) -> Callable[[dict[str, Any]], Action]:
    """Answer each request by the symbol in its data block."""
    def respond(body: dict[str, Any]) -> Action:
        user = body["messages"][-1]["content"]
        return script[orjson.loads(data_block(user))["symbol"]]
    return respond


@asynccontextmanager
async def rig(kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str], script: dict[str, Action], *,
              risk_overrides: dict[str, Any], oversight_overrides: dict[str, Any]) -> AsyncIterator[Rig]:
    names = {t: unique_name(t.split(".")[1]) for t in {*RISK_TOPICS, *OVERSIGHT_TOPICS, *OUTPUTS}}
    registry = renamed_registry(names)
    await asyncio.to_thread(provision_topics, kafka_bootstrap, [registry.get(n) for n in names.values()])
    tag = uuid.uuid4().hex[:8]
    # The rig's market data is stamped with the machine clock, and the timeouts must fire with no further event.
    risk_settings = RiskSettings(
        clock="wall", oversight_mode="gating", oversight_min_notional=0.0, tick_interval_ms=50, position_vol_target_annual=0.0,
        kelly_fraction=0.0, regime_scaling_enabled=False, stress_enabled=False, drawdown_enabled=False,
        max_order_notional=1e8, max_position_notional=1e8, max_gross_exposure=1e8, max_net_exposure=1e8, max_leverage=100.0,
        state_key=f"ata:risk:test:{tag}", snapshot_interval_ms=3_600_000, **risk_overrides)
    heartbeat = names["system.heartbeats.v1"]

    def runtime(role: str) -> RuntimeSettings:
        return RuntimeSettings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, instance_id=f"{role}-{tag}", http_port=0)

    async with ScriptedLLMServer(by_symbol(script)) as server:
        oversight_settings = OversightSettings(
            mode="gating", provider="openai", base_url=server.openai_url, model="scripted-1", api_key="test-key",
            review_min_notional=0.0, retry_attempts=1, cache_ttl_s=0, redis_prefix=f"ata:oversight:test:{tag}",
            **oversight_overrides)
        risk = RiskService(runtime("risk"), risk_settings, topic_names=names, group_id=f"risk-{tag}", heartbeat_topic=heartbeat)
        oversight = OversightService(runtime("oversight"), oversight_settings, registry=registry, topic_names=names,
                                     group_id=f"oversight-{tag}", heartbeat_topic=heartbeat)
        try:
            # Started together: each start waits about half the session timeout for its group join (~3 s each).
            await asyncio.gather(risk.start(), oversight.start())
            async with KafkaBus(runtime("feeder"), service="feeder", registry=registry) as bus:
                yield Rig(kafka_bootstrap, names, bus, risk, server)
        finally:
            await oversight.stop()
            await risk.stop()


async def test_gating_veto_approval_modification_and_fallbacks(kafka_bootstrap: str, redis_url: str,
                                                               unique_name: Callable[[str], str]) -> None:
    script: dict[str, Action] = {
        "AAA": Reply(verdict_json("approve", rationale="fine")),
        "BBB": Reply(verdict_json("reject", rationale="earnings tomorrow", flags=("event_risk",))),
        "CCC": Reply(verdict_json("modify", max_target_weight=0.1, rationale="halve it")),
        "DDD": Stall(30.0, verdict_json("approve")),  # the request times out -> the rules' verdict (cap 1.0)
        "EEE": Reply("sure, go ahead"),  # malformed -> the rules' verdict (approve)
    }
    reviews_before = METRICS.get_sample_value("ata_oversight_reviews_total",
                                              {"subject_type": "TargetProposed", "verdict": "reject"}) or 0.0
    # Every target gets a verdict, so risk's timeout must never decide: it counts from the targets' time, which
    # precedes the wait for risk to consume the bars, and costs nothing when the verdicts arrive. The attempt
    # timeout cuts DDD's stall but must not cut the other, immediate answers of a loaded machine (500 ms left them
    # 300 ms of jitter, what lost a race in CI); the deadline stays far above it so that the stall ends as a request
    # timeout (an 800 ms deadline once won the race under load).
    async with rig(kafka_bootstrap, redis_url, unique_name, script, risk_overrides={"oversight_timeout_ms": 120_000},
                   oversight_overrides={"request_timeout_ms": 3_000, "deadline_ms": 30_000}) as r:
        now = time.time_ns()
        await r.market(tuple(script), now)
        weights = {"AAA": 0.25, "BBB": 0.25, "CCC": 0.2, "DDD": 1.5, "EEE": 0.25}
        targets = [make_target(s, now, w) for s, w in weights.items()]
        await r.bus.publish(targets)
        decisions = await r.outcomes(targets)
        reviews = await collect(kafka_bootstrap, r.names["oversight.reviews.v1"], lambda seen: len(seen) >= len(targets))
    quantity = {s: m.quantity for s, m in decisions.items() if isinstance(m, SubmitOrder)}
    # 1e6 equity at 100.0: weight 0.25 -> 2,500 shares; modified 0.1 -> 1,000; DDD capped by the rules at 1.0 -> 10,000.
    assert quantity == {"AAA": 2500, "CCC": 1000, "DDD": 10_000, "EEE": 2500}
    veto = decisions["BBB"]
    assert isinstance(veto, OrderDenied) and veto.reason is DenialReason.OVERSIGHT_REJECTED
    assert "earnings tomorrow" in veto.detail
    by_subject = {m.symbol: m for m in reviews if isinstance(m, OversightReviewed)}
    assert {t.symbol: t.event_id for t in targets} == {s: m.subject_event_id for s, m in by_subject.items()}
    assert [by_subject[s].verdict for s in sorted(by_subject)] == [Verdict.APPROVE, Verdict.REJECT, Verdict.MODIFY,
                                                                   Verdict.MODIFY, Verdict.APPROVE]
    assert [by_subject[s].fallback_used for s in sorted(by_subject)] == [False, False, False, True, True]
    assert by_subject["DDD"].provider == "rules" and "fallback_timeout" in by_subject["DDD"].risk_flags
    assert by_subject["EEE"].response == "sure, go ahead" and "fallback_malformed" in by_subject["EEE"].risk_flags
    for review in by_subject.values():
        assert review.mode == "gating" and "BEGIN_UNTRUSTED_DATA" in review.prompt and review.latency_ms > 0
    assert (METRICS.get_sample_value("ata_oversight_reviews_total", {"subject_type": "TargetProposed", "verdict": "reject"})
            == reviews_before + 1)


@pytest.mark.parametrize(("policy", "expected"), [("deny", OrderDenied), ("allow", SubmitOrder)])
async def test_gating_timeout_follows_risk_policy(kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str],
                                                  policy: str, expected: type[Message]) -> None:
    """The LLM stalls longer than risk waits: risk applies its configured fallback; the late verdict changes nothing.

    The stall lasts until risk has decided (no race between risk's timeout and the LLM's answer), then the LLM
    vetoes: a veto that would have changed either policy's decision, had it come in time.
    """
    script: dict[str, Action] = {"TTT": Stall(120.0, verdict_json("reject"))}
    async with rig(kafka_bootstrap, redis_url, unique_name, script,
                   risk_overrides={"oversight_timeout_ms": 500, "oversight_fallback": policy},
                   oversight_overrides={"request_timeout_ms": 120_000, "deadline_ms": 120_000}) as r:
        now = time.time_ns()
        await r.market(("TTT",), now)
        target = make_target("TTT", now, 0.25)
        await r.bus.publish([target])
        decision = (await r.outcomes([target]))["TTT"]
        r.server.release()
        [late] = await collect(kafka_bootstrap, r.names["oversight.reviews.v1"], lambda seen: len(seen) >= 1)
        # Risk keeps a verdict for no pending target among its early reviews: it has consumed the late one.
        await until(lambda: str(target.event_id) in r.risk.engine.early_reviews, "risk did not consume the late verdict")
        orders = await collect(kafka_bootstrap, r.names["orders.commands.v1"], lambda _seen: True)
        denials = await collect(kafka_bootstrap, r.names["risk.decisions.v1"], lambda _seen: True)
    assert isinstance(decision, expected)
    if isinstance(decision, OrderDenied):
        assert decision.reason is DenialReason.OVERSIGHT_TIMEOUT
    assert len(orders) + len(denials) == 1  # exactly one decision for the target
    assert isinstance(late, OversightReviewed) and late.subject_event_id == target.event_id
    assert late.verdict is Verdict.REJECT and not late.fallback_used
