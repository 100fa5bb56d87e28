"""Topic registry invariants: names, one topic per type, key fields, DLQ siblings, routing of samples."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from ata.events import CATALOGUE, REGISTRY, SERVICES, BarClosed, DeadLetterRecorded, Message
from ata.events.topics import DLQ_SUFFIX, Topic, TopicRegistry

NAME = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.v[0-9]+$")
Sample = Callable[[type[Message]], Message]


def test_topic_names_follow_the_convention() -> None:
    for topic in REGISTRY:
        if topic.dlq_of is None:
            assert NAME.match(topic.name), topic.name
        else:
            assert topic.name == topic.dlq_of + DLQ_SUFFIX and NAME.match(topic.dlq_of)


def test_every_data_topic_has_a_dead_letter_sibling() -> None:
    names = set(REGISTRY.names())
    for topic in REGISTRY.data_topics():
        assert topic.dlq in names
        dlq = REGISTRY.get(topic.dlq)
        assert dlq.value_types == (DeadLetterRecorded,)
        assert set(topic.consumers) | set(topic.feedback_consumers) <= set(dlq.producers), "consumers dead-letter"


@pytest.mark.parametrize("cls", CATALOGUE, ids=lambda c: c.__name__)
def test_each_type_is_carried_by_exactly_one_topic(cls: type[Message]) -> None:
    carriers = [t for t in REGISTRY.data_topics() if cls in t.value_types]
    if cls is DeadLetterRecorded:
        assert carriers == []
        assert all(t.dlq_of is not None for t in REGISTRY if cls in t.value_types)
    else:
        assert len(carriers) == 1, f"{cls.__name__} on {[t.name for t in carriers]}"


def test_registry_carries_only_catalogue_types() -> None:
    for topic in REGISTRY:
        assert set(topic.value_types) <= set(CATALOGUE), topic.name


def test_key_fields_exist_on_every_value_type() -> None:
    for topic in REGISTRY:
        for cls in topic.value_types:
            if topic.key_field is not None:
                assert topic.key_field in cls.model_fields, f"{topic.name}: {cls.__name__} lacks {topic.key_field}"


def test_owners_are_known_services_and_partitions_positive() -> None:
    for topic in REGISTRY:
        assert set(topic.producers) | set(topic.consumers) | set(topic.feedback_consumers) <= set(SERVICES)
        assert topic.producers, f"{topic.name} has no producer"
        assert topic.partitions >= 1


@pytest.mark.parametrize("cls", [c for c in CATALOGUE if c is not DeadLetterRecorded], ids=lambda c: c.__name__)
def test_samples_route_to_their_topic_with_a_key(cls: type[Message], make_sample: Sample) -> None:
    sample = make_sample(cls)
    topic = REGISTRY.topic_for(sample)
    assert cls in topic.value_types
    key = topic.key_of(sample)
    assert key == (str(getattr(sample, topic.key_field)) if topic.key_field else sample.source)


def test_registry_rejects_bad_declarations() -> None:
    with pytest.raises(ValueError, match=re.escape("<domain>.<stream>.v<N>")):
        Topic("Bars", (DeadLetterRecorded,), None, 1, ("journal",), ())
    with pytest.raises(ValueError, match="unknown service"):
        Topic("a.b.v1", (DeadLetterRecorded,), None, 1, ("nobody",), ())
    topic = Topic("a.b.v1", (DeadLetterRecorded,), None, 1, ("journal",), ())
    with pytest.raises(ValueError, match="declared twice"):
        TopicRegistry([topic, topic])


def test_renamed_registry_renames_data_topics_and_their_dlqs(make_sample: Sample) -> None:
    renamed = REGISTRY.renamed({"market.bars.v1": "t1.bars.v1"})
    assert renamed.topic_for(make_sample(BarClosed)).name == "t1.bars.v1"
    assert renamed.get("t1.bars.v1" + DLQ_SUFFIX).dlq_of == "t1.bars.v1"
    assert "market.bars.v1" not in renamed.names()
    assert set(renamed.names()) - {"t1.bars.v1", "t1.bars.v1" + DLQ_SUFFIX} == set(REGISTRY.names()) - {
        "market.bars.v1", "market.bars.v1" + DLQ_SUFFIX}
    assert renamed.get("t1.bars.v1").partitions == REGISTRY.get("market.bars.v1").partitions
