"""News sources, one interface (:class:`~ata.sentiment.sources.base.NewsSource`), each with timeouts."""

from ata.sentiment.sources.base import CredentialsRefusedError, NewsSource, RequestGate, SourceError, open_gate

__all__ = ["CredentialsRefusedError", "NewsSource", "RequestGate", "SourceError", "open_gate"]
