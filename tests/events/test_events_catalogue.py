"""Every catalogue type: naming rules, a valid sample, JSON round trip, and its published schema."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from ata.events import CATALOGUE, BarClosed, Command, Event, Message, message_class, register

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
Sample = Callable[[type[Message]], Message]

#: Past participles that do not end in -ed.
IRREGULAR_PAST = {"Taken", "Sent", "Written", "Built", "Seen", "Given", "Made", "Done", "Run", "Held", "Set", "Found"}
#: Leading verbs of commands (imperative mood).
IMPERATIVE_VERBS = {"Submit", "Cancel", "Halt", "Resume", "Flatten", "Set", "Replace", "Close", "Open", "Start", "Stop",
                    "Reset", "Reconcile", "Replay", "Snapshot", "Request", "Update", "Approve", "Reject", "Run"}


def words(name: str) -> list[str]:
    return re.findall(r"[A-Z][a-z0-9]*", name)


@pytest.mark.parametrize("cls", CATALOGUE, ids=lambda c: c.__name__)
def test_naming_rules(cls: type[Message]) -> None:
    assert issubclass(cls, Event) != issubclass(cls, Command), "a message is an event or a command"
    last, first = words(cls.__name__)[-1], words(cls.__name__)[0]
    if issubclass(cls, Event):
        assert last.endswith("ed") or last in IRREGULAR_PAST, f"event {cls.__name__} must be past tense"
    else:
        assert first in IMPERATIVE_VERBS, f"command {cls.__name__} must start with an imperative verb"
        assert not last.endswith("ed"), f"command {cls.__name__} must not be past tense"


def test_catalogue_has_unique_names_and_lookup() -> None:
    names = [cls.__name__ for cls in CATALOGUE]
    assert len(names) == len(set(names))
    for cls in CATALOGUE:
        assert message_class(cls.__name__) is cls
    with pytest.raises(KeyError, match="NoSuchThing"):
        message_class("NoSuchThing")


def test_register_refuses_a_second_class_with_the_same_name() -> None:
    class BarClosed(Event):  # same name as the catalogue's, different class
        pass

    with pytest.raises(ValueError, match="already registered"):
        register(BarClosed)


@pytest.mark.parametrize("cls", CATALOGUE, ids=lambda c: c.__name__)
def test_json_round_trip(cls: type[Message], make_sample: Sample) -> None:
    sample = make_sample(cls)
    raw = sample.model_dump_json()
    payload = json.loads(raw)
    assert payload["event_type"] == cls.__name__
    decoded = message_class(payload["event_type"]).model_validate_json(raw)
    assert decoded == sample
    assert type(decoded) is cls


@pytest.mark.parametrize("cls", CATALOGUE, ids=lambda c: c.__name__)
def test_sample_validates_against_published_schema(cls: type[Message], make_sample: Sample) -> None:
    schema = json.loads((SCHEMA_DIR / f"{cls.__name__}.json").read_text())
    payload = json.loads(make_sample(cls).model_dump_json())
    jsonschema.Draft202012Validator(schema).validate(payload)
    wrong = {**payload, "event_type": "SomethingElse"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(wrong)


def test_bar_sample_is_consistent(make_sample: Sample) -> None:
    bar = make_sample(BarClosed)
    assert isinstance(bar, BarClosed)
    assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high
