"""Settings: errors name the field and its environment variable; prod refuses placeholder secrets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from ata.runtime.config import ConfigError, RuntimeSettings, ServiceSettings, is_placeholder, load_settings


class RiskLikeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ATA_RISKLIKE_", frozen=True)

    max_order_notional: float = Field(default=100_000.0, gt=0, description="largest order value, USD")
    api_key: SecretStr
    webhook_token: str = Field(default="changeme", json_schema_extra={"secret": True})


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ATA_"):
            monkeypatch.delenv(name)


def test_defaults_suit_the_embedded_broker() -> None:
    settings = load_settings(RuntimeSettings)
    assert settings.profile == "dev"
    assert (settings.kafka_session_timeout_ms, settings.kafka_heartbeat_interval_ms) == (6000, 1000)
    assert settings.kafka_fetch_max_wait_ms == 20
    assert settings.kafka_enable_idempotence is False
    assert settings.http_host == "127.0.0.1" and settings.http_port == 0
    assert settings.journal_url == f"sqlite:///{Path('.ata') / 'journal.db'}"


def test_environment_is_read_with_the_ata_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ATA_KAFKA_BOOTSTRAP", "broker-1:9092,broker-2:9092")
    monkeypatch.setenv("ATA_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("ATA_KAFKA_FETCH_MAX_WAIT_MS", "250")
    settings = load_settings(RuntimeSettings)
    assert settings.kafka_bootstrap == "broker-1:9092,broker-2:9092"
    assert settings.kafka_fetch_max_wait_ms == 250
    assert settings.journal_url == f"sqlite:///{tmp_path / 'journal.db'}", "journal defaults under the state dir"
    monkeypatch.setenv("ATA_JOURNAL_URL", "postgresql://127.0.0.1:5432/ata")
    assert load_settings(RuntimeSettings).journal_url == "postgresql://127.0.0.1:5432/ata"


def test_bad_value_names_env_var_and_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATA_RISKLIKE_API_KEY", "k-123")
    monkeypatch.setenv("ATA_RISKLIKE_MAX_ORDER_NOTIONAL", "-5")
    with pytest.raises(ConfigError) as caught:
        load_settings(RiskLikeSettings)
    message = str(caught.value)
    assert "ATA_RISKLIKE_MAX_ORDER_NOTIONAL (field max_order_notional): Input should be greater than 0" in message
    assert caught.value.problems == [
        "ATA_RISKLIKE_MAX_ORDER_NOTIONAL (field max_order_notional): Input should be greater than 0"
    ]


def test_missing_and_unparsable_values_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATA_KAFKA_SESSION_TIMEOUT_MS", "six seconds")
    expected = r"ATA_KAFKA_SESSION_TIMEOUT_MS \(field kafka_session_timeout_ms\): Input should be a valid integer"
    with pytest.raises(ConfigError, match=expected):
        load_settings(RuntimeSettings)
    with pytest.raises(ConfigError, match=r"ATA_RISKLIKE_API_KEY \(field api_key\): Field required"):
        load_settings(RiskLikeSettings)


def test_cross_field_rule_names_both_variables() -> None:
    with pytest.raises(ConfigError, match=r"ATA_KAFKA_HEARTBEAT_INTERVAL_MS .* ATA_KAFKA_SESSION_TIMEOUT_MS"):
        load_settings(RuntimeSettings, kafka_heartbeat_interval_ms=3000)


def test_prod_refuses_placeholder_secrets_and_does_not_echo_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATA_RISKLIKE_API_KEY", "changeme")
    assert load_settings(RiskLikeSettings).api_key.get_secret_value() == "changeme", "dev tolerates placeholders"

    monkeypatch.setenv("ATA_PROFILE", "prod")
    with pytest.raises(ConfigError) as caught:
        load_settings(RiskLikeSettings)
    message = str(caught.value)
    assert "ATA_RISKLIKE_API_KEY (field api_key)" in message
    assert "ATA_RISKLIKE_WEBHOOK_TOKEN (field webhook_token)" in message, "json_schema_extra secret marker honoured"
    assert "changeme" not in message, "secret values never appear in errors"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__

    monkeypatch.setenv("ATA_RISKLIKE_API_KEY", "xxxx")
    monkeypatch.setenv("ATA_RISKLIKE_WEBHOOK_TOKEN", "tok-8f2a")
    with pytest.raises(ConfigError, match="ATA_RISKLIKE_API_KEY"):
        load_settings(RiskLikeSettings)

    monkeypatch.setenv("ATA_RISKLIKE_API_KEY", "k-8f2a91")
    settings = load_settings(RiskLikeSettings)
    assert settings.profile == "prod" and settings.api_key.get_secret_value() == "k-8f2a91"


@pytest.mark.parametrize("value", ["", "  ", "changeme", "CHANGEME", "placeholder", "xxx", "XXXXX", "***", "<api-key>", "${KEY}"])
def test_placeholders_recognised(value: str) -> None:
    assert is_placeholder(value)


@pytest.mark.parametrize("value", ["PKA1B2C3D4", "sk-live-1234", "x1", "changeme2024!"])
def test_real_looking_values_are_not_placeholders(value: str) -> None:
    assert not is_placeholder(value)


def test_settings_are_frozen_and_reject_unknown_keys() -> None:
    settings = load_settings(RuntimeSettings)
    with pytest.raises(ValueError, match="frozen"):
        settings.http_port = 8080  # type: ignore[misc]
    with pytest.raises(ConfigError, match="kafka_bootsrap: Extra inputs are not permitted"):
        load_settings(RuntimeSettings, kafka_bootsrap="x:1")


def test_prod_accepts_an_optional_secret_left_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    class OptionalKeySettings(ServiceSettings):
        model_config = SettingsConfigDict(env_prefix="ATA_OPTKEY_", frozen=True)
        api_key: SecretStr | None = None

    monkeypatch.setenv("ATA_PROFILE", "prod")
    assert load_settings(OptionalKeySettings).api_key is None
    monkeypatch.setenv("ATA_OPTKEY_API_KEY", "changeme")
    with pytest.raises(ConfigError, match="ATA_OPTKEY_API_KEY"):
        load_settings(OptionalKeySettings)
