"""A generic sample builder for every message type: valid instances derived from the JSON Schema.

Required fields only (optional ones keep their defaults, so cross-field validators such as
"a market order has no limit price" hold); a few field names get values that keep
cross-field invariants (OHLC, bid <= ask) true.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from ata.events import Message, client_order_id_for

TS = 1_700_000_000_000_000_000
INTENT = uuid.UUID("00000000-0000-4000-8000-000000000001")
OVERRIDES: dict[str, Any] = {
    "ts_event": TS, "ts_init": TS + 1_000, "ts_open": TS - 60_000_000_000, "source": "tests/1",
    "open": 100.0, "high": 101.0, "low": 99.0, "close": 100.5, "bid": 99.9, "ask": 100.1,
    "intent_id": str(INTENT), "client_order_id": client_order_id_for(INTENT), "symbol": "AAPL",
}
STRING_CANDIDATES = ("AAPL", "1m", "x", "ata-1", "2024-01-02")


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = root
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _number(node: dict[str, Any], integer: bool) -> float | int:
    low = node.get("minimum", node.get("exclusiveMinimum"))
    high = node.get("maximum", node.get("exclusiveMaximum"))
    step = 1 if integer else 0.5
    value: float = 1
    if low is not None and (value < low or (value == low and "exclusiveMinimum" in node)):
        value = low + step
    if high is not None and (value > high or (value == high and "exclusiveMaximum" in node)):
        value = high - step if low is None else (low + high) / 2
    return int(value) if integer else float(value)


def sample_value(node: dict[str, Any], root: dict[str, Any], name: str = "") -> Any:
    if name in OVERRIDES:
        return OVERRIDES[name]
    node = _resolve(node, root)
    if "const" in node:
        return node["const"]
    if "enum" in node:
        return node["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in node:
            options = [o for o in node[key] if _resolve(o, root).get("type") != "null"]
            return sample_value(options[0], root, name)
    kind = node.get("type")
    if kind == "string":
        if node.get("format") == "uuid":
            return str(uuid.uuid5(uuid.NAMESPACE_OID, name or "x"))
        if "pattern" in node:
            return next(c for c in STRING_CANDIDATES if re.search(node["pattern"], c))
        return "x" * max(1, node.get("minLength", 1))
    if kind in ("integer", "number"):
        return _number(node, kind == "integer")
    if kind == "boolean":
        return True
    if kind == "array":
        if "prefixItems" in node:
            return [sample_value(item, root) for item in node["prefixItems"]]
        return [sample_value(node["items"], root, name)] if "items" in node else []
    if kind == "object" or "properties" in node:
        props = node.get("properties", {})
        return {key: sample_value(props[key], root, key) for key in node.get("required", [])}
    return None


def build_sample(cls: type[Message]) -> Message:
    root = cls.model_json_schema()
    data = sample_value(root, root)
    data["event_id"] = str(uuid.uuid5(uuid.NAMESPACE_OID, cls.__name__))
    data["correlation_id"] = data["event_id"]
    return cls.model_validate(data)


@pytest.fixture
def make_sample() -> Callable[[type[Message]], Message]:
    return build_sample
