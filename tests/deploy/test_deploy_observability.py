"""deploy/prometheus/alerts.yml and deploy/grafana/ata-overview.json use only metrics the code exports,
with labels those metrics carry. Metrics are read from the source (every metric constructor call with
an ``ata_`` name in libs/ and services/), so the check does not depend on importing every service."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "ata-overview.json"
METRIC = re.compile(r"\bata_[a-z0-9_]+\b")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
#: Metric constructors (prometheus_client classes and the ata.runtime.metrics helpers) → metric type.
CONSTRUCTORS = {"counter": "counter", "Counter": "counter", "CounterMetricFamily": "counter",
                "gauge": "gauge", "Gauge": "gauge", "GaugeMetricFamily": "gauge",
                "histogram": "histogram", "Histogram": "histogram"}
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"), "gauge": ("",)}


def _strings(node: ast.expr | None, constants: dict[str, list[str]]) -> list[str] | None:
    """The label names a literal (tuple/list of strings, possibly with *NAME of a module constant) spells."""
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    if not isinstance(node, (ast.Tuple, ast.List)):
        return None
    out: list[str] = []
    for element in node.elts:
        if isinstance(element, ast.Constant) and isinstance(element.value, str):
            out.append(element.value)
        elif isinstance(element, ast.Starred) and isinstance(element.value, ast.Name) and element.value.id in constants:
            out.extend(constants[element.value.id])
        else:
            return None
    return out


def _metrics_in(path: Path) -> Iterator[tuple[str, str, list[str] | None]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    constants: dict[str, list[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = _strings(node.value, constants)
            if value is not None:
                constants[node.targets[0].id] = value
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        first = node.args[0]
        if func not in CONSTRUCTORS or not (isinstance(first, ast.Constant) and str(first.value).startswith("ata_")):
            continue
        keywords = {k.arg: k.value for k in node.keywords}
        labels_node = node.args[2] if len(node.args) > 2 else keywords.get("labelnames", keywords.get("labels"))
        labels = [] if labels_node is None else _strings(labels_node, constants)
        yield CONSTRUCTORS[func], str(first.value), labels


def exported_metrics() -> dict[str, set[str] | None]:
    """Exposed sample name → label names (None: not spelled literally), for every ``ata_`` metric in the code."""
    found: dict[str, set[str] | None] = {}
    sources = [*ROOT.glob("libs/*/ata/**/*.py"), *ROOT.glob("services/*/ata/**/*.py")]
    for path in sources:
        for kind, name, labels in _metrics_in(path):
            base = name.removesuffix("_total") if kind == "counter" else name
            for suffix in SUFFIXES[kind]:
                extra = {"le"} if suffix == "_bucket" else set()
                found[base + suffix] = None if labels is None else set(labels) | extra
    return found


@pytest.fixture(scope="module")
def metrics() -> dict[str, set[str] | None]:
    found = exported_metrics()
    assert found["ata_consumer_lag"] == {"service", "topic", "partition"}
    assert found["ata_circuit_breaker_transitions_total"] == {"name", "from_state", "to_state"}
    assert found["ata_circuit_breaker_state"] == {"name"}
    return found


def alert_rules() -> Iterator[dict[str, Any]]:
    for group in yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]:
        yield from group["rules"]


def check_expression(expr: str, metrics: dict[str, set[str] | None]) -> set[str]:
    """Assert every metric exists and every grouping label is carried by them; return the grouping labels."""
    names = set(METRIC.findall(expr))
    assert names, f"no ata_ metric in {expr!r}"
    unknown = sorted(names - set(metrics))
    assert not unknown, f"{expr!r} uses metrics the code does not export: {unknown}"
    grouping = {label.strip() for group in GROUPING.findall(expr) for label in group.split(",") if label.strip()}
    assert expr.count("(") == expr.count(")"), expr
    label_sets = [metrics[n] for n in names]
    if any(labels is None for labels in label_sets):
        return grouping  # a label list built at run time: names checked, labels not
    carried = set.union(*(labels for labels in label_sets if labels is not None))
    assert grouping <= carried, f"{expr!r} groups by labels its metrics lack: {sorted(grouping - carried)}"
    for selector in re.findall(r"\{([^}]*)\}", expr):
        for label in re.findall(r"(\w+)\s*=~?", selector):
            assert label in carried, f"{expr!r} selects on unknown label {label}"
    return grouping


def test_alert_rules_reference_exported_metrics_and_labels(metrics: dict[str, set[str] | None]) -> None:
    rules = list(alert_rules())
    assert len({r["alert"] for r in rules}) == len(rules), "alert names must be unique"
    for rule in rules:
        grouping = check_expression(rule["expr"], metrics)
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        used = set(re.findall(r"\$labels\.(\w+)", json.dumps(rule["annotations"])))
        assert used <= grouping, f"{rule['alert']} annotates with labels the expression drops: {sorted(used - grouping)}"
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"])


def test_alerts_cover_the_operational_failure_modes() -> None:
    expressions = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    covered = {metric: [a for a, e in expressions.items() if metric in e] for metric in (
        "ata_consumer_lag", "ata_dead_letters_total", "ata_service_ready", "ata_risk_trading_state",
        "ata_risk_drawdown_ratio", "ata_journal_available", "ata_circuit_breaker_state")}
    assert all(covered.values()), covered
    halted = expressions["AtaTradingHalted"]
    assert ">= 2" in halted  # 2 is HALTED in the risk service's gauge
    tiers = sorted(float(x) for a in ("AtaDrawdownWarning", "AtaDrawdownCritical", "AtaDrawdownFatal")
                   for x in re.findall(r">=\s*([0-9.]+)", expressions[a]))
    assert tiers == [0.05, 0.10, 0.20]


def test_drawdown_tiers_match_the_risk_service_defaults() -> None:
    from ata.risk.config import RiskSettings

    fields = RiskSettings.model_fields
    defaults = [fields[f"drawdown_{tier}_pct"].default for tier in ("warning", "critical", "fatal")]
    assert defaults == [0.05, 0.10, 0.20], "alerts.yml drawdown tiers must follow the risk defaults"


def test_dashboard_queries_exported_metrics(metrics: dict[str, set[str] | None]) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "ata-overview"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "service"} <= variables
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["gridPos"]["w"] <= 24 and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"]
        for target in panel["targets"]:
            check_expression(target["expr"].replace("$__rate_interval", "5m").replace('"$service"', '".*"'), metrics)
    queried = {m for p in panels for t in p["targets"] for m in METRIC.findall(t["expr"])}
    assert {"ata_risk_trading_state", "ata_consumer_lag", "ata_service_ready", "ata_journal_available"} <= queried


def test_an_unknown_metric_is_caught(metrics: dict[str, set[str] | None]) -> None:
    with pytest.raises(AssertionError, match="ata_risk_equity_total"):
        check_expression("sum(rate(ata_risk_equity_total[5m]))", metrics)
    with pytest.raises(AssertionError, match="labels its metrics lack"):
        check_expression("max by (symbol) (ata_risk_trading_state)", metrics)
