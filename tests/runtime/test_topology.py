"""The registry's service graph is a DAG once feedback consumptions are set aside; cycles are found."""

from __future__ import annotations

from ata.events import BarClosed, FillReported, RegimeStateUpdated, SubmitOrder
from ata.events.topics import REGISTRY, SERVICES, Topic
from ata.runtime.topology import TopicGraph


def test_registry_is_acyclic_ignoring_feedback_edges() -> None:
    graph = TopicGraph.of(REGISTRY)
    assert graph.find_cycle() is None
    layers = graph.layers()
    order = [service for layer in layers for service in layer]
    assert sorted(order) == sorted(set(order))
    position = {service: i for i, layer in enumerate(layers) for service in layer}
    for producer, _topic, consumer, feedback in graph.service_edges():
        if not feedback and producer != consumer:
            assert position[producer] < position[consumer], f"{producer} must come before {consumer}"
    assert position["marketdata"] < position["regime"] < position["strategy"] < position["risk"] < position["execution"]


def test_registry_including_dead_letters_is_acyclic_too() -> None:
    assert TopicGraph.of(REGISTRY, include_dlq=True).find_cycle() is None


def test_feedback_edges_are_what_keeps_the_registry_acyclic() -> None:
    """Turning every feedback consumption into a plain one must reveal a cycle (risk <-> execution)."""
    plain = [Topic(t.name, t.value_types, t.key_field, t.partitions, t.producers, (*t.consumers, *t.feedback_consumers),
                   dlq_of=t.dlq_of) for t in REGISTRY.data_topics()]
    cycle = TopicGraph.of(plain).find_cycle()
    assert cycle is not None
    assert cycle[0] == cycle[-1]


def test_crafted_cycle_is_detected_with_its_path() -> None:
    topics = [
        Topic("market.bars.v1", (BarClosed,), "symbol", 1, ("marketdata",), ("regime",)),
        Topic("regime.states.v1", (RegimeStateUpdated,), "symbol", 1, ("regime",), ("risk",)),
        Topic("orders.commands.v1", (SubmitOrder,), "client_order_id", 1, ("risk",), ("execution",)),
        Topic("orders.fills.v1", (FillReported,), "client_order_id", 1, ("execution",), ("regime",)),
    ]
    cycle = TopicGraph.of(topics).find_cycle()
    assert cycle is not None
    assert cycle[0] == cycle[-1]
    assert set(cycle) == {"regime", "regime.states.v1", "risk", "orders.commands.v1", "execution", "orders.fills.v1"}
    # the same loop declared as feedback is accepted
    topics[-1] = Topic("orders.fills.v1", (FillReported,), "client_order_id", 1, ("execution",), (), ("regime",))
    assert TopicGraph.of(topics).find_cycle() is None


def test_self_loop_is_a_cycle() -> None:
    topics = [Topic("market.bars.v1", (BarClosed,), "symbol", 1, ("marketdata",), ("marketdata",))]
    assert TopicGraph.of(topics).find_cycle() == ["market.bars.v1", "marketdata", "market.bars.v1"]


def test_mermaid_lists_every_service_and_topic() -> None:
    text = TopicGraph.of(REGISTRY).to_mermaid()
    assert text.startswith("flowchart LR")
    for topic in REGISTRY.data_topics():
        assert f"([{topic.name}])" in text
    for service in SERVICES:
        assert f"{service}[{service}]" in text
    assert "-.->" in text  # feedback edges drawn dotted
