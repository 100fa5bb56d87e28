"""Settings: secrets only where needed, refused as placeholders in prod, bad values named."""

from __future__ import annotations

import pytest

from ata.oversight.config import OversightSettings
from ata.runtime.config import ConfigError, load_settings


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("key", [None, "changeme", "", "<your-api-key>"])
def test_prod_refuses_a_remote_provider_without_a_real_key(provider: str, key: str | None) -> None:
    with pytest.raises(ConfigError, match="ATA_OVERSIGHT_API_KEY"):
        load_settings(OversightSettings, profile="prod", provider=provider, api_key=key)


def test_dev_tolerates_placeholders_and_the_rules_need_no_key() -> None:
    assert load_settings(OversightSettings, provider="openai", api_key="changeme").provider == "openai"
    assert load_settings(OversightSettings, profile="prod").api_key is None
    real = load_settings(OversightSettings, profile="prod", provider="anthropic", api_key="sk-live-123")
    assert real.api_key is not None and "sk-live-123" not in repr(real)


def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATA_OVERSIGHT_MODE", "sometimes")
    with pytest.raises(ConfigError, match="ATA_OVERSIGHT_MODE"):
        load_settings(OversightSettings)
    monkeypatch.delenv("ATA_OVERSIGHT_MODE")
    with pytest.raises(ConfigError, match="ATA_OVERSIGHT_REQUEST_TIMEOUT_MS"):
        load_settings(OversightSettings, request_timeout_ms=9_000, deadline_ms=1_000)


def test_endpoint_defaults_per_provider() -> None:
    assert OversightSettings(provider="openai").endpoint() == "https://api.openai.com/v1"
    assert OversightSettings(provider="anthropic").endpoint() == "https://api.anthropic.com"
    assert OversightSettings(provider="openai", base_url="http://127.0.0.1:11434/v1/").endpoint() == "http://127.0.0.1:11434/v1"
