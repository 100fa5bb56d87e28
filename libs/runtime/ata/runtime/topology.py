"""The service → topic → service graph of a topic registry, and its cycle check.

Nodes are services and topics; a producer has an edge to its topic, a topic to each of its
consumers. Consumptions declared as ``feedback_consumers`` close a deliberate loop and are
left out of the acyclicity check (they are still listed, marked as feedback). Dead-letter
siblings (``<topic>.dlq``) are left out by default: every consumer may write to them, they
carry failures rather than data flow.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ata.events.topics import Topic


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    feedback: bool = False


@dataclass(frozen=True)
class TopicGraph:
    """Services and topics with their edges. Topic nodes are the topic names."""

    services: tuple[str, ...]
    topics: tuple[str, ...]
    edges: tuple[Edge, ...]

    @classmethod
    def of(cls, topics: Iterable[Topic], include_dlq: bool = False) -> TopicGraph:
        edges: list[Edge] = []
        names: list[str] = []
        services: set[str] = set()
        for topic in topics:
            if topic.dlq_of is not None and not include_dlq:
                continue
            names.append(topic.name)
            edges.extend(Edge(producer, topic.name) for producer in topic.producers)
            edges.extend(Edge(topic.name, consumer) for consumer in topic.consumers)
            edges.extend(Edge(topic.name, consumer, feedback=True) for consumer in topic.feedback_consumers)
            services.update(topic.producers, topic.consumers, topic.feedback_consumers)
        return cls(tuple(sorted(services)), tuple(names), tuple(edges))

    def successors(self, node: str, with_feedback: bool = False) -> list[str]:
        return [e.target for e in self.edges if e.source == node and (with_feedback or not e.feedback)]

    def find_cycle(self) -> list[str] | None:
        """A cycle over non-feedback edges as a node path (first node repeated at the end), or None."""
        adjacency: dict[str, list[str]] = {}
        for edge in self.edges:
            if not edge.feedback:
                adjacency.setdefault(edge.source, []).append(edge.target)
        white, grey, black = 0, 1, 2
        colour: dict[str, int] = {}
        for root in sorted(adjacency):
            if colour.get(root, white) != white:
                continue
            # iterative DFS: (node, index of the next successor to visit)
            stack: list[tuple[str, int]] = [(root, 0)]
            colour[root] = grey
            while stack:
                node, index = stack[-1]
                successors = adjacency.get(node, [])
                if index == len(successors):
                    colour[node] = black
                    stack.pop()
                    continue
                stack[-1] = (node, index + 1)
                nxt = successors[index]
                state = colour.get(nxt, white)
                if state == grey:
                    path = [n for n, _ in stack]
                    return [*path[path.index(nxt):], nxt]
                if state == white:
                    colour[nxt] = grey
                    stack.append((nxt, 0))
        return None

    def service_edges(self) -> list[tuple[str, str, str, bool]]:
        """``(producer, topic, consumer, feedback)`` for every producer/consumer pair of a topic."""
        rows: list[tuple[str, str, str, bool]] = []
        for topic in self.topics:
            producers = [e.source for e in self.edges if e.target == topic]
            consumers = [(e.target, e.feedback) for e in self.edges if e.source == topic]
            rows.extend((p, topic, c, fb) for p in producers for c, fb in consumers)
        return rows

    def layers(self) -> list[list[str]]:
        """Services in topological layers (sources first), ignoring feedback edges.

        Raises ``ValueError`` naming a cycle if there is one.
        """
        cycle = self.find_cycle()
        if cycle is not None:
            raise ValueError("cycle: " + " -> ".join(cycle))
        depends: dict[str, set[str]] = {s: set() for s in self.services}
        for producer, _topic, consumer, feedback in self.service_edges():
            if not feedback and producer != consumer:
                depends[consumer].add(producer)
        layers: list[list[str]] = []
        placed: set[str] = set()
        while len(placed) < len(self.services):
            layer = sorted(s for s in self.services if s not in placed and depends[s] <= placed)
            layers.append(layer)
            placed.update(layer)
        return layers

    def to_mermaid(self) -> str:
        """A mermaid ``flowchart`` of services (boxes) and topics (rounded), feedback dotted."""
        lines = ["flowchart LR"]
        for service in self.services:
            lines.append(f"  {service}[{service}]")
        for topic in self.topics:
            lines.append(f"  {_mermaid_id(topic)}([{topic}])")
        for edge in self.edges:
            arrow = "-.->" if edge.feedback else "-->"
            lines.append(f"  {_mermaid_id(edge.source)} {arrow} {_mermaid_id(edge.target)}")
        return "\n".join(lines) + "\n"


def _mermaid_id(node: str) -> str:
    return node.replace(".", "_")
