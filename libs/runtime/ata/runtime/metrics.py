"""Prometheus metrics of the runtime, and get-or-create helpers for services' own metrics.

Every metric name starts with ``ata_`` and every runtime metric carries a ``service``
label, so several services may share one process (tests, the backtest engine) and one
registry. The helpers return the already-registered collector when a metric of the same
name, type and labels exists, so importing a module twice (pytest's importlib mode, a
reload) never fails with "Duplicated timeseries"; a same-named metric of another type or
label set is a programming error and raises :class:`ValueError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

__all__ = [
    "CONSUMER_LAG",
    "DEAD_LETTERS",
    "DUPLICATES_SKIPPED",
    "EVENTS_IN",
    "EVENTS_OUT",
    "HANDLER_SECONDS",
    "HEARTBEATS",
    "SERVICE_READY",
    "SERVICE_START_TIME",
    "counter",
    "gauge",
    "histogram",
    "render",
]

PREFIX = "ata_"

#: Handler latency buckets: sub-millisecond hops up to multi-second LLM calls.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_M = TypeVar("_M", bound=MetricWrapperBase)


def _get_or_create(kind: type[_M], name: str, documentation: str, labelnames: Sequence[str], **kwargs: object) -> _M:
    if not name.startswith(PREFIX):
        raise ValueError(f"metric {name!r} must start with {PREFIX!r}")
    # prometheus_client keeps no public name lookup; its private map is the only registry-wide truth.
    existing = REGISTRY._names_to_collectors.get(name)
    if existing is None:
        return kind(name, documentation, labelnames=tuple(labelnames), **kwargs)  # type: ignore[arg-type]
    if not isinstance(existing, kind) or tuple(existing._labelnames) != tuple(labelnames):
        raise ValueError(f"metric {name!r} is already registered as another type or with other labels")
    return existing


def counter(name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
    """The process-wide counter ``name`` (include the ``_total`` suffix)."""
    return _get_or_create(Counter, name, documentation, labelnames)


def gauge(name: str, documentation: str, labelnames: Sequence[str] = ()) -> Gauge:
    """The process-wide gauge ``name``."""
    return _get_or_create(Gauge, name, documentation, labelnames)


def histogram(
    name: str, documentation: str, labelnames: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS_S
) -> Histogram:
    """The process-wide histogram ``name`` (use base units: ``_seconds``, ``_bytes``)."""
    return _get_or_create(Histogram, name, documentation, labelnames, buckets=tuple(buckets))


def render(registry: CollectorRegistry = REGISTRY) -> bytes:
    """The registry in the Prometheus text exposition format (what ``/metrics`` serves)."""
    return generate_latest(registry)


_BY_TOPIC = ("service", "topic")

EVENTS_IN = counter("ata_events_in_total", "Messages received from Kafka, by consuming service and topic", _BY_TOPIC)
EVENTS_OUT = counter("ata_events_out_total", "Messages published and acknowledged, by producing service and topic", _BY_TOPIC)
HANDLER_SECONDS = histogram("ata_handler_duration_seconds", "Time to handle one message and publish its outputs", _BY_TOPIC)
CONSUMER_LAG = gauge(
    "ata_consumer_lag", "Messages behind the partition's high watermark, per consumed partition", (*_BY_TOPIC, "partition")
)
DEAD_LETTERS = counter(
    "ata_dead_letters_total", "Messages sent to a dead-letter topic, by stage (decode, validate, handle)", (*_BY_TOPIC, "stage")
)
DUPLICATES_SKIPPED = counter("ata_duplicates_skipped_total", "Messages skipped: event id already applied", _BY_TOPIC)
SERVICE_READY = gauge("ata_service_ready", "1 while the service instance reports ready, else 0", ("service", "instance"))
SERVICE_START_TIME = gauge("ata_service_start_time_seconds", "Unix time the service instance started", ("service", "instance"))
HEARTBEATS = counter("ata_heartbeats_total", "Heartbeats published", ("service", "instance"))
