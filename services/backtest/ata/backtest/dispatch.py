"""In-process delivery for backtests: the topic registry's routing, FIFO, deterministic.

:class:`DirectBus` has :class:`ata.runtime.bus.InMemoryBus`'s delivery contract — a message goes
to every subscriber of its registry topic in subscription order; outputs are queued behind what
is already queued, so handlers never re-enter — without encoding each message to JSON bytes
(``InMemoryBus`` builds a ``Delivery`` with the encoded value for every message, which a
backtest never reads). ``bench/bench_backtest.py`` measures both; ``BacktestConfig.bus`` picks.

A handler is a plain function when its work is synchronous (most cores) and a coroutine function
when it awaits (execution's broker, oversight's reviewer): both buses call the first directly and
await only the second, since a coroutine per delivery costs about as much as a small handler.
"""

from __future__ import annotations

import inspect
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from ata.events import REGISTRY, Message, TopicRegistry
from ata.runtime.bus import Delivery, InMemoryBus

#: ``handler(message) -> outputs``, or ``async def handler(message) -> outputs`` (see the module docstring).
Outputs = Sequence[Message]
Handler = Callable[[Message], Outputs | Awaitable[Outputs]]
#: A subscribed handler and whether it is a coroutine function (decided once, at subscription), which says
#: whether its result is the outputs or awaits them.
Subscriber = tuple[Callable[[Message], Any], bool]


class DirectBus:
    """Registry-routed FIFO dispatcher (see the module docstring). ``counts`` tallies messages per topic."""

    def __init__(self, registry: TopicRegistry = REGISTRY) -> None:
        self.registry = registry
        self.counts: Counter[str] = Counter()
        self._by_topic: dict[str, list[Subscriber]] = {}
        self._routes: dict[type[Message], tuple[str, list[Subscriber]]] = {}
        self._queue: deque[Message] = deque()

    def subscribe(self, topics: Iterable[str], handler: Handler) -> None:
        subscriber = (handler, inspect.iscoroutinefunction(handler))
        for topic in topics:
            self._by_topic.setdefault(topic, []).append(subscriber)
        self._routes.clear()

    def _route(self, message: Message) -> tuple[str, list[Subscriber]]:
        topic = self.registry.topic_for(message).name
        route = self._routes[type(message)] = (topic, self._by_topic.setdefault(topic, []))
        return route

    async def publish(self, messages: Iterable[Message]) -> None:
        """Deliver ``messages`` and everything they cause, breadth first, before returning."""
        queue = self._queue
        queue.extend(messages)
        counts, routes = self.counts, self._routes
        while queue:
            message = queue.popleft()
            topic, subscribers = routes.get(type(message)) or self._route(message)
            counts[topic] += 1
            for handler, awaited in subscribers:
                outputs = await handler(message) if awaited else handler(message)
                if outputs:
                    queue.extend(outputs)


class MemoryBusAdapter:
    """The same interface over :class:`ata.runtime.bus.InMemoryBus` (each handler publishes its outputs)."""

    def __init__(self, registry: TopicRegistry = REGISTRY) -> None:
        self.bus = InMemoryBus(registry=registry)
        self.counts: Counter[str] = Counter()

    def subscribe(self, topics: Iterable[str], handler: Handler) -> None:
        bus = self.bus
        call: Callable[[Message], Any] = handler
        awaited = inspect.iscoroutinefunction(handler)

        async def deliver(message: Message, _delivery: Delivery) -> None:
            outputs = await call(message) if awaited else call(message)
            if outputs:
                await bus.publish(outputs)

        bus.subscribe(list(topics), deliver)

    async def publish(self, messages: Iterable[Message]) -> None:
        await self.bus.publish(messages)
        for topic, delivered in self.bus.history.items():
            self.counts[topic] += len(delivered)
        self.bus.history.clear()  # bounded memory: a backtest keeps its own records
