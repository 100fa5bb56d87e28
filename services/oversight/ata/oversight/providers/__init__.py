"""Reviewers behind one interface: OpenAI-compatible HTTP, Anthropic HTTP, and the deterministic rules."""

from __future__ import annotations

from ata.oversight.config import OversightSettings
from ata.oversight.core import RuleReviewer, rule_limits
from ata.oversight.providers.anthropic import AnthropicProvider
from ata.oversight.providers.base import (
    Completion,
    PermanentProviderError,
    Provider,
    ProviderError,
    ProviderTimeoutError,
    TransientProviderError,
)
from ata.oversight.providers.openai import OpenAICompatibleProvider
from ata.oversight.providers.rules import RuleProvider

__all__ = [
    "AnthropicProvider", "Completion", "OpenAICompatibleProvider", "PermanentProviderError", "Provider", "ProviderError",
    "ProviderTimeoutError", "RuleProvider", "TransientProviderError", "make_provider", "rule_provider",
]


def rule_provider(settings: OversightSettings) -> RuleProvider:
    return RuleProvider(RuleReviewer(rule_limits(settings)))


def make_provider(settings: OversightSettings) -> Provider:
    """The configured provider (``settings.provider``)."""
    key = None if settings.api_key is None else settings.api_key.get_secret_value()
    if settings.provider == "openai":
        return OpenAICompatibleProvider(settings.endpoint(), settings.model, api_key=key, json_mode=settings.json_mode,
                                        max_tokens=settings.max_tokens, temperature=settings.temperature)
    if settings.provider == "anthropic":
        return AnthropicProvider(settings.endpoint(), settings.model, api_key=key, version=settings.anthropic_version,
                                 max_tokens=settings.max_tokens, temperature=settings.temperature)
    return rule_provider(settings)
