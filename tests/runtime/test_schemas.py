"""Schema rendering, staleness, the AsyncAPI document's structure and the compatibility checker."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ata.events import CATALOGUE
from ata.events.topics import REGISTRY
from ata.runtime import schemas

BASE: dict[str, Any] = {
    "$defs": {"Side": {"enum": ["buy", "sell"], "title": "Side", "type": "string"}},
    "additionalProperties": False,
    "properties": {
        "event_type": {"const": "Demo", "type": "string"},
        "symbol": {"pattern": "^[A-Z]+$", "type": "string"},
        "side": {"$ref": "#/$defs/Side"},
        "quantity": {"exclusiveMinimum": 0, "type": "number"},
        "count": {"minimum": 0, "type": "integer"},
        "note": {"default": "", "maxLength": 100, "type": "string"},
        "price": {"anyOf": [{"exclusiveMinimum": 0, "type": "number"}, {"type": "null"}], "default": None},
        "tags": {"items": {"type": "string"}, "type": "array"},
        "evidence": {"additionalProperties": {"anyOf": [{"type": "string"}, {"type": "number"}]}, "type": "object"},
    },
    "required": ["event_type", "symbol", "side", "quantity", "count"],
    "type": "object",
}


def changed(edit: Any) -> list[schemas.Incompatibility]:
    new = copy.deepcopy(BASE)
    edit(new)
    return schemas.compare_schemas("Demo.json", BASE, new)


def rules(issues: list[schemas.Incompatibility]) -> list[tuple[str, str]]:
    return [(i.path, i.rule) for i in issues]


def test_identical_schema_is_compatible() -> None:
    assert changed(lambda s: None) == []


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda s: s["properties"].pop("note"), [("note", "field removed")]),
        (lambda s: s["required"].append("note"), [("note", "field newly required")]),
        (lambda s: (s["properties"].__setitem__("venue", {"type": "string"}), s["required"].append("venue")),
         [("venue", "field newly required")]),
        (lambda s: s["properties"]["quantity"].__setitem__("type", "integer"), [("quantity", "type narrowed")]),
        (lambda s: s["properties"].__setitem__("price", {"exclusiveMinimum": 0, "type": "number"}), [("price", "type narrowed")]),
        (lambda s: s["$defs"]["Side"].__setitem__("enum", ["buy"]), [("side", "enum value removed")]),
        (lambda s: s["properties"]["event_type"].__setitem__("const", "Other"), [("event_type", "const changed")]),
        (lambda s: s["properties"]["note"].__setitem__("maxLength", 50), [("note", "bound tightened")]),
        (lambda s: s["properties"]["count"].__setitem__("minimum", 1), [("count", "bound tightened")]),
        (lambda s: s["properties"]["quantity"].__setitem__("exclusiveMaximum", 1e6), [("quantity", "bound tightened")]),
        (lambda s: s["properties"]["symbol"].__setitem__("pattern", "^[A-Z]{1,5}$"), [("symbol", "pattern changed")]),
        (lambda s: s["properties"]["tags"]["items"].__setitem__("type", "integer"), [("tags[]", "type narrowed")]),
        (lambda s: s["properties"]["evidence"]["additionalProperties"]["anyOf"].pop(1), [("evidence.*", "type narrowed")]),
        (lambda s: s["properties"]["note"].__setitem__("enum", ["a", "b"]), [("note", "type narrowed")]),
    ],
    ids=["field-removed", "optional-made-required", "new-required-field", "number-to-integer", "nullable-dropped",
         "enum-value-removed", "const-changed", "maxlength-lowered", "minimum-raised", "maximum-added", "pattern-changed",
         "array-items-narrowed", "dict-values-narrowed", "enum-added"],
)
def test_incompatible_changes_are_reported(edit: Any, expected: list[tuple[str, str]]) -> None:
    assert rules(changed(edit)) == expected


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s["properties"].__setitem__("venue", {"default": "", "type": "string"}),
        lambda s: s["$defs"]["Side"]["enum"].append("short"),
        lambda s: s["properties"]["count"].__setitem__("type", "number"),
        lambda s: s["required"].remove("count"),
        lambda s: s["properties"]["note"].__setitem__("maxLength", 500),
        lambda s: s["properties"]["quantity"].__setitem__("anyOf", [{"type": "number"}, {"type": "null"}]),
        lambda s: s["properties"]["note"].__setitem__("description", "free text"),
        lambda s: s["properties"]["quantity"].update({"exclusiveMinimum": None, "minimum": 0}) or
        s["properties"]["quantity"].pop("exclusiveMinimum"),
    ],
    ids=["optional-field-added", "enum-value-added", "integer-to-number", "required-relaxed", "maxlength-raised",
         "made-nullable", "description-changed", "exclusive-to-inclusive-bound"],
)
def test_compatible_changes_pass(edit: Any) -> None:
    assert changed(edit) == []


def test_recursive_references_terminate() -> None:
    tree = {"$defs": {"Node": {"properties": {"child": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]},
                                              "v": {"type": "integer"}}, "type": "object"}},
            "$ref": "#/$defs/Node"}
    narrowed = copy.deepcopy(tree)
    narrowed["$defs"]["Node"]["properties"]["v"]["minimum"] = 0
    assert schemas.compare_schemas("T.json", tree, tree) == []
    assert rules(schemas.compare_schemas("T.json", tree, narrowed)) == [("v", "bound tightened")]


def test_removed_message_type_and_topic_changes_are_incompatible() -> None:
    current = schemas.render()
    previous = dict(current)
    previous["Retired.json"] = json.dumps(BASE)
    document = yaml.safe_load(current[schemas.ASYNCAPI_FILE])
    bars = document["channels"]["market_bars_v1"]
    bars["bindings"]["kafka"]["partitions"] = 12
    bars["messages"]["BarRevised"] = {"$ref": "#/components/messages/BarRevised"}
    document["channels"]["market_gone_v1"] = {"address": "market.gone.v1", "messages": {}}
    orders = document["channels"]["orders_commands_v1"]
    orders["x-ata-key"] = "symbol"
    previous[schemas.ASYNCAPI_FILE] = yaml.safe_dump(document)
    found = sorted(str(i) for i in schemas.check_compatibility(previous, current))
    assert found == sorted([
        "Retired.json: message type removed",
        "asyncapi.yaml:market.bars.v1: message removed from topic (BarRevised)",
        "asyncapi.yaml:market.bars.v1: partitions reduced (12 -> 6)",
        "asyncapi.yaml:market.gone.v1: topic removed",
        "asyncapi.yaml:orders.commands.v1: key changed (symbol -> client_order_id)",
    ])


def test_every_message_schema_is_self_describing() -> None:
    rendered = schemas.render()
    for cls in CATALOGUE:
        schema = json.loads(rendered[f"{cls.__name__}.json"])
        assert schema["$schema"] == schemas.JSON_SCHEMA_DIALECT
        assert schema["properties"]["event_type"]["const"] == cls.__name__
        assert schema["additionalProperties"] is False
        assert {"event_id", "ts_event", "ts_init", "source", "correlation_id"} <= set(schema["required"])
        assert schema["x-ata-topics"] == [t.name for t in REGISTRY if cls in t.value_types]


def test_rendering_is_stable_text() -> None:
    first, second = schemas.render(), schemas.render()
    assert first == second
    for name, text in first.items():
        assert text.endswith("\n") and not text.endswith("\n\n"), name
        if name.endswith(".json"):
            assert text == schemas.dump_json(json.loads(text)), f"{name} keys are not in stable order"


def test_asyncapi_structure_and_references(tmp_path: Path) -> None:
    schemas.write(tmp_path)
    document = yaml.safe_load((tmp_path / schemas.ASYNCAPI_FILE).read_text())
    assert document["asyncapi"] == "3.0.0"
    assert {"asyncapi", "info", "servers", "channels", "operations", "components"} <= set(document)
    assert {"title", "version"} <= set(document["info"])
    assert {c["address"] for c in document["channels"].values()} == set(REGISTRY.names())
    for channel_id, channel in document["channels"].items():
        topic = REGISTRY.get(channel["address"])
        kafka = channel["bindings"]["kafka"]
        assert kafka["partitions"] == topic.partitions and kafka["topic"] == topic.name
        assert set(channel["messages"]) == {t.__name__ for t in topic.value_types}, channel_id
    for ref in schemas.iter_refs(document):
        if ref.startswith("#/"):
            node: Any = document
            for part in ref[2:].split("/"):
                assert part in node, f"dangling reference {ref}"
                node = node[part]
        else:
            assert (tmp_path / ref).is_file(), f"{ref} does not resolve to a schema file"
    for message in document["components"]["messages"].values():
        assert (tmp_path / message["payload"]["schema"]["$ref"]).is_file()
    senders = {(op["x-ata-service"], op["channel"]["$ref"].rsplit("/", 1)[1])
               for op in document["operations"].values() if op["action"] == "send"}
    for topic in REGISTRY:
        for producer in topic.producers:
            assert (producer, topic.name.replace(".", "_")) in senders


def test_write_removes_schemas_of_deleted_types_and_reports_staleness(tmp_path: Path) -> None:
    first = schemas.write(tmp_path)
    assert len(first.written) == len(CATALOGUE) + 1
    assert schemas.stale_files(tmp_path) == []
    (tmp_path / "Retired.json").write_text("{}\n")
    (tmp_path / "BarClosed.json").write_text("{}\n")
    (tmp_path / "QuoteUpdated.json").unlink()
    assert schemas.stale_files(tmp_path) == ["BarClosed.json", "QuoteUpdated.json", "Retired.json"]
    again = schemas.write(tmp_path)
    assert again.written == ["BarClosed.json", "QuoteUpdated.json"] and again.removed == ["Retired.json"]
    assert schemas.stale_files(tmp_path) == []


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, timeout=30)


def test_baseline_prefers_the_committed_version(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    directory = repo / "schemas"
    directory.mkdir(parents=True)
    _git(repo, "init", "-q")
    (directory / "Demo.json").write_text(schemas.dump_json(BASE))
    _git(repo, "add", "schemas")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "base")
    edited = copy.deepcopy(BASE)
    edited["properties"].pop("note")
    (directory / "Demo.json").write_text(schemas.dump_json(edited))  # an uncommitted, incompatible edit
    committed = schemas.baseline(directory)
    assert committed.origin == "git HEAD"
    assert json.loads(committed.files["Demo.json"]) == BASE
    issues = schemas.check_compatibility(committed.files, {"Demo.json": schemas.dump_json(edited)})
    assert [str(i) for i in issues] == ["Demo.json:note: field removed"]


def test_baseline_falls_back_to_disk_outside_git(tmp_path: Path) -> None:
    (tmp_path / "Demo.json").write_text(schemas.dump_json(BASE))
    found = schemas.baseline(tmp_path)
    assert found.origin == "disk"
    assert set(found.files) == {"Demo.json"}


def test_extension_entry_points_add_message_classes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ata_schema_ext_demo.py").write_text(
        "from ata.events import Event\n"
        "class WidgetCounted(Event):\n    count: int\n"
        "MESSAGES = (WidgetCounted,)\nNOT_MESSAGES = (int,)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    entry_point = schemas.metadata.EntryPoint
    declared = [entry_point(name="demo", value="ata_schema_ext_demo:MESSAGES", group=schemas.EXTENSION_GROUP)]
    monkeypatch.setattr(schemas.metadata, "entry_points",
                        lambda **kw: declared if kw.get("group") == schemas.EXTENSION_GROUP else [])
    names = [cls.__name__ for cls in schemas.message_classes()]
    assert "WidgetCounted" in names and names == sorted(names)
    assert len(names) == len(CATALOGUE) + 1
    declared[0] = entry_point(name="bad", value="ata_schema_ext_demo:NOT_MESSAGES", group=schemas.EXTENSION_GROUP)
    with pytest.raises(TypeError, match="not a Message class"):
        schemas.message_classes()
