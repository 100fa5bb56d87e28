"""The one interface every market data source implements.

A source is either *historical* (replay files, built-in datasets, the synthetic generator):
a synchronous iterator of :data:`SourceItem` s in event-time order, which the shell paces
with the speed factor; or *live* (Alpaca): an asynchronous iterator that yields records
as they arrive. Both report their health for heartbeats and metrics.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Protocol, runtime_checkable

from ata.marketdata.core.records import SourceItem

HealthValue = str | float | int | bool


@runtime_checkable
class HistoricalSource(Protocol):
    """Records with event times in the past, replayed in order (paced by the shell)."""

    name: str

    def __iter__(self) -> Iterator[SourceItem]: ...

    def health(self) -> dict[str, HealthValue]: ...


@runtime_checkable
class LiveSource(Protocol):
    """Records as a live feed delivers them; ``close()`` stops the feed."""

    name: str

    def __aiter__(self) -> AsyncIterator[SourceItem]: ...

    def health(self) -> dict[str, HealthValue]: ...

    async def close(self) -> None: ...


Source = HistoricalSource | LiveSource
