"""helm/ata rendered and linted offline with Helm's own Go SDK (helm-python-sdk), manifests checked
against the Kubernetes OpenAPI schemas (kubernetes-validate), values checked by values.schema.json."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from ata.runtime.config import RuntimeSettings, env_var

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "ata"
KUBE_VERSION = "1.30.0"
SERVICES = sorted(ep.name for ep in metadata.entry_points(group="ata.services"))
CRD_GROUP = "monitoring.coreos.com/"
Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    helm.disable_logging()  # the symlinked alerts file is reported at INFO on every load
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(chart: helm.Chart, values: dict[str, Any] | None = None) -> list[Manifest]:
    files = chart.render(values or {}, name="ata", namespace="trading")
    return [doc for name, text in sorted(files.items()) if name.endswith(".yaml")
            for doc in yaml.safe_load_all(text) if doc]


def by_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def container(deployment: Manifest) -> Manifest:
    containers: list[Manifest] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_lint_passes_strictly() -> None:
    report = helm.lint(CHART, strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_default_values_render_every_service(chart: helm.Chart) -> None:
    manifests = render(chart)
    for kind in ("Deployment", "Service", "PodDisruptionBudget"):
        assert sorted(by_kind(manifests, kind)) == [f"ata-{s}" for s in SERVICES], kind
    assert set(by_kind(manifests, "ConfigMap")) == {"ata-config"}
    assert by_kind(manifests, "ServiceMonitor") == {} and by_kind(manifests, "PrometheusRule") == {}
    assert by_kind(manifests, "Secret") == {}


@pytest.mark.parametrize("values", [
    {},
    {"metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
     "secrets": {"values": {"ATA_OVERSIGHT_API_KEY": "sk-test"}}},
], ids=["defaults", "everything-on"])
def test_rendered_manifests_are_valid_kubernetes_objects(chart: helm.Chart, values: dict[str, Any]) -> None:
    manifests = render(chart, values)
    checked = 0
    for manifest in manifests:
        if manifest["apiVersion"].startswith(CRD_GROUP):
            continue  # Prometheus Operator CRDs: checked in test_monitoring_objects_are_values_gated
        kubernetes_validate.validate(manifest, KUBE_VERSION, strict=True)
        checked += 1
    assert checked >= 3 * len(SERVICES) + 2


def test_probes_ports_and_commands_agree(chart: helm.Chart) -> None:
    manifests = render(chart)
    config = by_kind(manifests, "ConfigMap")["ata-config"]["data"]
    port = int(config["ATA_HTTP_PORT"])
    assert config["ATA_HTTP_HOST"] == "0.0.0.0"
    services = by_kind(manifests, "Service")
    for name, deployment in by_kind(manifests, "Deployment").items():
        service = name.removeprefix("ata-")
        spec = container(deployment)
        assert spec["command"] == ["python", "-m", f"ata.{service}"]
        assert spec["image"] == f"ghcr.io/ai-trading-agent/ata-{service}:0.1.0"
        assert spec["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        assert spec["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert spec["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert spec["resources"]["requests"] and spec["resources"]["limits"]["memory"]
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
        assert services[name]["spec"]["ports"][0]["targetPort"] == "http"
        assert services[name]["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_replicas_share_one_consumer_group_with_distinct_instance_ids(chart: helm.Chart) -> None:
    manifests = render(chart, {"services": {"strategy": {"enabled": True, "replicas": 4}}})
    deployment = by_kind(manifests, "Deployment")["ata-strategy"]
    assert deployment["spec"]["replicas"] == 4
    env = {e["name"]: e for e in container(deployment)["env"]}
    # The group id is the service name (no per-pod override); each pod reports its own name.
    assert not [n for n in env if n.endswith("GROUP_ID")]
    assert env["ATA_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    pdb = by_kind(manifests, "PodDisruptionBudget")["ata-strategy"]
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_external_endpoints_reach_every_service_as_known_settings(chart: helm.Chart) -> None:
    values = {"kafka": {"bootstrap": "b-1.msk.internal:9092,b-2.msk.internal:9092"},
              "redis": {"url": "rediss://cache.internal:6380/0"},
              "postgresql": {"url": "postgresql://ata@db.internal:5432/journal"},
              "config": {"extraEnv": {"ATA_KAFKA_MAX_POLL_RECORDS": 200}}}
    manifests = render(chart, values)
    config = by_kind(manifests, "ConfigMap")["ata-config"]["data"]
    assert config["ATA_KAFKA_BOOTSTRAP"] == "b-1.msk.internal:9092,b-2.msk.internal:9092"
    assert config["ATA_REDIS_URL"] == "rediss://cache.internal:6380/0"
    assert config["ATA_JOURNAL_URL"] == "postgresql://ata@db.internal:5432/journal"
    known = {env_var(RuntimeSettings, field) for field in RuntimeSettings.model_fields}
    assert set(config) <= known, sorted(set(config) - known)
    settings = RuntimeSettings(**{k.removeprefix("ATA_").lower(): v for k, v in config.items()})
    assert settings.kafka_max_poll_records == 200 and settings.http_port == 8080
    for deployment in by_kind(manifests, "Deployment").values():
        refs = container(deployment)["envFrom"]
        assert refs == [{"configMapRef": {"name": "ata-config"}}]


def test_existing_secret_is_loaded_after_the_config_and_never_created(chart: helm.Chart) -> None:
    manifests = render(chart, {"secrets": {"existingSecret": "ata-prod"}, "postgresql": {"url": ""}, "redis": {"url": ""}})
    assert by_kind(manifests, "Secret") == {}
    config = by_kind(manifests, "ConfigMap")["ata-config"]["data"]
    assert "ATA_JOURNAL_URL" not in config and "ATA_REDIS_URL" not in config
    for deployment in by_kind(manifests, "Deployment").values():
        assert container(deployment)["envFrom"] == [{"configMapRef": {"name": "ata-config"}},
                                                    {"secretRef": {"name": "ata-prod"}}]


def test_topic_provisioning_runs_as_a_pre_install_and_pre_upgrade_hook(chart: helm.Chart) -> None:
    job = by_kind(render(chart, {"kafka": {"bootstrap": "kafka.data:9092"}}), "Job")["ata-topics"]
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    spec = container(job)
    assert spec["command"] == ["ata", "topics", "provision", "--bootstrap", "kafka.data:9092"]
    assert spec["image"].endswith("/ata-runtime:0.1.0")
    assert by_kind(render(chart, {"kafka": {"provisionTopics": {"enabled": False}}}), "Job") == {}


def test_monitoring_objects_are_values_gated(chart: helm.Chart) -> None:
    manifests = render(chart, {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}},
                                           "prometheusRule": {"enabled": True}}})
    monitor = by_kind(manifests, "ServiceMonitor")["ata"]
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    selector = monitor["spec"]["selector"]["matchLabels"]
    for service in by_kind(manifests, "Service").values():
        assert selector.items() <= service["metadata"]["labels"].items()
    rule = by_kind(manifests, "PrometheusRule")["ata"]
    alerts = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    assert rule["spec"] == alerts


def test_a_disabled_service_renders_nothing(chart: helm.Chart) -> None:
    manifests = render(chart, {"services": {"sentiment": {"enabled": False, "replicas": 1}}})
    names = {m["metadata"]["name"] for m in manifests}
    assert "ata-sentiment" not in names and "ata-risk" in names


@pytest.mark.parametrize(("values", "message"), [
    ({"kafka": {"bootstrap": None}}, "at '/kafka': missing property 'bootstrap'"),
    ({"kafka": {"bootstrap": ""}}, "at '/kafka/bootstrap'"),
    ({"kafka": {"bootstrap": "kafka"}}, "does not match pattern"),
    ({"services": {"riks": {"enabled": True, "replicas": 1}}}, "invalid propertyName 'riks'"),
    ({"config": {"profile": "production"}}, "at '/config/profile'"),
    ({"config": {"extraEnv": {"KAFKA": "x"}}}, "invalid propertyName 'KAFKA'"),
], ids=["no-bootstrap", "empty-bootstrap", "no-port", "unknown-service", "bad-profile", "not-an-ata-variable"])
def test_invalid_values_are_refused_with_a_clear_message(chart: helm.Chart, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError) as caught:
        render(chart, values)
    assert message in str(caught.value)


def test_a_journal_without_a_database_is_refused(chart: helm.Chart) -> None:
    with pytest.raises(helm.HelmRenderError, match=r"postgresql\.url is required"):
        render(chart, {"postgresql": {"url": ""}})


def test_lint_reports_a_values_file_without_a_kafka_bootstrap(tmp_path: Path) -> None:
    values_file = tmp_path / "values-external.yaml"
    values_file.write_text("kafka:\n  bootstrap: null\nredis:\n  url: redis://cache:6379/0\n", encoding="utf-8")
    report = helm.lint(CHART, yaml.safe_load(values_file.read_text(encoding="utf-8")))
    assert report["errors"] == ["- at '/kafka': missing property 'bootstrap'\n"]


def test_the_readme_values_example_renders(chart: helm.Chart) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    example = yaml.safe_load(readme.split("# values-prod.yaml\n", 1)[1].split("```", 1)[0])
    manifests = render(chart, example)
    assert by_kind(manifests, "Deployment")["ata-strategy"]["spec"]["replicas"] == 4
    assert set(by_kind(manifests, "ServiceMonitor")) == {"ata"}
    risk = container(by_kind(manifests, "Deployment")["ata-risk"])
    assert risk["image"] == "registry.example.com/ata-risk:0.1.0"
    assert {"secretRef": {"name": "ata-secrets"}} in risk["envFrom"]
