"""Published contracts: one JSON Schema per message type and an AsyncAPI 3.0 document.

``ata schemas write`` renders ``schemas/<event_type>.json`` (JSON Schema 2020-12, keys
sorted, two-space indent, trailing newline) for every message type in the catalogue, and
``schemas/asyncapi.yaml`` describing every registry topic as a channel. Both are pure
functions of the code, so ``ata schemas check`` can tell when the directory is stale.

Backward-compatibility rules
----------------------------
A change is *backward compatible* when every message valid under the previous schema is
still valid under the new one: the journal replays old events into new code, and a
consumer upgraded first must still read what not-yet-upgraded producers send. The
checker compares the committed schemas (``git show <ref>:schemas/...``, or the files on
disk when git or the file at that ref is unavailable) with the schemas the code renders
now, and reports as incompatible:

- a message type removed (its schema file disappears);
- a field removed (while ``additionalProperties`` is false, as on every model here);
- a field newly required (added without a default, or a default dropped);
- a type narrowed (a JSON type or an ``anyOf`` variant no longer accepted, ``number`` to
  ``integer``, a ``const`` or ``enum`` added where there was none);
- an enum value removed; a ``const`` changed;
- a bound tightened (``minimum``/``exclusiveMinimum`` raised, ``maximum``/``exclusiveMaximum``
  lowered, ``minLength``/``minItems`` raised, ``maxLength``/``maxItems`` lowered) or a
  ``pattern`` changed (a changed pattern cannot be proven wider);
- in ``asyncapi.yaml``: a topic removed, a message type removed from a topic, a topic's key
  changed or its partitions reduced (either breaks per-key ordering).

Adding optional fields, enum values, message types and topics is compatible. Titles,
descriptions and defaults are documentation. A breaking change needs a new message type
or a new topic version (``<domain>.<stream>.v<N+1>``) instead.

The published set is the catalogue (``ata.events.CATALOGUE``) plus the message classes a
service package declares under the ``ata.events`` entry-point group, each entry point naming
a sequence of classes (``risk = "ata.risk.events:MESSAGES"``). Classes registered only at
import time are not published, so the output never depends on what happened to be imported.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, cast

import yaml

from ata.events.catalogue import CATALOGUE
from ata.events.envelope import Command, Message
from ata.events.topics import REGISTRY, Topic, TopicRegistry

ASYNCAPI_FILE = "asyncapi.yaml"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
PAYLOAD_FORMAT = "application/schema+json;version=draft-2020-12"
KAFKA_BINDING_VERSION = "0.5.0"
EXTENSION_GROUP = "ata.events"

Schema = dict[str, Any]


# -- rendering ---------------------------------------------------------------------------------
def extension_classes() -> list[type[Message]]:
    """Message classes declared by installed packages under the ``ata.events`` entry-point group."""
    found: list[type[Message]] = []
    for entry_point in sorted(metadata.entry_points(group=EXTENSION_GROUP), key=lambda ep: ep.name):
        declared = entry_point.load()
        classes = declared if isinstance(declared, list | tuple) else (declared,)
        for cls in classes:
            if not (isinstance(cls, type) and issubclass(cls, Message)):
                raise TypeError(f"entry point {entry_point.name!r} in {EXTENSION_GROUP} declares {cls!r}, not a Message class")
            found.append(cls)
    return found


def message_classes() -> list[type[Message]]:
    """Every published message type, sorted by name."""
    unique = {cls.__name__: cls for cls in (*CATALOGUE, *extension_classes())}
    return [unique[name] for name in sorted(unique)]


def topics_of(cls: type[Message], registry: TopicRegistry = REGISTRY) -> list[str]:
    return [t.name for t in registry if cls in t.value_types]


def json_schema(cls: type[Message], registry: TopicRegistry = REGISTRY) -> Schema:
    """The published JSON Schema of one message type."""
    schema: Schema = {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"{cls.__name__}.json",
        **cls.model_json_schema(mode="validation"),
        "x-ata-kind": "command" if issubclass(cls, Command) else "event",
        "x-ata-schema-version": cls.SCHEMA_VERSION,
        "x-ata-topics": topics_of(cls, registry),
    }
    return schema


def dump_json(document: Mapping[str, Any]) -> str:
    """Stable text of a JSON document: sorted keys, two-space indent, trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _channel_id(topic_name: str) -> str:
    # AsyncAPI 3.0 channel and operation ids allow [A-Za-z0-9_-] only.
    return topic_name.replace(".", "_")


def _key_schema(topic: Topic) -> Schema:
    meaning = topic.key_field or "source (producing service instance)"
    return {"type": "string", "description": f"Kafka key: {meaning}"}


def _channel(topic: Topic) -> Schema:
    cleanup = ["compact"] if topic.compacted else ["delete"]
    return {
        "address": topic.name,
        "title": topic.name,
        "description": topic.description or topic.name,
        "messages": {cls.__name__: {"$ref": f"#/components/messages/{cls.__name__}"} for cls in topic.value_types},
        "bindings": {
            "kafka": {
                "topic": topic.name,
                "partitions": topic.partitions,
                "topicConfiguration": {"cleanup.policy": cleanup, "retention.ms": topic.retention_ms},
                "bindingVersion": KAFKA_BINDING_VERSION,
            },
        },
        "x-ata-key": topic.key_field,
        **({"x-ata-dlq-of": topic.dlq_of} if topic.dlq_of else {}),
    }


def _operation(action: str, service: str, topic: Topic, feedback: bool = False) -> Schema:
    channel = _channel_id(topic.name)
    verb = "publishes to" if action == "send" else "consumes"
    operation: Schema = {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "summary": f"{service} {verb} {topic.name}" + (" (feedback loop)" if feedback else ""),
        "messages": [{"$ref": f"#/channels/{channel}/messages/{cls.__name__}"} for cls in topic.value_types],
        "x-ata-service": service,
    }
    return operation


def _message(cls: type[Message], registry: TopicRegistry) -> Schema:
    keyed = [t for t in registry if cls in t.value_types]
    key = _key_schema(keyed[0]) if len({t.key_field for t in keyed}) == 1 else {"type": "string"}
    return {
        "name": cls.__name__,
        "title": cls.__name__,
        "summary": _summary(cls),
        "contentType": "application/json",
        "payload": {"schemaFormat": PAYLOAD_FORMAT, "schema": {"$ref": f"./{cls.__name__}.json"}},
        "bindings": {"kafka": {"key": key, "bindingVersion": KAFKA_BINDING_VERSION}},
    }


def _summary(cls: type[Message]) -> str:
    lines = (cls.__doc__ or "").strip().splitlines()
    return lines[0] if lines else cls.__name__


def asyncapi_document(classes: Iterable[type[Message]], registry: TopicRegistry = REGISTRY) -> Schema:
    """The AsyncAPI 3.0.0 document of the registry: one channel per topic (DLQs included),
    a ``send`` operation per producing service and a ``receive`` per consuming service."""
    carried = {cls for topic in registry for cls in topic.value_types}
    operations: Schema = {}
    for topic in registry:
        for service in topic.producers:
            operations[f"{service}_send_{_channel_id(topic.name)}"] = _operation("send", service, topic)
        for service in topic.consumers:
            operations[f"{service}_receive_{_channel_id(topic.name)}"] = _operation("receive", service, topic)
        for service in topic.feedback_consumers:
            operations[f"{service}_receive_{_channel_id(topic.name)}"] = _operation("receive", service, topic, True)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "AI Trading Agent events",
            "version": metadata.version("ata-events"),
            "description": (
                "Every topic of the platform with the JSON events it carries. Payloads are UTF-8 JSON; "
                "W3C trace context travels in the Kafka headers traceparent/tracestate."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "{bootstrap}",
                "protocol": "kafka",
                "description": "Any Kafka-protocol broker: the embedded one (ata infra up) or Apache Kafka",
                "variables": {"bootstrap": {"default": "127.0.0.1:9092", "description": "ATA_KAFKA_BOOTSTRAP"}},
            },
        },
        "channels": {_channel_id(t.name): _channel(t) for t in registry},
        "operations": operations,
        "components": {
            "messages": {cls.__name__: _message(cls, registry) for cls in sorted(carried, key=lambda c: c.__name__)},
        },
    }


def dump_yaml(document: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True, width=120)


def render(registry: TopicRegistry = REGISTRY) -> dict[str, str]:
    """File name → text of everything ``schemas/`` must contain."""
    classes = message_classes()
    files = {f"{cls.__name__}.json": dump_json(json_schema(cls, registry)) for cls in classes}
    files[ASYNCAPI_FILE] = dump_yaml(asyncapi_document(classes, registry))
    return files


def _managed(directory: Path) -> set[str]:
    if not directory.is_dir():
        return set()
    return {p.name for p in directory.iterdir() if p.suffix == ".json" or p.name == ASYNCAPI_FILE}


@dataclass(frozen=True)
class WriteResult:
    written: list[str]
    removed: list[str]


def write(directory: Path, rendered: Mapping[str, str] | None = None) -> WriteResult:
    """Bring ``directory`` up to date: (re)write changed files, delete schemas of removed types."""
    files = dict(rendered) if rendered is not None else render()
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in sorted(files.items()):
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(name)
    removed = sorted(_managed(directory) - set(files))
    for name in removed:
        (directory / name).unlink()
    return WriteResult(written, removed)


def stale_files(directory: Path, rendered: Mapping[str, str] | None = None) -> list[str]:
    """Files of ``directory`` that are missing, different or no longer generated."""
    files = dict(rendered) if rendered is not None else render()
    stale = [name for name, text in files.items()
             if not (directory / name).is_file() or (directory / name).read_text(encoding="utf-8") != text]
    stale.extend(_managed(directory) - set(files))
    return sorted(stale)


# -- baseline -----------------------------------------------------------------------------------
def _git(directory: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


@dataclass(frozen=True)
class Baseline:
    """The previous version of the schema files and where it came from (``git <ref>`` or ``disk``)."""

    files: dict[str, str]
    origin: str


def baseline(directory: Path, ref: str = "HEAD") -> Baseline:
    """The committed schemas at ``ref``, or the files on disk if git or the files at ``ref`` are unavailable."""
    if directory.is_dir():
        listing = _git(directory, "ls-tree", "--name-only", ref, "./")
        names = sorted(n for n in (listing or "").split() if n.endswith(".json") or n == ASYNCAPI_FILE)
        if names:
            files = {name: _git(directory, "show", f"{ref}:./{name}") for name in names}
            if all(text is not None for text in files.values()):
                return Baseline({k: cast(str, v) for k, v in files.items()}, f"git {ref}")
    return Baseline({name: (directory / name).read_text(encoding="utf-8") for name in sorted(_managed(directory))}, "disk")


# -- compatibility ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Incompatibility:
    file: str
    path: str
    rule: str
    detail: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.path}" if self.path else self.file
        return f"{where}: {self.rule}" + (f" ({self.detail})" if self.detail else "")


class _Resolver:
    """Follows local ``#/$defs/...`` references inside one schema document."""

    def __init__(self, root: Schema) -> None:
        self.root = root

    def __call__(self, node: Any) -> Schema:
        seen: set[str] = set()
        while isinstance(node, dict) and isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/"):
            ref = node["$ref"]
            if ref in seen:
                break
            seen.add(ref)
            target: Any = self.root
            for part in ref[2:].split("/"):
                target = target.get(part, {}) if isinstance(target, dict) else {}
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            node = {**target, **siblings}
        return node if isinstance(node, dict) else {}


def _types(node: Schema) -> set[str] | None:
    """The JSON types a (variant-free) node accepts, or None for unconstrained."""
    declared = node.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return {str(t) for t in declared}
    values = node["enum"] if "enum" in node else [node["const"]] if "const" in node else None
    if values is None:
        return {"object"} if "properties" in node else None
    return {_json_type(v) for v in values}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _covers(old_type: str, new_types: set[str]) -> bool:
    return old_type in new_types or (old_type == "integer" and "number" in new_types)


Bound = tuple[float, bool]  # (value, exclusive)


def _bound(node: Schema, inclusive_key: str, exclusive_key: str, pick_max: bool) -> Bound | None:
    candidates: list[Bound] = []
    if isinstance(node.get(inclusive_key), int | float):
        candidates.append((float(node[inclusive_key]), False))
    if isinstance(node.get(exclusive_key), int | float):
        candidates.append((float(node[exclusive_key]), True))
    if not candidates:
        return None
    # the tighter of the two: a larger lower bound / a smaller upper bound, exclusive wins ties
    if pick_max:
        return max(candidates, key=lambda b: (b[0], b[1]))
    return min(candidates, key=lambda b: (b[0], not b[1]))


class _Comparator:
    def __init__(self, file: str, old_root: Schema, new_root: Schema) -> None:
        self.file = file
        self.old = _Resolver(old_root)
        self.new = _Resolver(new_root)
        self.issues: list[Incompatibility] = []
        self._seen: set[tuple[str, str]] = set()

    def report(self, path: str, rule: str, detail: str = "") -> None:
        self.issues.append(Incompatibility(self.file, path, rule, detail))

    @staticmethod
    def variants(node: Schema) -> list[Schema]:
        """The options of an ``anyOf``/``oneOf`` node (flattened, references left unresolved)."""
        for key in ("anyOf", "oneOf"):
            if isinstance(node.get(key), list):
                shared = {k: v for k, v in node.items() if k != key}
                return [v for option in node[key] for v in _Comparator.variants({**shared, **option})]
        return [node]

    def compare(self, old_node: Any, new_node: Any, path: str) -> None:
        # Only references can recurse (self-referencing models); compare each pair once.
        marker = (_ref_of(old_node), _ref_of(new_node))
        if marker != ("", ""):
            if marker in self._seen:
                return
            self._seen.add(marker)
        old, new = self.old(old_node), self.new(new_node)
        old_variants, new_variants = self.variants(old), self.variants(new)
        if len(old_variants) == 1 and len(new_variants) == 1:
            self.compare_node(old, new, path)
            return
        for variant in old_variants:
            match = self._best_match(self.old(variant), new_variants)
            if match is None:
                self.report(path, "type narrowed", f"variant {_describe(self.old(variant))} no longer accepted")
            else:
                self.compare(variant, match, path)

    def _best_match(self, variant: Schema, candidates: list[Schema]) -> Schema | None:
        old_types = _types(variant)
        best: Schema | None = None
        for candidate in candidates:
            new_types = _types(self.new(candidate))
            if new_types is None:
                return candidate
            if old_types is not None and all(_covers(t, new_types) for t in old_types):
                if old_types == new_types:
                    return candidate
                best = best or candidate
        return best

    def compare_node(self, old: Schema, new: Schema, path: str) -> None:
        old_types, new_types = _types(old), _types(new)
        if new_types is not None:
            if old_types is None:
                self.report(path, "type narrowed", f"unconstrained -> {sorted(new_types)}")
            else:
                lost = sorted(t for t in old_types if not _covers(t, new_types))
                if lost:
                    self.report(path, "type narrowed", f"{sorted(old_types)} -> {sorted(new_types)}")
        self.compare_values(old, new, path)
        self.compare_bounds(old, new, path)
        if (old_types and "object" in old_types) or "properties" in old:
            self.compare_object(old, new, path)
        if (old_types and "array" in old_types) or "items" in old or "prefixItems" in old:
            self.compare_array(old, new, path)

    def compare_values(self, old: Schema, new: Schema, path: str) -> None:
        if "const" in new:
            if "const" in old and old["const"] != new["const"]:
                self.report(path, "const changed", f"{old['const']!r} -> {new['const']!r}")
            elif "const" not in old and old.get("enum") != [new["const"]]:
                self.report(path, "type narrowed", f"const {new['const']!r} added")
        if "enum" in new:
            old_values = old["enum"] if "enum" in old else [old["const"]] if "const" in old else None
            if old_values is None:
                self.report(path, "type narrowed", "enum added")
            else:
                removed = [v for v in old_values if v not in new["enum"]]
                if removed:
                    self.report(path, "enum value removed", ", ".join(map(repr, removed)))
        if "pattern" in new and new["pattern"] != old.get("pattern"):
            self.report(path, "pattern changed", f"{old.get('pattern')!r} -> {new['pattern']!r}")

    def compare_bounds(self, old: Schema, new: Schema, path: str) -> None:
        for inclusive, exclusive, is_lower in (("minimum", "exclusiveMinimum", True), ("maximum", "exclusiveMaximum", False)):
            old_b = _bound(old, inclusive, exclusive, pick_max=is_lower)
            new_b = _bound(new, inclusive, exclusive, pick_max=is_lower)
            if new_b is None:
                continue
            if old_b is None:
                self.report(path, "bound tightened", f"{inclusive} {new_b[0]} added")
                continue
            tighter = (new_b[0] > old_b[0]) if is_lower else (new_b[0] < old_b[0])
            if tighter or (new_b[0] == old_b[0] and new_b[1] and not old_b[1]):
                self.report(path, "bound tightened", f"{inclusive}: {old_b} -> {new_b}")
        for key, is_lower in (("minLength", True), ("minItems", True), ("minProperties", True),
                              ("maxLength", False), ("maxItems", False), ("maxProperties", False)):
            if key not in new:
                continue
            if key not in old:
                self.report(path, "bound tightened", f"{key} {new[key]} added")
            elif (new[key] > old[key]) if is_lower else (new[key] < old[key]):
                self.report(path, "bound tightened", f"{key}: {old[key]} -> {new[key]}")

    def compare_object(self, old: Schema, new: Schema, path: str) -> None:
        old_props: dict[str, Any] = old.get("properties", {})
        new_props: dict[str, Any] = new.get("properties", {})
        extra = new.get("additionalProperties", True)
        for name, schema in old_props.items():
            where = f"{path}.{name}" if path else name
            if name in new_props:
                self.compare(schema, new_props[name], where)
            elif extra is False:
                self.report(where, "field removed")
            elif isinstance(extra, dict):
                self.compare(schema, extra, where)
        for name in sorted(set(new.get("required", [])) - set(old.get("required", []))):
            self.report(f"{path}.{name}" if path else name, "field newly required")
        old_extra = old.get("additionalProperties", True)
        if isinstance(old_extra, dict) or old_extra is True:
            if extra is False:
                self.report(path, "type narrowed", "additional properties no longer allowed")
            elif isinstance(old_extra, dict) and isinstance(extra, dict):
                self.compare(old_extra, extra, f"{path}.*" if path else "*")

    def compare_array(self, old: Schema, new: Schema, path: str) -> None:
        if isinstance(old.get("items"), dict) and isinstance(new.get("items"), dict):
            self.compare(old["items"], new["items"], f"{path}[]")
        old_prefix, new_prefix = old.get("prefixItems", []), new.get("prefixItems", [])
        for index, (o, n) in enumerate(zip(old_prefix, new_prefix, strict=False)):
            self.compare(o, n, f"{path}[{index}]")


def _ref_of(node: Any) -> str:
    return str(node.get("$ref", "")) if isinstance(node, dict) else ""


def _describe(node: Schema) -> str:
    types = _types(node)
    return "/".join(sorted(types)) if types else "any"


def compare_schemas(file: str, old: Schema, new: Schema) -> list[Incompatibility]:
    """Incompatibilities of ``new`` against ``old`` (see the module docstring for the rules)."""
    comparator = _Comparator(file, old, new)
    comparator.compare(old, new, "")
    return comparator.issues


def _asyncapi_channels(document: Schema) -> dict[str, Schema]:
    return {str(c.get("address")): c for c in document.get("channels", {}).values() if isinstance(c, dict)}


def compare_asyncapi(old: Schema, new: Schema) -> list[Incompatibility]:
    """Topic-level incompatibilities: topic removed, message removed from a topic, key changed, partitions reduced."""
    issues: list[Incompatibility] = []
    old_channels, new_channels = _asyncapi_channels(old), _asyncapi_channels(new)
    for address, channel in sorted(old_channels.items()):
        now = new_channels.get(address)
        if now is None:
            issues.append(Incompatibility(ASYNCAPI_FILE, address, "topic removed"))
            continue
        for message in sorted(set(channel.get("messages", {})) - set(now.get("messages", {}))):
            issues.append(Incompatibility(ASYNCAPI_FILE, address, "message removed from topic", message))
        if channel.get("x-ata-key") != now.get("x-ata-key"):
            issues.append(Incompatibility(ASYNCAPI_FILE, address, "key changed",
                                          f"{channel.get('x-ata-key')} -> {now.get('x-ata-key')}"))
        old_parts = channel.get("bindings", {}).get("kafka", {}).get("partitions", 0)
        new_parts = now.get("bindings", {}).get("kafka", {}).get("partitions", 0)
        if new_parts < old_parts:
            issues.append(Incompatibility(ASYNCAPI_FILE, address, "partitions reduced", f"{old_parts} -> {new_parts}"))
    return issues


def check_compatibility(previous: Mapping[str, str], current: Mapping[str, str]) -> list[Incompatibility]:
    """Compare two sets of schema files (name → text)."""
    issues: list[Incompatibility] = []
    for name, old_text in sorted(previous.items()):
        new_text = current.get(name)
        if new_text is None:
            if name.endswith(".json"):
                issues.append(Incompatibility(name, "", "message type removed"))
            continue
        if name == ASYNCAPI_FILE:
            issues.extend(compare_asyncapi(yaml.safe_load(old_text) or {}, yaml.safe_load(new_text) or {}))
        else:
            issues.extend(compare_schemas(name, json.loads(old_text), json.loads(new_text)))
    return issues


def iter_refs(node: Any) -> Iterator[str]:
    """Every ``$ref`` value in a document (used to check that the AsyncAPI file resolves)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from iter_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from iter_refs(item)


__all__ = [
    "ASYNCAPI_FILE", "Baseline", "Incompatibility", "WriteResult", "asyncapi_document", "baseline",
    "check_compatibility", "compare_asyncapi", "compare_schemas", "dump_json", "iter_refs", "json_schema",
    "message_classes", "render", "stale_files", "write",
]
