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
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec  # not re-exported for type checkers

from ata.events import REGISTRY, TopicRegistry

#: Delay between the two probes that must both find the pipeline idle.
SETTLE_S = 0.05
#: Delay between probes while the pipeline is busy.
POLL_S = 0.02
ADMIN_TIMEOUT_S = 10.0


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
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        wanted = {TopicPartition(topic, p): latest for topic, n in counts.items() for p in range(n)}
        if not wanted:
            return {}
        futures = self._admin.list_offsets(wanted, request_timeout=ADMIN_TIMEOUT_S)
        return {(tp.topic, tp.partition): future.result(ADMIN_TIMEOUT_S).offset for tp, future in futures.items()}

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

    async def wait_idle(self) -> None:
        """Return once two probes :data:`SETTLE_S` apart both find the groups idle with the same end offsets."""
        previous: dict[tuple[str, int], int] | None = None
        while True:
            idle, ends = await asyncio.to_thread(self.probe)
            if idle and ends == previous:
                return
            previous = ends if idle else None
            await asyncio.sleep(SETTLE_S if idle else POLL_S)
