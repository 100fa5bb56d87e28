"""OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, llama.cpp server, ...).

``POST {base_url}/chat/completions`` with a system and a user message, temperature and a
token limit; with ``json_mode`` the request asks for a JSON object
(``response_format={"type": "json_object"}``), which OpenAI, vLLM, Ollama and llama.cpp
honour. The key, when given, goes in ``Authorization: Bearer``; local servers need none.
"""

from __future__ import annotations

import httpx

from ata.oversight.core import Prompt
from ata.oversight.providers.base import Completion, HttpProvider, PermanentProviderError, usage_int


class OpenAICompatibleProvider(HttpProvider):
    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, json_mode: bool = True,
                 max_tokens: int = 400, temperature: float = 0.0, client: httpx.AsyncClient | None = None) -> None:
        super().__init__("openai", base_url, model, client)
        self._api_key = api_key
        self.json_mode = json_mode
        self.max_tokens = max_tokens
        self.temperature = temperature

    async def complete(self, prompt: Prompt, *, timeout_s: float) -> Completion:
        body: dict[str, object] = {
            "model": self.model,
            "messages": [{"role": "system", "content": prompt.system}, {"role": "user", "content": prompt.user}],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if self.json_mode:
            body["response_format"] = {"type": "json_object"}
        headers = {"authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        data = await self.post_json("/chat/completions", headers, body, timeout_s)
        try:
            text = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise PermanentProviderError("openai: response has no choices[0].message.content") from exc
        if not isinstance(text, str):
            raise PermanentProviderError("openai: message content is not text")
        usage = data.get("usage")
        return Completion(text=text, model=str(data.get("model") or self.model),
                          prompt_tokens=usage_int(usage, "prompt_tokens"),
                          completion_tokens=usage_int(usage, "completion_tokens"))
