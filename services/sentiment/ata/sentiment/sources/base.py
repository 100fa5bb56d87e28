"""The news-source interface.

Contract: a source has a ``name`` (used as the news source of its items, the rate-limit bucket and
the dedup scope) and an async iterator :meth:`NewsSource.articles` yielding :class:`Article` values
in the order it acquires them. A polling source calls its :class:`RequestGate` before every request
(the Redis token bucket in the service, :func:`open_gate` in tests and tools) and bounds every
request with a timeout; a failed poll raises :class:`SourceError` or is retried on the next
poll, never hangs. A finite source (a replay file) simply ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from ata.sentiment.core.news import Article

#: ``await gate(source_name)`` returns once the source may make one more request.
RequestGate = Callable[[str], Awaitable[None]]


class SourceError(RuntimeError):
    """A source could not deliver (bad input file, unreachable or malformed feed)."""


class CredentialsRefusedError(SourceError):
    """The source refused the configured credentials; retrying cannot help."""


async def open_gate(_source: str) -> None:
    """A gate that never waits."""


class NewsSource(Protocol):
    name: str

    def articles(self) -> AsyncIterator[Article]: ...
