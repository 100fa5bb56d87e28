"""docker-compose.yml: valid under the Compose specification (strict parser, no engine needed) and
consistent with the installed services — every ``ata.services`` entry point runs, with settings that load."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_spec import PyCompose

from ata.runtime.config import RuntimeSettings, ServiceSettings, env_var, load_settings

ROOT = Path(__file__).resolve().parents[2]
INFRA = {"kafka", "redis", "postgres", "topics"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    # PyYAML resolves anchors and merge keys as docker compose does; the strict parser checks the result.
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    return loaded


def installed_services() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group="ata.services")}


def settings_classes(service: str) -> list[type[ServiceSettings]]:
    module = importlib.import_module(f"ata.{service}.config")
    return [c for c in vars(module).values() if inspect.isclass(c) and issubclass(c, ServiceSettings)
            and c.__module__ == module.__name__]


def test_compose_file_is_valid_under_the_compose_specification(compose: dict[str, Any]) -> None:
    parsed = PyCompose.from_json(json.dumps(compose))
    parsed.validate()  # every referenced volume/network/secret is declared
    assert set(parsed.service_names()) == set(compose["services"])


def test_the_strict_parser_refuses_an_unknown_key(compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["risk"]["helthcheck"] = broken["services"]["risk"].pop("healthcheck")
    with pytest.raises(ValueError, match="helthcheck"):
        PyCompose.from_json(json.dumps(broken))


def test_every_installed_service_and_nothing_else_runs(compose: dict[str, Any]) -> None:
    services = installed_services()
    assert set(compose["services"]) - INFRA == set(services)
    for name, entry_point in services.items():
        spec = compose["services"][name]
        assert spec["build"]["args"]["SERVICE"] == name
        assert spec["build"]["dockerfile"] == "deploy/Dockerfile"
        assert spec["command"] == ["python", "-m", f"ata.{name}"]
        assert importlib.util.find_spec(f"ata.{name}.__main__") is not None, f"python -m ata.{name} has no __main__"
        assert entry_point.value == f"ata.{name}.service:main"


def test_services_wait_for_healthy_infrastructure_and_provisioned_topics(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in installed_services():
        depends = services[name]["depends_on"]
        assert {k: v["condition"] for k, v in depends.items() if k in INFRA} == {
            "kafka": "service_healthy", "redis": "service_healthy", "postgres": "service_healthy",
            "topics": "service_completed_successfully"}
        for dependency in depends:
            assert dependency in services
            assert "healthcheck" in services[dependency] or dependency == "topics"
    assert services["topics"]["command"][:3] == ["ata", "topics", "provision"]
    assert services["topics"]["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert services["topics"]["restart"] == "no"


def test_kafka_runs_in_kraft_mode_without_topic_auto_creation(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "CONTROLLER://" in env["KAFKA_LISTENERS"] and "ZOOKEEPER" not in json.dumps(env).upper()
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert f"{advertised['PLAINTEXT']}" == compose["services"]["topics"]["command"][-1]


def test_ports_and_probes_agree_with_the_http_port(compose: dict[str, Any]) -> None:
    host_ports = []
    for name in installed_services():
        spec = compose["services"][name]
        port = spec["environment"]["ATA_HTTP_PORT"]
        assert spec["environment"]["ATA_HTTP_HOST"] == "0.0.0.0"
        host, container = spec["ports"][0].split(":")
        assert container == port
        host_ports.append(host)
        probe = " ".join(spec["healthcheck"]["test"])
        assert re.search(rf"http://127\.0\.0\.1:{port}/(healthz|readyz)", probe), probe
    assert len(set(host_ports)) == len(host_ports), "two services publish the same host port"


@pytest.mark.parametrize("service", sorted(installed_services()))
def test_each_service_environment_loads_its_settings(
    compose: dict[str, Any], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {key: str(value) for key, value in compose["services"][service]["environment"].items()}
    known = {env_var(RuntimeSettings, f) for f in RuntimeSettings.model_fields}
    classes = settings_classes(service)
    for cls in classes:
        known |= {env_var(cls, f) for f in cls.model_fields}
    assert set(env) <= known, f"variables no settings class reads: {sorted(set(env) - known)}"
    for key, value in env.items():
        monkeypatch.setenv(key, value.replace("${ATA_POSTGRES_PASSWORD:-ata-dev-only}", "ata-dev-only"))
    runtime = load_settings(RuntimeSettings)
    assert runtime.kafka_bootstrap == "kafka:9092"
    assert runtime.journal_url.startswith("postgresql://")
    for cls in classes:
        load_settings(cls)  # raises ConfigError naming the variable on a bad value
