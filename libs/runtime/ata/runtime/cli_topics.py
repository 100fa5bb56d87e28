"""``ata topics list|describe|graph|provision``: the topic registry for operators."""

from __future__ import annotations

import os
from collections.abc import Iterable

import typer
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from ata.events.topics import REGISTRY, Topic
from ata.runtime import infra
from ata.runtime.cli_common import console as make_console
from ata.runtime.cli_common import state_dir, summary
from ata.runtime.topology import TopicGraph

app = typer.Typer(help="The topic registry: names, keys, partitions, owners and the service graph.", no_args_is_help=True)


def _retention(topic: Topic) -> str:
    days = topic.retention_ms / 86_400_000
    text = f"{days:g}d" if days >= 1 else f"{topic.retention_ms / 3_600_000:g}h"
    return text + (" compacted" if topic.compacted else "")


def _consumers(topic: Topic) -> str:
    return ", ".join([*topic.consumers, *(f"{c} (feedback)" for c in topic.feedback_consumers)]) or "-"


@app.command("list")
def list_topics(dlq: bool = typer.Option(False, "--dlq", help="include dead-letter topics")) -> None:
    """Every topic with key, partitions, retention, producers and consumers."""
    table = Table(title="topics")
    for column in ("topic", "key", "partitions", "retention", "producers", "consumers", "value types"):
        table.add_column(column, overflow="fold")
    for topic in REGISTRY:
        if topic.dlq_of is not None and not dlq:
            continue
        table.add_row(topic.name, topic.key_field or "(source)", str(topic.partitions), _retention(topic),
                      ", ".join(topic.producers), _consumers(topic), ", ".join(t.__name__ for t in topic.value_types))
    make_console().print(table)


@app.command()
def describe(name: str) -> None:
    """One topic in full, including each value type's fields."""
    try:
        topic = REGISTRY.get(name)
    except KeyError as exc:
        make_console(stderr=True).print(str(exc.args[0]))
        raise typer.Exit(2) from None
    console = make_console()
    console.print(f"[bold]{topic.name}[/bold]  {topic.description}")
    rows = [("key", topic.key_field or "(producing service instance)"), ("partitions", str(topic.partitions)),
            ("retention", _retention(topic)), ("producers", ", ".join(topic.producers) or "-"),
            ("consumers", _consumers(topic)), ("dead letters", f"of {topic.dlq_of}" if topic.dlq_of else topic.dlq)]
    for label, value in rows:
        console.print(f"  {label:<13}{value}")
    for value_type in topic.value_types:
        console.print(f"  [bold]{value_type.__name__}[/bold]: {summary(value_type)}")
        for field_name, info in value_type.model_fields.items():
            required = "required" if info.is_required() else "optional"
            console.print(f"      {field_name}: {_type_name(info.annotation)} ({required})")


def _type_name(annotation: object) -> str:
    name = getattr(annotation, "__name__", None)
    if isinstance(name, str) and "[" not in str(annotation) and "|" not in str(annotation):
        return name
    return str(annotation).replace("typing.", "")


def render_graph(topics: Iterable[Topic], console: Console, include_dlq: bool = False, mermaid: bool = False) -> int:
    """Print the service → topic → service graph; return 1 (after naming it) on a cycle, else 0."""
    graph = TopicGraph.of(topics, include_dlq=include_dlq)
    if mermaid:
        console.print(graph.to_mermaid(), end="", markup=False, highlight=False)
    cycle = graph.find_cycle()
    if cycle is not None:
        console.print("cycle (ignoring feedback edges): " + " -> ".join(cycle), markup=False)
        return 1
    if mermaid:
        return 0
    layers = graph.layers()
    order = [service for layer in layers for service in layer]
    lines: list[str] = []
    tree = Tree("services → topics → services")
    for service in order:
        branch = tree.add(f"[bold]{service}[/bold]")
        for producer, topic in ((e.source, e.target) for e in graph.edges):
            if producer != service:
                continue
            consumers = [(e.target, e.feedback) for e in graph.edges if e.source == topic]
            shown = ", ".join(f"{c} (feedback)" if fb else c for c, fb in consumers) or "-"
            branch.add(f"{topic} → {shown}")
            lines.append(f"{service} -> {topic} -> {shown}")
    if console.is_terminal:
        console.print(tree)
    else:
        console.print("\n".join(lines), markup=False, highlight=False)
    feedback = sum(1 for e in graph.edges if e.feedback)
    order_text = " | ".join(", ".join(layer) for layer in layers)
    console.print(f"acyclic ignoring {feedback} feedback edges; order: {order_text}", markup=False, highlight=False)
    return 0


@app.command()
def graph(
    dlq: bool = typer.Option(False, "--dlq", help="include dead-letter topics"),
    mermaid: bool = typer.Option(False, "--mermaid", help="print a mermaid flowchart instead"),
    provision: bool = typer.Option(False, "--provision", help="also create the topics on the broker"),
) -> None:
    """Print the service/topic DAG; exit 1 on a cycle (feedback consumptions excepted)."""
    code = render_graph(REGISTRY, make_console(), include_dlq=dlq, mermaid=mermaid)
    if code:
        raise typer.Exit(code)
    if provision:
        provision_command(None)


def bootstrap_address(explicit: str | None) -> str:
    """The broker to talk to: ``--bootstrap``, ``ATA_KAFKA_BOOTSTRAP``, or the one ``ata infra up`` recorded."""
    if explicit:
        return explicit
    if os.environ.get("ATA_KAFKA_BOOTSTRAP"):
        return os.environ["ATA_KAFKA_BOOTSTRAP"]
    state = infra.InfraState.load(state_dir())
    if state is None:
        raise typer.BadParameter("no broker: pass --bootstrap, set ATA_KAFKA_BOOTSTRAP or run `ata infra up`")
    return state.kafka_bootstrap


@app.command("provision")
def provision_command(bootstrap: str | None = typer.Option(None, help="host:port of the broker")) -> None:
    """Create every registry topic (and its DLQ) with its declared partitions; idempotent."""
    from ata.runtime.kafka import ProvisionError, provision_topics

    address = bootstrap_address(bootstrap)
    try:
        report = provision_topics(address)
    except ProvisionError as exc:
        make_console(stderr=True).print(str(exc), markup=False)
        raise typer.Exit(1) from None
    make_console().print(f"{address}: created {len(report.created)} topics, {len(report.existing)} already present")
