"""Structured JSON logs and OpenTelemetry tracing linked through Kafka headers.

Logging contract: after :func:`configure_logging` every record is written as one JSON
object per line with ``ts`` (ISO-8601 UTC), ``level``, ``logger``, ``msg``, ``service``,
``instance``, ``trace_id``/``span_id`` (hex, only inside a recording span), ``exc`` (the
formatted traceback, when there is one) and every ``extra=`` field of the call.

Tracing contract: one SDK :class:`TracerProvider` per process (:func:`tracer_provider`).
It has no exporter unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set and the OTLP exporter
package is installed; tests attach an in-memory exporter with
:func:`add_span_processor`. Trace context travels in Kafka headers as W3C
``traceparent``/``tracestate``: :func:`inject_headers` writes the current context,
:func:`extract_context` reads it back, and :func:`consumer_span` opens the CONSUMER span
of one handled message, parented by the incoming headers, so whatever is published
inside it carries the same trace id.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import IO, Any

import orjson
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "JsonFormatter",
    "KafkaHeaders",
    "add_span_processor",
    "carried_links",
    "configure_logging",
    "consumer_batch_span",
    "consumer_span",
    "extract_context",
    "inject_headers",
    "memory_exporter",
    "producer_span",
    "tracer",
    "tracer_provider",
]

#: Kafka headers as aiokafka hands them out (``[(key, bytes)]``) or as a plain mapping.
KafkaHeaders = Mapping[str, str | bytes] | Sequence[tuple[str, bytes | None]]

TRACER_NAME = "ata.runtime"
#: Links a batch's span keeps: the SDK's default limit of links per span (it would drop the rest).
MAX_BATCH_LINKS = 128
_PROPAGATOR = TraceContextTextMapPropagator()

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_RECORD_KEYS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line (see the module contract)."""

    def __init__(self, service: str, instance: str) -> None:
        super().__init__()
        self.service = service
        self.instance = instance

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "service": self.service,
            "instance": self.instance,
        }
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            entry["trace_id"] = format(span_context.trace_id, "032x")
            entry["span_id"] = format(span_context.span_id, "016x")
        for key, value in record.__dict__.items():
            if key not in _STANDARD_RECORD_KEYS and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        # default=str: extras may be UUIDs, enums, Decimals...; a log line must never raise.
        return orjson.dumps(entry, default=str).decode()


class _JsonHandler(logging.StreamHandler[IO[str]]):
    """Marker type so :func:`configure_logging` can replace its own handler on a second call."""


def configure_logging(service: str, instance: str, level: str | int = "INFO", stream: IO[str] | None = None) -> None:
    """Send every log record of the process to ``stream`` (stderr) as JSON lines.

    Idempotent: a second call replaces the handler installed by the first. Handlers
    installed by others (e.g. pytest's capture) are left in place.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _JsonHandler)]:
        root.removeHandler(handler)
    handler = _JsonHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(service, instance))
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # The Kafka client logs every rebalance and connection at INFO; keep the service's own lines readable.
    logging.getLogger("aiokafka").setLevel(max(root.level, logging.WARNING))


def _otlp_processor() -> SpanProcessor | None:
    """An OTLP batch exporter when explicitly configured and installed; never by default."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        logging.getLogger(__name__).warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but opentelemetry-exporter-otlp-proto-http is not installed; "
            "spans are not exported"
        )
        return None
    return BatchSpanProcessor(OTLPSpanExporter())


def tracer_provider(service: str = "ata", instance: str = "") -> TracerProvider:
    """The process's SDK tracer provider, created and installed globally on first call.

    ``service``/``instance`` only name the resource when this call creates the provider;
    per-span service names are span attributes (several services may share a process in tests).
    """
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    attributes = {"service.name": service}
    if instance:
        attributes["service.instance.id"] = instance
    provider = TracerProvider(resource=Resource.create(attributes))
    processor = _otlp_processor()
    if processor is not None:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    # set_tracer_provider refuses to replace an already-set provider; return what is really global.
    installed = trace.get_tracer_provider()
    return installed if isinstance(installed, TracerProvider) else provider


def add_span_processor(processor: SpanProcessor) -> None:
    """Attach ``processor`` (e.g. a ``SimpleSpanProcessor(InMemorySpanExporter())``) to the process provider."""
    tracer_provider().add_span_processor(processor)


_memory_exporter: InMemorySpanExporter | None = None


def memory_exporter() -> InMemorySpanExporter:
    """An in-memory exporter attached to the process provider (once), for tests and diagnostics.

    Finished spans accumulate until ``clear()``; filter them by trace id or attributes.
    """
    global _memory_exporter  # noqa: PLW0603 - one exporter per process, like the provider itself
    if _memory_exporter is None:
        _memory_exporter = InMemorySpanExporter()
        add_span_processor(SimpleSpanProcessor(_memory_exporter))
    return _memory_exporter


#: The runtime's tracer and the provider it came from: the SDK builds a new tracer on every ``get_tracer`` call,
#: which cost more than the span it was asked for.
_tracer: tuple[TracerProvider, trace.Tracer] | None = None


def tracer() -> trace.Tracer:
    """The runtime's tracer from the process provider (made once per provider; it sees processors added later)."""
    global _tracer  # noqa: PLW0603 - one tracer per process provider, like the provider itself
    provider = tracer_provider()
    if _tracer is None or _tracer[0] is not provider:
        _tracer = (provider, provider.get_tracer(TRACER_NAME))
    return _tracer[1]


def inject_headers(headers: dict[str, str] | None = None) -> dict[str, str]:
    """Write the current trace context (``traceparent``, ``tracestate``) into ``headers`` and return it.

    Outside a span nothing is written.
    """
    carrier: dict[str, str] = {} if headers is None else headers
    _PROPAGATOR.inject(carrier)
    return carrier


def _as_text_mapping(headers: KafkaHeaders | None) -> dict[str, str]:
    if headers is None:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    result: dict[str, str] = {}
    for key, value in items:
        if value is None:
            continue
        result[key.lower()] = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return result


def extract_context(headers: KafkaHeaders | None) -> otel_context.Context:
    """The trace context carried by Kafka ``headers``; an empty context when absent or malformed."""
    return _PROPAGATOR.extract(_as_text_mapping(headers))


def _messaging_attributes(
    service: str, topic: str, operation: str, extra: Mapping[str, str | int] | None
) -> dict[str, str | int]:
    """OpenTelemetry messaging semantic-convention attributes, plus the service that handled the span."""
    attributes: dict[str, str | int] = {
        "messaging.system": "kafka",
        "messaging.operation": operation,
        "messaging.destination.name": topic,
        "ata.service": service,
    }
    attributes.update(extra or {})
    return attributes


@contextmanager
def consumer_span(
    service: str,
    topic: str,
    headers: KafkaHeaders | None,
    *,
    attributes: Mapping[str, str | int] | None = None,
) -> Iterator[Span]:
    """The CONSUMER span of one handled message from ``topic``, current while the block runs.

    Parented by the trace context in ``headers`` (a new trace when there is none).
    An exception leaving the block is recorded on the span and re-raised.
    """
    with tracer().start_as_current_span(
        f"{topic} process",
        context=extract_context(headers),
        kind=SpanKind.CONSUMER,
        attributes=_messaging_attributes(service, topic, "process", attributes),
    ) as span:
        yield span


def carried_links(headers: Sequence[KafkaHeaders | None]) -> list[Link]:
    """A link to each distinct valid trace context carried by ``headers``, in first-seen order, at most
    :data:`MAX_BATCH_LINKS`.

    The messages of a batch often carry the same context (a producer publishes several in one span),
    and extracting a context and building its link cost more than the rest of a message's way through
    the consumer loop: a ``traceparent``/``tracestate`` pair seen before in the batch is skipped (its
    link would repeat one already made), and a message without ``traceparent`` carries no context.
    """
    links: list[Link] = []
    seen: set[tuple[str | None, str | None]] = set()
    for carried in headers:
        if len(links) == MAX_BATCH_LINKS:
            break
        if not carried:
            continue
        text = _as_text_mapping(carried)
        parent = text.get("traceparent")
        key = (parent, text.get("tracestate"))
        if parent is None or key in seen:
            continue
        seen.add(key)
        context = trace.get_current_span(_PROPAGATOR.extract(text)).get_span_context()
        if context.is_valid:
            links.append(Link(context))
    return links


@contextmanager
def consumer_batch_span(
    service: str,
    topics: Sequence[str],
    headers: Sequence[KafkaHeaders | None],
    *,
    attributes: Mapping[str, str | int] | None = None,
) -> Iterator[Span]:
    """The CONSUMER span of a batch of messages from ``topics`` handled together, current while the block runs.

    A new trace, linked to each distinct trace context the messages' ``headers`` carry (the first
    :data:`MAX_BATCH_LINKS` of them, see :func:`carried_links`): whatever is published inside it
    joins the batch's trace. An exception leaving the block is recorded on the span and re-raised.
    """
    links = carried_links(headers)
    destination = topics[0] if len(topics) == 1 else ",".join(topics)
    with tracer().start_as_current_span(
        f"{destination} process",
        context=otel_context.Context(),  # a root: the messages' own traces are linked, not parents
        kind=SpanKind.CONSUMER,
        links=links,
        attributes=_messaging_attributes(service, destination, "process", attributes),
    ) as span:
        yield span


@contextmanager
def producer_span(service: str, topic: str, *, attributes: Mapping[str, str | int] | None = None) -> Iterator[Span]:
    """A PRODUCER span around publishing to ``topic``; a child of the current span, else a new trace.

    Background producers (a market data source) use it so each origin event starts the
    trace that its downstream effects join.
    """
    span_attributes = _messaging_attributes(service, topic, "publish", attributes)
    with tracer().start_as_current_span(f"{topic} publish", kind=SpanKind.PRODUCER, attributes=span_attributes) as span:
        yield span
