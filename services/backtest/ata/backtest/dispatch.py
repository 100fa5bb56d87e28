"""In-process delivery for backtests: the topic registry's routing, FIFO, deterministic.

:class:`DirectBus` has :class:`ata.runtime.bus.InMemoryBus`'s delivery contract — a message goes
to every subscriber of its registry topic in subscription order; outputs are queued behind what
is already queued, so handlers never re-enter — without encoding each message to JSON bytes
(``InMemoryBus`` builds a ``Delivery`` with the encoded value for every message, which a
backtest never reads). ``bench/bench_backtest.py`` measures both; ``BacktestConfig.bus`` picks.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence

from ata.events import REGISTRY, Message, TopicRegistry
from ata.runtime.bus import Delivery, InMemoryBus

#: ``async def handler(message) -> outputs``.
Handler = Callable[[Message], Awaitable[Sequence[Message]]]


class DirectBus:
    """Registry-routed FIFO dispatcher (see the module docstring). ``counts`` tallies messages per topic."""

    def __init__(self, registry: TopicRegistry = REGISTRY) -> None:
        self.registry = registry
        self.counts: Counter[str] = Counter()
        self._by_topic: dict[str, list[Handler]] = {}
        self._routes: dict[type[Message], tuple[str, list[Handler]]] = {}
        self._queue: deque[Message] = deque()

    def subscribe(self, topics: Iterable[str], handler: Handler) -> None:
        for topic in topics:
            self._by_topic.setdefault(topic, []).append(handler)
        self._routes.clear()

    def _route(self, message: Message) -> tuple[str, list[Handler]]:
        route = self._routes.get(type(message))
        if route is None:
            topic = self.registry.topic_for(message).name
            route = self._routes[type(message)] = (topic, self._by_topic.setdefault(topic, []))
        return route

    async def publish(self, messages: Iterable[Message]) -> None:
        """Deliver ``messages`` and everything they cause, breadth first, before returning."""
        queue = self._queue
        queue.extend(messages)
        counts = self.counts
        while queue:
            message = queue.popleft()
            topic, handlers = self._route(message)
            counts[topic] += 1
            for handler in handlers:
                outputs = await handler(message)
                if outputs:
                    queue.extend(outputs)


class MemoryBusAdapter:
    """The same interface over :class:`ata.runtime.bus.InMemoryBus` (each handler publishes its outputs)."""

    def __init__(self, registry: TopicRegistry = REGISTRY) -> None:
        self.bus = InMemoryBus(registry=registry)
        self.counts: Counter[str] = Counter()

    def subscribe(self, topics: Iterable[str], handler: Handler) -> None:
        bus = self.bus

        async def deliver(message: Message, _delivery: Delivery) -> None:
            outputs = await handler(message)
            if outputs:
                await bus.publish(outputs)

        bus.subscribe(list(topics), deliver)

    async def publish(self, messages: Iterable[Message]) -> None:
        await self.bus.publish(messages)
        for topic, delivered in self.bus.history.items():
            self.counts[topic] += len(delivered)
        self.bus.history.clear()  # bounded memory: a backtest keeps its own records
