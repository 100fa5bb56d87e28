"""Pipeline quiescence: wait until consumer groups have handled everything on their topics.

A lock-step replay (market data's ``lockstep_groups``) publishes one bar time, waits here until
the pipeline is idle, and only then publishes the next, so every service sees each bar time's
whole consequences (targets, orders, fills) before the next bar: the live run's message order
no longer depends on scheduling. "Idle" means: for every listed group and every topic the group
consumes according to the topic registry, the group's committed offset has reached the
partition's end offset — and that held on two consecutive probes :data:`SETTLE_S` apart with
unchanged end offsets. Services commit only after a message's outputs are acknowledged, so a
committed input implies its outputs are on their topics; the second probe covers outputs
published just after a commit by a service's background task (e.g. execution publishes fills
from its broker's update stream right after the bar that caused them).

A group that has committed nothing on a partition counts as being at offset 0 (services read
from the earliest offset), so a group that has not joined yet holds the pipeline back.

End offsets are high watermarks as fetch responses report them (:class:`HighWatermarks`), not
ListOffsets "latest": the embedded broker (Tansu) answers that with the base offset of the
partition's last record batch, which is short of the end by the rest of that batch, so a gate
built on it found a group idle with a multi-record batch still unhandled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence

from confluent_kafka import OFFSET_END, Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from ata.events import REGISTRY, TopicRegistry

#: Delay between the two probes that must both find the pipeline idle.
SETTLE_S = 0.05
#: Delay between probes while the pipeline is busy.
POLL_S = 0.02
ADMIN_TIMEOUT_S = 10.0
#: Longest wait of one consumer poll while reading high watermarks.
FETCH_POLL_S = 0.05


class HighWatermarks:
    """Partitions' end offsets (high watermarks) read from fetch responses. Blocking; one caller at a time.

    Each :meth:`read` assigns the partitions to a group-less consumer at the end offset read last
    time (a first read starts at ListOffsets "latest", at most one record batch short of the end),
    consumes up to the end and takes each partition's end-of-partition event's offset, then
    unassigns, so nothing is fetched between reads. A read therefore costs the records appended
    since the previous one. ``fetch.wait.max.ms`` is 1: the broker answers a fetch at the end at
    once instead of holding it for new records (0 made the embedded broker answer no fetch at all).
    """

    def __init__(self, bootstrap: str) -> None:
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": "ata-pipeline-gate",  # required, but never joined: assign only
            "enable.auto.commit": False, "enable.partition.eof": True, "fetch.wait.max.ms": 1,
            "auto.offset.reset": "earliest",  # a position gone out of range (topic re-created): read it again
        })
        self._known: dict[tuple[str, int], int] = {}

    def read(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """``(topic, partition) -> high watermark`` of ``partitions``; ``TimeoutError`` after :data:`ADMIN_TIMEOUT_S`."""
        pending = set(partitions)
        if not pending:
            return {}
        consumer = self._consumer
        consumer.assign([TopicPartition(t, p, self._known.get((t, p), OFFSET_END)) for t, p in sorted(pending)])
        ends: dict[tuple[str, int], int] = {}
        deadline = time.monotonic() + ADMIN_TIMEOUT_S
        try:
            while pending:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no end of partition reached for {sorted(pending)}")
                message = consumer.poll(FETCH_POLL_S)
                error = message.error() if message is not None else None
                if message is None or error is None:
                    continue  # nothing yet, or a record on the way to the end
                if error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(error)
                key = (str(message.topic()), int(message.partition() or 0))
                ends[key] = int(message.offset() or 0)
                pending.discard(key)
        finally:
            consumer.unassign()
        self._known.update(ends)
        return ends

    def close(self) -> None:
        self._consumer.close()


class PipelineGate:
    """Waits until consumer groups are idle (see the module docstring). Blocking admin calls run in a thread.

    ``topics_by_group`` maps each group to the topics it consumes; :meth:`for_services` builds it
    from the topic registry (a service's group id is its name).
    """

    def __init__(self, bootstrap: str, topics_by_group: Mapping[str, Sequence[str]]) -> None:
        if not topics_by_group:
            raise ValueError("a pipeline gate needs at least one consumer group")
        empty = sorted(g for g, topics in topics_by_group.items() if not topics)
        if empty:
            raise ValueError(f"consumer groups {empty} consume no topic")
        self.topics = {group: tuple(topics) for group, topics in topics_by_group.items()}
        self._admin = AdminClient({"bootstrap.servers": bootstrap})
        self._watermarks = HighWatermarks(bootstrap)
        self._partitions: dict[str, int] = {}

    @classmethod
    def for_services(cls, bootstrap: str, services: Iterable[str], registry: TopicRegistry = REGISTRY) -> PipelineGate:
        """A gate over ``services``' groups and the topics the registry says each consumes."""
        return cls(bootstrap, {s: [t.name for t in registry if s in t.consumers or s in t.feedback_consumers]
                               for s in services})

    def _partition_counts(self, topics: set[str]) -> dict[str, int]:
        """Partitions per topic; a topic that does not exist yet has none (nothing to wait for)."""
        if not topics <= self._partitions.keys():
            metadata = self._admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics
            self._partitions.update({t: len(metadata[t].partitions) for t in topics if t in metadata})
        return {t: self._partitions.get(t, 0) for t in topics}

    def _end_offsets(self) -> dict[tuple[str, int], int]:
        counts = self._partition_counts({t for topics in self.topics.values() for t in topics})
        return self._watermarks.read((topic, p) for topic, n in counts.items() for p in range(n))

    def _committed(self, group: str) -> dict[tuple[str, int], int]:
        futures = self._admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                                          request_timeout=ADMIN_TIMEOUT_S)
        result = futures[group].result(ADMIN_TIMEOUT_S)
        return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions or () if tp.offset >= 0}

    def probe(self) -> tuple[bool, dict[tuple[str, int], int]]:
        """``(idle, end offsets)`` right now (blocking)."""
        ends = self._end_offsets()
        for group, topics in self.topics.items():
            committed = self._committed(group)
            if any(committed.get((topic, p), 0) < end for (topic, p), end in ends.items() if topic in topics):
                return False, ends
        return True, ends

    def close(self) -> None:
        """Release the watermark reader's consumer (the gate cannot probe afterwards)."""
        self._watermarks.close()

    async def wait_idle(self) -> None:
        """Return once two probes :data:`SETTLE_S` apart both find the groups idle with the same end offsets."""
        previous: dict[tuple[str, int], int] | None = None
        while True:
            idle, ends = await asyncio.to_thread(self.probe)
            if idle and ends == previous:
                return
            previous = ends if idle else None
            await asyncio.sleep(SETTLE_S if idle else POLL_S)
