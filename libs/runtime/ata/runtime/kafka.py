"""Kafka client factories and topic provisioning, configured from :class:`RuntimeSettings`.

Client roles (DESIGN.md): aiokafka for asyncio consume -> transform -> produce inside services;
confluent-kafka for bulk producers (replay, re-publish) and administration.

Both producers partition keyed records with murmur2 (Kafka's Java default), so a key lands on the
same partition whichever client wrote it; the confluent producer must be told so explicitly
(``partitioner=murmur2_random``: its own default is CRC32).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka import Message as ConfluentMessage
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from ata.events import REGISTRY, Topic
from ata.runtime.config import RuntimeSettings

__all__ = [
    "ProvisionError",
    "ProvisionReport",
    "bulk_producer",
    "consumer",
    "producer",
    "provision_topics",
]

ADMIN_TIMEOUT_S = 30.0


def producer(settings: RuntimeSettings, *, client_id: str | None = None) -> AIOKafkaProducer:
    """An (unstarted) aiokafka producer: ``acks=all``, small linger, no compression.

    Idempotence follows ``settings.kafka_enable_idempotence`` (off for the embedded broker).
    """
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id or f"ata-{settings.instance_id}",
        acks="all",
        linger_ms=settings.kafka_linger_ms,
        compression_type=None,
        enable_idempotence=settings.kafka_enable_idempotence,
        request_timeout_ms=settings.kafka_request_timeout_ms,
    )


def consumer(settings: RuntimeSettings, group_id: str, *topics: str, client_id: str | None = None) -> AIOKafkaConsumer:
    """An (unstarted) aiokafka group consumer with manual commits, starting at the earliest offset.

    Starting at earliest is deliberate: a new group must not skip what was published before it
    joined (and the embedded broker cannot answer end-offset queries reliably).
    """
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id or f"ata-{settings.instance_id}",
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        max_poll_records=settings.kafka_max_poll_records,
        request_timeout_ms=settings.kafka_request_timeout_ms,
    )


def bulk_producer(bootstrap: str, *, client_id: str = "ata-bulk",
                  on_delivery: Callable[[KafkaError | None, ConfluentMessage], None] | None = None,
                  **overrides: Any) -> Producer:
    """A confluent-kafka producer for bulk publishing: ``acks=all``, broker-side idempotence, murmur2 keys.

    ``on_delivery`` becomes the producer's default delivery callback (run by ``poll``/``flush``
    for each record ``produce`` was not given its own callback for): the same reports as passing
    it to every ``produce`` call, without parsing it on every call, which is a good part of a
    bulk producer's per-record cost. ``overrides`` are librdkafka properties with dots written as
    underscores (``linger_ms=20`` -> ``linger.ms``).
    """
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "client.id": client_id,
        "acks": "all",
        "enable.idempotence": True,
        "partitioner": "murmur2_random",
        "compression.type": "none",
        "linger.ms": 5,
    }
    config.update({key.replace("_", "."): value for key, value in overrides.items()})
    if on_delivery is not None:
        config["on_delivery"] = on_delivery
    return Producer(config)


class ProvisionError(RuntimeError):
    """Topics could not be created, or exist with another partition count (the broker cannot shrink them,
    and growing them would move keys to other partitions). ``report`` says which."""

    def __init__(self, message: str, report: ProvisionReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class ProvisionReport:
    """What :func:`provision_topics` found and did."""

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    #: name -> (declared partitions, partitions on the broker)
    mismatched: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: name -> broker error
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.mismatched and not self.failed


def _topic_config(topic: Topic) -> dict[str, str]:
    return {
        "retention.ms": str(topic.retention_ms),
        "cleanup.policy": "compact" if topic.compacted else "delete",
    }


def provision_topics(
    bootstrap: str,
    topics: Iterable[Topic] = REGISTRY,
    *,
    timeout_s: float = ADMIN_TIMEOUT_S,
    strict: bool = True,
) -> ProvisionReport:
    """Create every topic in ``topics`` with its declared partitions, retention and compaction.

    Idempotent: a topic that already exists with the declared partition count is left alone.
    Pass a :class:`~ata.events.TopicRegistry` (the default, ``REGISTRY``) to include every
    topic's dead-letter sibling. With ``strict`` (default) a mismatch or failure raises
    :class:`ProvisionError` after everything else has been created; otherwise it is only reported.
    Blocking: from asyncio call it through ``asyncio.to_thread``.
    """
    wanted = {topic.name: topic for topic in topics}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    report = ProvisionReport()
    on_broker = admin.list_topics(timeout=timeout_s).topics
    to_create = [name for name in wanted if name not in on_broker]
    report.existing.extend(name for name in wanted if name in on_broker)
    if to_create:
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=wanted[name].partitions, replication_factor=-1, config=_topic_config(wanted[name]))
             for name in to_create],
            operation_timeout=timeout_s,
            request_timeout=timeout_s,
        )
        for name, future in futures.items():
            try:
                future.result(timeout=timeout_s)
                report.created.append(name)
            except KafkaException as exc:
                error = exc.args[0]
                if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    report.existing.append(name)  # created concurrently by another instance
                else:
                    report.failed[name] = str(error)
    if report.existing:
        on_broker = admin.list_topics(timeout=timeout_s).topics
        for name in report.existing:
            actual = len(on_broker[name].partitions)
            if actual != wanted[name].partitions:
                report.mismatched[name] = (wanted[name].partitions, actual)
    if strict and not report.ok:
        details = [f"{n}: declared {want} partitions, broker has {have}" for n, (want, have) in report.mismatched.items()]
        details += [f"{n}: {err}" for n, err in report.failed.items()]
        raise ProvisionError("topic provisioning incomplete: " + "; ".join(details), report)
    return report
