"""``ATA_EXECUTION_BROKERS=alpaca``: settings, and the execution service trading through a fake Alpaca over the real broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from ata.events import FillReported, Message, OrderAccepted, OrderFilled, Side, SubmitOrder, client_order_id_for
from ata.execution.brokers.alpaca import AlpacaBroker
from ata.execution.config import ExecutionSettings
from ata.execution.service import COMMANDS, ExecutionService, build_ports, namespaced, namespaced_registry
from ata.execution.testing import read_topic, until
from ata.execution.testing.fake_alpaca import FakeAlpaca
from ata.runtime.bus import KafkaBus
from ata.runtime.config import ConfigError, RuntimeSettings, load_settings
from ata.runtime.kafka import provision_topics


def test_alpaca_requires_keys_naming_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATA_EXECUTION_BROKERS", "alpaca")
    with pytest.raises(ConfigError) as raised:
        load_settings(ExecutionSettings)
    assert "ATA_EXECUTION_ALPACA_API_KEY" in str(raised.value) and "ATA_EXECUTION_ALPACA_SECRET_KEY" in str(raised.value)


def test_alpaca_builds_with_keys_and_placeholders_are_refused_in_prod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATA_EXECUTION_BROKERS", "sim,alpaca")
    monkeypatch.setenv("ATA_EXECUTION_ALPACA_API_KEY", "PKREALKEY123")
    monkeypatch.setenv("ATA_EXECUTION_ALPACA_SECRET_KEY", "changeme")
    settings = load_settings(ExecutionSettings)
    routes = build_ports(settings)
    assert [r.name for r in routes] == ["sim", "alpaca"] and isinstance(routes[1].port, AlpacaBroker)
    assert routes[1].port.paper and routes[1].port.base_url == ""  # paper by default
    monkeypatch.setenv("ATA_PROFILE", "prod")
    with pytest.raises(ConfigError) as raised:
        load_settings(ExecutionSettings)
    assert "ATA_EXECUTION_ALPACA_SECRET_KEY" in str(raised.value) and "changeme" not in str(raised.value)
    assert "ATA_EXECUTION_ALPACA_API_KEY" not in str(raised.value)


def test_prod_without_alpaca_needs_no_alpaca_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATA_PROFILE", "prod")
    monkeypatch.setenv("ATA_EXECUTION_BROKERS", "sim")
    assert load_settings(ExecutionSettings).alpaca_api_key is None
    monkeypatch.setenv("ATA_EXECUTION_BROKERS", "sim,ib")
    with pytest.raises(ConfigError, match=r"ATA_EXECUTION_BROKERS.*unknown broker"):
        load_settings(ExecutionSettings)


async def test_execution_service_trades_through_alpaca(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> None:
    namespace = f"a{uuid.uuid4().hex[:10]}"
    registry = namespaced_registry(namespace)
    await asyncio.to_thread(provision_topics, kafka_bootstrap, registry)
    async with FakeAlpaca() as fake:
        runtime = RuntimeSettings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, http_port=0, state_dir=tmp_path,
                                  instance_id="exec-alpaca")
        settings = ExecutionSettings(brokers="alpaca", alpaca_api_key=SecretStr(fake.key),
                                     alpaca_secret_key=SecretStr(fake.secret), alpaca_base_url=fake.url,
                                     alpaca_timeout_s=2.0, alpaca_silence_timeout_s=3.0, topic_namespace=namespace,
                                     redis_prefix=f"test:{namespace}", journal_recovery="off")
        service = ExecutionService(runtime, settings)
        intent = uuid.uuid4()
        cmd = SubmitOrder.origin(natural_key=(namespace,), ts_event=time.time_ns(), ts_init=time.time_ns(), source="risk/test",
                                 intent_id=intent, client_order_id=client_order_id_for(intent), symbol="MSFT",
                                 side=Side.SELL, quantity=6.0)
        await service.start()
        try:
            assert service.ready
            async with KafkaBus(RuntimeSettings(kafka_bootstrap=kafka_bootstrap, instance_id="risk-test"), service="risk",
                                registry=registry) as bus:
                await bus.publish_to(namespaced(COMMANDS, namespace), cmd, key=cmd.client_order_id)
                await until(lambda: cmd.client_order_id in fake.submissions, "the order reached Alpaca", 30.0)
                await fake.fill(cmd.client_order_id, 2, 400.0)
                await fake.fill(cmd.client_order_id, 4, 401.5)

                def filled(messages: list[Message]) -> bool:
                    return any(isinstance(m, OrderFilled) for m in messages)

                lifecycle = await read_topic(kafka_bootstrap, namespaced("orders.events.v1", namespace), filled)
                fills = await read_topic(kafka_bootstrap, namespaced("orders.fills.v1", namespace),
                                         lambda ms: sum(isinstance(m, FillReported) for m in ms) >= 2)
        finally:
            await service.stop()
    assert [type(m) for m in lifecycle if isinstance(m, OrderAccepted | OrderFilled)] == [OrderAccepted, OrderFilled]
    assert [(f.quantity, f.price, f.side) for f in fills if isinstance(f, FillReported)] == [
        (2.0, 400.0, Side.SELL), (4.0, 401.5, Side.SELL)]
    assert fake.posts == 1
