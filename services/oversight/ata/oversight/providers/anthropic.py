"""Anthropic Messages API over plain HTTP.

``POST {base_url}/v1/messages`` with headers ``x-api-key`` and ``anthropic-version``; body
``model``, ``max_tokens``, top-level ``system`` and one ``user`` message. The answer is the
concatenated ``text`` blocks of ``content``; usage comes as ``input_tokens`` / ``output_tokens``.
"""

from __future__ import annotations

import httpx

from ata.oversight.core import Prompt
from ata.oversight.providers.base import Completion, HttpProvider, PermanentProviderError, usage_int


class AnthropicProvider(HttpProvider):
    def __init__(self, base_url: str, model: str, *, api_key: str | None, version: str = "2023-06-01",
                 max_tokens: int = 400, temperature: float = 0.0, client: httpx.AsyncClient | None = None) -> None:
        super().__init__("anthropic", base_url, model, client)
        self._api_key = api_key
        self.version = version
        self.max_tokens = max_tokens
        self.temperature = temperature

    async def complete(self, prompt: Prompt, *, timeout_s: float) -> Completion:
        body: dict[str, object] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "system": prompt.system,
            "messages": [{"role": "user", "content": prompt.user}],
        }
        headers = {"anthropic-version": self.version}
        if self._api_key:
            headers["x-api-key"] = self._api_key
        data = await self.post_json("/v1/messages", headers, body, timeout_s)
        blocks = data.get("content")
        if not isinstance(blocks, list):
            raise PermanentProviderError("anthropic: response has no content blocks")
        texts = [b.get("text") for b in blocks if isinstance(b, dict) and b.get("type") == "text"]
        text = "".join(t for t in texts if isinstance(t, str))
        usage = data.get("usage")
        return Completion(text=text, model=str(data.get("model") or self.model),
                          prompt_tokens=usage_int(usage, "input_tokens"), completion_tokens=usage_int(usage, "output_tokens"))
