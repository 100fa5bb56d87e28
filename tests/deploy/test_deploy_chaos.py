"""chaos/: scenario files load, Chaos Mesh manifests are well-formed and select pods the chart
renders, and one local scenario runs end to end on the embedded infrastructure."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from ata.chaos.cli import app
from ata.chaos.runner import ChaosRun
from ata.chaos.scenario import FaultKind, ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "chaos" / "scenarios").glob("*.yaml"))
MESH = sorted((ROOT / "chaos" / "mesh").glob("*.yaml"))
SERVICES = {ep.name for ep in metadata.entry_points(group="ata.services")}

_SELECTOR = {"type": "object", "additionalProperties": False, "minProperties": 1, "properties": {
    "namespaces": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    "labelSelectors": {"type": "object", "additionalProperties": {"type": "string"}},
    "expressionSelectors": {"type": "array", "items": {
        "type": "object", "required": ["key", "operator"], "additionalProperties": False,
        "properties": {"key": {"type": "string"}, "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                       "values": {"type": "array", "items": {"type": "string"}}}}}}}
_MODE = {"enum": ["one", "all", "fixed", "fixed-percent", "random-max-percent"]}
_DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"}
#: The subset of the Chaos Mesh v1alpha1 CRDs (PodChaos, NetworkChaos) these manifests use.
MESH_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "chaos-mesh.org/v1alpha1"},
        "kind": {"enum": ["PodChaos", "NetworkChaos"]},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
    },
    "allOf": [
        {"if": {"properties": {"kind": {"const": "PodChaos"}}},
         "then": {"properties": {"spec": {"type": "object", "additionalProperties": False,
                                          "required": ["action", "mode", "selector"], "properties": {
             "action": {"enum": ["pod-kill", "pod-failure", "container-kill"]}, "mode": _MODE, "value": {"type": "string"},
             "duration": _DURATION, "gracePeriod": {"type": "integer", "minimum": 0}, "selector": _SELECTOR,
             "containerNames": {"type": "array", "items": {"type": "string"}}}}}}},
        {"if": {"properties": {"kind": {"const": "NetworkChaos"}}},
         "then": {"properties": {"spec": {"type": "object", "additionalProperties": False,
                                          "required": ["action", "mode", "selector"], "properties": {
             "action": {"enum": ["netem", "delay", "loss", "duplicate", "corrupt", "partition", "bandwidth"]},
             "mode": _MODE, "value": {"type": "string"}, "duration": _DURATION, "selector": _SELECTOR,
             "direction": {"enum": ["to", "from", "both"]},
             "target": {"type": "object", "required": ["mode", "selector"],
                        "properties": {"mode": _MODE, "selector": _SELECTOR}},
             "delay": {"type": "object", "required": ["latency"], "properties": {
                 "latency": _DURATION, "jitter": _DURATION, "correlation": {"type": "string"}}},
             "loss": {"type": "object"}, "duplicate": {"type": "object"}, "corrupt": {"type": "object"},
             "bandwidth": {"type": "object"}}}}}},
    ],
}


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_files_load_and_target_installed_services(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    targets = {f.target for f in scenario.faults if f.kind is FaultKind.KILL_SERVICE}
    assert targets <= SERVICES
    assert set(scenario.services or SERVICES) <= SERVICES


def test_every_fault_kind_has_a_scenario() -> None:
    kinds = {fault.kind for path in SCENARIOS for fault in load_scenario(path).faults}
    assert kinds == set(FaultKind)


@pytest.mark.parametrize(("text", "message"), [
    ("name: x\nfaults: [{kind: kill_service}]\n", "target names the service to kill"),
    ("name: x\nfaults: [{kind: melt_cpu}]\n", "faults.0.kind"),
    ("name: x\nservices: [risk]\nfaults: [{kind: kill_service, target: execution}]\n", "does not run: execution"),
    ("name: x\nfaults: []\n", "faults"),
    ("name: x\nfaults: [{kind: stop_redis}]\nverdikt: {}\n", "verdikt"),
])
def test_invalid_scenarios_are_refused_naming_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError, match=message):
        load_scenario(path)


def test_cli_lists_scenarios_and_refuses_a_broken_file(tmp_path: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["list", str(ROOT / "chaos" / "scenarios")])
    assert listed.exit_code == 0
    assert all(path.stem in listed.output for path in SCENARIOS)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Bad Name\nfaults: [{kind: stop_redis}]\n", encoding="utf-8")
    refused = runner.invoke(app, ["run", str(bad)])
    assert refused.exit_code == 2 and "name" in refused.output


@pytest.mark.parametrize("path", MESH, ids=lambda p: p.stem)
def test_chaos_mesh_manifests_are_well_formed_and_select_chart_pods(path: Path) -> None:
    manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    jsonschema.validate(manifest, MESH_SCHEMA)
    selector = manifest["spec"]["selector"]
    labels = selector.get("labelSelectors", {})
    # The chart labels pods app.kubernetes.io/instance=<release>, app.kubernetes.io/component=<service>.
    assert labels.get("app.kubernetes.io/instance") == "ata"
    components = {labels["app.kubernetes.io/component"]} if "app.kubernetes.io/component" in labels else {
        v for e in selector.get("expressionSelectors", []) if e["key"] == "app.kubernetes.io/component" for v in e["values"]}
    assert components and components <= SERVICES


def test_mesh_covers_pod_and_network_faults() -> None:
    kinds = {yaml.safe_load(p.read_text(encoding="utf-8"))["kind"] for p in MESH}
    assert kinds == {"PodChaos", "NetworkChaos"}
    broken = yaml.safe_load(MESH[0].read_text(encoding="utf-8"))
    broken["spec"]["mode"] = "some"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, MESH_SCHEMA)


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_kill_execution_scenario_passes_end_to_end(tmp_path: Path) -> None:
    """The shipped scenario on the embedded broker and Redis: execution killed mid-burst, restarted by
    the supervisor, every order at the simulated broker once and accepted once."""
    scenario = load_scenario(ROOT / "chaos" / "scenarios" / "kill-execution.yaml")
    report = await ChaosRun(scenario, tmp_path / "run").run()
    failed = [c for c in report.checks if not c.passed]
    assert report.passed, failed
    names = [c.name for c in report.checks]
    assert "execution restarted by the supervisor" in names
    assert "no order lost (broker ledger)" in names and "no order placed twice (broker ledger)" in names
    events = [e["event"] for e in report.timeline]
    assert events.index("orders published") < events.index("kill -9 execution") < events.index("recovered")
    assert events[-1] == "torn down"
    assert not (tmp_path / "run" / "infra.json").exists(), "the embedded infrastructure was left running"
