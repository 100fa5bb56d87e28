"""The service base against the real broker: trace linkage, probes, metrics, heartbeats, SIGTERM drain."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import aiohttp
import orjson
import pytest
from aiokafka import ConsumerRecord
from prometheus_client import REGISTRY as METRICS
from prometheus_client.parser import text_string_to_metric_families

from ata.events import BarClosed, HeartbeatEmitted, Message, ServiceStatus, TopicRegistry
from ata.runtime import telemetry
from ata.runtime.bus import ConsumerLoop, Delivery, KafkaBus
from ata.runtime.codec import decode
from ata.runtime.config import RuntimeSettings
from ata.runtime.infra import free_port
from ata.runtime.kafka import provision_topics
from ata.runtime.service import Phase, Service, ServiceFailedError
from ata.runtime.testing import read_topic

APP_PATH = Path(__file__).with_name("service_app.py")
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=5)
WAIT_S = 120.0  # generous: a child process importing and joining a group crawls on a loaded CI machine


def _load_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location("runtime_service_app", APP_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


app = _load_app()


@dataclass(frozen=True)
class Env:
    bootstrap: str
    redis_url: str
    source: str
    target: str
    heartbeats: str
    registry: TopicRegistry

    def settings(self, instance: str = "test-0") -> RuntimeSettings:
        return RuntimeSettings(kafka_bootstrap=self.bootstrap, redis_url=self.redis_url, instance_id=instance, http_port=0)


@pytest.fixture
def env(kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]) -> Env:
    source, target, heartbeats = unique_name("source"), unique_name("target"), unique_name("heartbeats")
    registry = app.relay_registry(source, target, heartbeat_topic=heartbeats)
    provision_topics(kafka_bootstrap, registry)
    return Env(kafka_bootstrap, redis_url, source, target, heartbeats, registry)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def until(predicate: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s}s waiting for {what}"
        await asyncio.sleep(0.02)


async def publish_bars(env: Env, bars: Sequence[BarClosed]) -> None:
    async with KafkaBus(env.settings("feeder"), service="feeder", registry=env.registry) as bus:
        for item in bars:
            await bus.publish_to(env.source, item, key=item.symbol)


async def http_get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session, session.get(f"http://127.0.0.1:{port}{path}") as resp:
        return resp.status, await resp.text()


def sample(name: str, **labels: str) -> float | None:
    return METRICS.get_sample_value(name, labels)


# -- trace linkage -------------------------------------------------------------------------------


async def test_span_of_downstream_handling_shares_the_upstream_trace(env: Env) -> None:
    """A background producer P publishes bars to X; A relays X -> Y; B consumes Y. One trace per bar."""
    exporter = telemetry.memory_exporter()
    names = {role: unique(f"svc-{role}") for role in "pab"}
    bars = [app.bar("AAPL", n) for n in range(3)]

    class Producer(Service):
        name = names["p"]
        registry = env.registry

        def route(self, message: Message) -> str:
            return env.source

        async def background(self) -> None:
            for item in bars:
                await self.publish([item])  # one publish per bar: one trace per bar

    relay_a = app.relay_class(names["a"], env.source, env.target, env.registry)(env.settings(), group_id=unique("g"),
                                                                            heartbeat_topic=env.heartbeats)
    sink_b = app.relay_class(names["b"], env.target, None, env.registry)(env.settings(), group_id=unique("g"),
                                                                         heartbeat_topic=env.heartbeats)
    await relay_a.start()
    await sink_b.start()
    producer = Producer(env.settings(), heartbeat_topic=env.heartbeats)
    try:
        await until(lambda: relay_a.ready and sink_b.ready, "both consumers assigned")
        await producer.start()
        await until(lambda: len(sink_b.handled) == len(bars), "B handled every relayed bar")
    finally:
        for service in (producer, sink_b, relay_a):
            await service.stop()

    def spans_of(service_name: str) -> dict[int, object]:
        return {s.context.trace_id: s for s in exporter.get_finished_spans()
                if s.attributes is not None and s.attributes.get("ata.service") == service_name}

    produced, handled_a, handled_b = spans_of(names["p"]), spans_of(names["a"]), spans_of(names["b"])
    assert len(produced) == len(bars), "each background publish starts its own trace"
    assert set(handled_b) == set(handled_a) == set(produced)
    for trace_id, span_b in handled_b.items():
        span_a = handled_a[trace_id]
        assert span_b.parent.span_id == span_a.context.span_id  # type: ignore[attr-defined]
        assert span_a.parent.span_id == produced[trace_id].context.span_id  # type: ignore[attr-defined]
        assert span_b.attributes["messaging.destination.name"] == env.target  # type: ignore[attr-defined]
    # B's outputs would carry the same trace: the relayed record's own header says so.
    relayed_causes = {m.causation_id for m, _ in sink_b.handled}
    assert relayed_causes == {b.event_id for b in bars}
    header_traces = {int(d.headers["traceparent"].split("-")[1], 16) for _, d in sink_b.handled}
    assert header_traces == set(produced)


# -- probes and metrics ---------------------------------------------------------------------------


async def test_probes_follow_the_lifecycle_and_metrics_parse(env: Env) -> None:
    name = unique("svc-probe")
    gate = asyncio.Event()
    relay = app.relay_class(name, env.source, env.target, env.registry)

    class Gated(relay):  # type: ignore[valid-type,misc]
        caught_up = False

        async def on_start(self) -> None:
            await gate.wait()

        def extra_readiness(self) -> bool:
            return self.caught_up

    service = Gated(env.settings(), group_id=unique("g"), heartbeat_topic=env.heartbeats)
    starting = asyncio.create_task(service.start())
    try:
        await until(lambda: service._http._port is not None, "http endpoints up while starting")
        port = service.http_port
        assert (await http_get(port, "/healthz"))[0] == 200
        status, body = await http_get(port, "/readyz")
        assert (status, orjson.loads(body)["reason"]) == (503, "starting")
        assert sample("ata_service_ready", service=name, instance="test-0") == 0.0

        gate.set()
        await asyncio.wait_for(starting, WAIT_S)
        await until(lambda: service.consumer is not None and service.consumer.assigned, "consumer assigned")
        status, body = await http_get(port, "/readyz")
        assert status == 503
        assert "service-specific" in orjson.loads(body)["reason"]

        service.caught_up = True
        status, _ = await http_get(port, "/readyz")
        assert status == 200
        assert sample("ata_service_ready", service=name, instance="test-0") == 1.0

        await publish_bars(env, [app.bar("MSFT", 0), app.bar("MSFT", 1)])
        await until(lambda: sample("ata_handler_duration_seconds_count", service=name, topic=env.source) == 2,
                    "two bars handled and their outputs acknowledged")
        status, text = await http_get(port, "/metrics")
        assert status == 200
    finally:
        gate.set()
        await service.stop()

    families = {family.name: family for family in text_string_to_metric_families(text)}
    expected = {"ata_events_in", "ata_events_out", "ata_handler_duration_seconds", "ata_consumer_lag", "ata_service_ready",
                "ata_heartbeats", "ata_dead_letters", "ata_duplicates_skipped", "ata_service_start_time_seconds"}
    assert expected <= set(families)

    def value(family: str, sample_name: str, **labels: str) -> float:
        matches = [s.value for s in families[family].samples
                   if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items())]
        assert len(matches) == 1, f"{sample_name}{labels}: {matches}"
        return matches[0]

    assert value("ata_events_in", "ata_events_in_total", service=name, topic=env.source) == 2
    assert value("ata_events_out", "ata_events_out_total", service=name, topic=env.target) == 2
    assert value("ata_handler_duration_seconds", "ata_handler_duration_seconds_count", service=name, topic=env.source) == 2
    assert value("ata_service_ready", "ata_service_ready", service=name) == 1
    assert sample("ata_service_ready", service=name, instance="test-0") == 0.0, "not ready once stopped"
    assert service.phase is Phase.STOPPED


# -- heartbeats ----------------------------------------------------------------------------------


async def test_heartbeats_report_status_counts_and_a_final_draining_beat(env: Env) -> None:
    name = unique("svc-beat")

    class Beating(app.relay_class(name, env.source, env.target, env.registry)):  # type: ignore[misc]
        heartbeat_interval_s = 0.2

    service = Beating(env.settings("beat-0"), group_id=unique("g"), heartbeat_topic=env.heartbeats)
    await service.start()
    try:
        await until(lambda: service.ready, "ready")
        await publish_bars(env, [app.bar("IBM", n) for n in range(3)])
        await until(lambda: len(service.handled) == 3, "three bars handled")
    finally:
        await service.stop()

    records = await read_topic(env.bootstrap, env.heartbeats)
    beats = [decode(r.value) for r in records if r.key == name.encode()]
    assert beats and all(isinstance(b, HeartbeatEmitted) for b in beats)
    heartbeats: list[HeartbeatEmitted] = [b for b in beats if isinstance(b, HeartbeatEmitted)]
    assert {(b.service, b.instance) for b in heartbeats} == {(name, "beat-0")}
    assert len({b.event_id for b in heartbeats}) == len(heartbeats), "every heartbeat has its own id"
    uptimes = [b.uptime_s for b in heartbeats]
    assert uptimes == sorted(uptimes)
    assert ServiceStatus.READY in {b.status for b in heartbeats}
    last = heartbeats[-1]
    assert last.status is ServiceStatus.DRAINING
    assert (last.events_in, last.events_out, last.consumer_lag) == (3, 3, 0)


# -- failures ------------------------------------------------------------------------------------


async def test_a_crashing_background_task_stops_the_service_as_failed(env: Env) -> None:
    class Crashing(Service):
        name = unique("svc-crash")

        async def background(self) -> None:
            raise RuntimeError("source exploded")

    service = Crashing(env.settings(), heartbeat_topic=env.heartbeats)
    with pytest.raises(ServiceFailedError, match="source exploded"):
        await asyncio.wait_for(service.run(), WAIT_S)
    assert service.phase is Phase.STOPPED
    assert service.live_reason() is not None


async def test_a_failing_handler_dead_letters_and_the_service_goes_on(env: Env) -> None:
    name = unique("svc-dlq")
    relay = app.relay_class(name, env.source, env.target, env.registry)

    class Picky(relay):  # type: ignore[valid-type,misc]
        async def handle(self, message: Message, delivery: Delivery) -> Sequence[Message]:
            assert isinstance(message, BarClosed)
            if message.close == 100.0:
                raise ValueError("refusing the first bar")
            return await super().handle(message, delivery)

    service = Picky(env.settings(), group_id=unique("g"), heartbeat_topic=env.heartbeats)
    await service.start()
    try:
        await until(lambda: service.ready, "ready")
        await publish_bars(env, [app.bar("NVDA", n) for n in range(3)])
        await until(lambda: len(service.handled) == 2, "the two good bars handled")
    finally:
        await service.stop()
    dead = [decode(r.value) for r in await read_topic(env.bootstrap, env.source + ".dlq")]
    assert [(d.stage, d.original_offset) for d in dead] == [("handle", 0)]  # type: ignore[attr-defined]
    assert "refusing the first bar" in dead[0].error  # type: ignore[attr-defined]
    relayed = [decode(r.value) for r in await read_topic(env.bootstrap, env.target)]
    assert sorted(m.causation_id for m in relayed) == sorted(app.bar("NVDA", n).event_id for n in (1, 2))  # type: ignore[type-var]


# -- SIGTERM -------------------------------------------------------------------------------------


async def test_sigterm_drains_commits_and_exits_zero(env: Env, tmp_path: Path) -> None:
    group = unique("g-relay")
    bars = [app.bar("TSLA", n) for n in range(30)]
    await publish_bars(env, bars)
    child_env = {
        **os.environ,
        "ATA_KAFKA_BOOTSTRAP": env.bootstrap, "ATA_REDIS_URL": env.redis_url, "ATA_INSTANCE_ID": "relay-0",
        "ATA_HTTP_PORT": str(free_port()), "RELAY_SOURCE_TOPIC": env.source, "RELAY_TARGET_TOPIC": env.target,
        "RELAY_GROUP": group, "RELAY_HEARTBEAT_TOPIC": env.heartbeats, "RELAY_HANDLER_DELAY_S": "0.1",
    }
    log_path = tmp_path / "relay.log"
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(APP_PATH), env=child_env, stdout=asyncio.subprocess.DEVNULL, stderr=log_file
        )
    try:
        relayed: list[ConsumerRecord] = []
        deadline = time.monotonic() + WAIT_S
        while len(relayed) < 3:
            assert proc.returncode is None, "service exited early"
            assert time.monotonic() < deadline, "the service relayed nothing"
            await asyncio.sleep(0.2)
            relayed = await read_topic(env.bootstrap, env.target)
        proc.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(proc.wait(), WAIT_S)
    finally:
        if proc.returncode is None:
            proc.kill()
            await asyncio.wait_for(proc.wait(), 5)
    stderr = log_path.read_text()
    assert returncode == 0, stderr
    logs = [orjson.loads(line) for line in stderr.splitlines()]
    assert {line["service"] for line in logs} == {"relay"}
    assert any(line["msg"] == "service stopped" for line in logs)

    handled = {decode(r.value).causation_id for r in await read_topic(env.bootstrap, env.target)}
    assert 3 <= len(handled) < len(bars), "SIGTERM arrived mid-stream"

    # A new member of the same group gets exactly what the service had not handled: nothing redelivered, nothing lost.
    seen: list[Message] = []

    async def collect(message: Message, _delivery: Delivery) -> None:
        seen.append(message)

    async with KafkaBus(env.settings("checker"), service=unique("checker"), registry=env.registry) as bus:
        loop = ConsumerLoop(bus, group, [env.source], collect)
        async with loop:
            # One key, one partition: a redelivered record would come before the unhandled ones.
            await until(lambda: len(seen) >= len(bars) - len(handled), "the unhandled remainder")
    seen_ids = [m.event_id for m in seen]
    assert len(seen_ids) == len(set(seen_ids))
    assert set(seen_ids).isdisjoint(handled)
    assert set(seen_ids) | handled == {b.event_id for b in bars}


async def test_a_bad_setting_refuses_to_start_naming_the_variable(env: Env) -> None:
    child_env = {
        **os.environ, "ATA_KAFKA_BOOTSTRAP": env.bootstrap, "ATA_HTTP_PORT": "not-a-port",
        "RELAY_SOURCE_TOPIC": env.source, "RELAY_TARGET_TOPIC": env.target, "RELAY_GROUP": unique("g"),
        "RELAY_HEARTBEAT_TOPIC": env.heartbeats,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(APP_PATH), env=child_env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), WAIT_S)
    assert proc.returncode == 2
    (line,) = [orjson.loads(text) for text in stderr.decode().splitlines()]
    assert line["level"] == "ERROR"
    assert "ATA_HTTP_PORT" in line["msg"]
