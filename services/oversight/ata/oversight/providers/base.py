"""The provider interface every reviewer implements, and the HTTP plumbing the remote ones share.

A provider turns a :class:`~ata.oversight.core.Prompt` into a :class:`Completion` (the raw
answer text plus token usage). It does not judge the answer: the caller validates it
against the verdict schema. Failures raise :class:`TransientProviderError` (worth a retry:
timeouts, connection errors, HTTP 408/409/429/5xx) or :class:`PermanentProviderError` (not
worth one: other HTTP errors, a response of the wrong shape).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import orjson

from ata.oversight.core import Prompt

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ProviderError(Exception):
    """A provider call gave no answer text. ``kind`` names the failure for metrics and the audit trail."""

    kind = "error"


class TransientProviderError(ProviderError):
    kind = "transient"


class ProviderTimeoutError(TransientProviderError):
    kind = "timeout"


class PermanentProviderError(ProviderError):
    kind = "http_error"


class Provider(Protocol):
    """One interface for the OpenAI-compatible, Anthropic and rule-based reviewers."""

    name: str
    model: str
    #: False for the rule-based reviewer: no cost, no budget, no cache, no breaker.
    remote: bool

    async def complete(self, prompt: Prompt, *, timeout_s: float) -> Completion: ...

    async def aclose(self) -> None: ...


class HttpProvider:
    """Shared by the remote providers: one pooled client, error mapping, per-call timeout."""

    remote = True

    def __init__(self, name: str, base_url: str, model: str, client: httpx.AsyncClient | None = None) -> None:
        self.name = name
        self.model = model
        self.base_url = base_url.rstrip("/")
        self._client = client or httpx.AsyncClient(limits=httpx.Limits(max_connections=16), follow_redirects=False)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def post_json(self, path: str, headers: dict[str, str], body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """POST ``body`` and return the JSON object answered; every phase of the call is bounded by ``timeout_s``."""
        try:
            response = await self._client.post(f"{self.base_url}{path}", content=orjson.dumps(body),
                                               headers={"content-type": "application/json", **headers},
                                               timeout=httpx.Timeout(timeout_s))
        except httpx.TimeoutException as exc:
            raise ProviderTimeoutError(f"{self.name}: no answer within {timeout_s:.3g}s") from exc
        except httpx.TransportError as exc:
            raise TransientProviderError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            error = TransientProviderError if response.status_code in RETRYABLE_STATUS else PermanentProviderError
            raise error(f"{self.name}: HTTP {response.status_code}: {response.text[:200]}")
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise PermanentProviderError(f"{self.name}: response body is not JSON") from exc
        if not isinstance(data, dict):
            raise PermanentProviderError(f"{self.name}: response body is not a JSON object")
        return data


def usage_int(usage: Any, key: str) -> int:
    """A token count from a provider's usage object (0 when missing or not a non-negative int)."""
    value = usage.get(key) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and value >= 0 else 0
