"""Settings of the oversight service (env prefix ``ATA_OVERSIGHT_``), frozen and validated at start-up.

Durations carry their unit in the name (``*_ms``, ``*_s``); ``*_notional`` is money. The API key
is the only secret: it has no default, and under ``profile=prod`` a remote provider
(``openai``, ``anthropic``) refuses to start without a real one. The rule-based provider
needs none.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from ata.runtime.config import ServiceSettings, env_var, is_placeholder

Mode = Literal["off", "advisory", "gating"]
ProviderName = Literal["rules", "openai", "anthropic"]
Fallback = Literal["rules", "unreviewed"]


class OversightSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ATA_OVERSIGHT_", frozen=True, extra="forbid")

    mode: Mode = Field("advisory", description="off: nothing reviewed; advisory: verdicts published, trading goes on; "
                                               "gating: every target gets a verdict that risk waits for")
    provider: ProviderName = Field("rules", description=(
        "rules (deterministic, embedded default), openai (any OpenAI-compatible server: OpenAI, vLLM, Ollama, "
        "llama.cpp), anthropic"))
    fallback: Fallback = Field("rules", description=(
        "what is published when the provider gives no usable verdict: the rule-based verdict, or an 'unreviewed' "
        "verdict (risk then applies its own fallback)"))

    # Provider endpoint
    base_url: str = Field("", description="provider base URL; empty: https://api.openai.com/v1 or https://api.anthropic.com")
    model: str = Field("", max_length=128, description="model name sent to the provider")
    api_key: SecretStr | None = Field(None, description="provider API key (no default; required for remote providers in prod)")
    json_mode: bool = Field(True, description="ask an OpenAI-compatible server for a JSON object (response_format)")
    anthropic_version: str = Field("2023-06-01", min_length=1, description="anthropic-version header")
    max_tokens: int = Field(400, gt=0, le=8192, description="most tokens a verdict may use")
    temperature: float = Field(0.0, ge=0, le=2)

    # Resilience
    request_timeout_ms: int = Field(5_000, gt=0, description="one HTTP attempt")
    deadline_ms: int = Field(8_000, gt=0, description="a whole review incl. retries; then the fallback. In gating mode keep "
                                                       "it below risk's ATA_RISK_OVERSIGHT_TIMEOUT_MS")
    retry_attempts: int = Field(3, ge=1, description="attempts per review (transport errors, HTTP 429/5xx)")
    retry_initial_ms: int = Field(200, ge=0)
    retry_cap_ms: int = Field(2_000, ge=0)
    breaker_failures: int = Field(5, ge=1, description="consecutive failed attempts that open the provider's breaker")
    breaker_cooldown_s: float = Field(30.0, ge=0)

    # Cost
    calls_per_minute: int = Field(60, ge=0, description="provider calls allowed per minute (0: none)")
    calls_per_day: int = Field(5_000, ge=0, description="provider calls allowed per UTC day (0: none)")
    cache_ttl_s: int = Field(86_400, ge=0, description="prompt/response cache lifetime; 0 disables the cache")
    redis_prefix: str = Field("ata:oversight", min_length=1, description="Redis key prefix of cache and budgets")

    # Consumption
    batch_interval_ms: int = Field(100, ge=0, le=10_000, description=(
        "advisory and off modes: after a batch that was not full, the next one starts this long after it began at "
        "the earliest (verdicts wait as long), so subjects gather into fewer, larger batches; 0: no pause. Gating "
        "mode never pauses: risk waits for its verdicts"))

    # What is reviewed
    review_min_notional: float = Field(100_000.0, ge=0, description="targets with |weight| x account_equity at least this")
    review_min_abs_weight: float = Field(0.25, ge=0, description="targets with |weight| at least this")
    account_equity: float = Field(1_000_000.0, gt=0, description="equity used to turn target weights into notionals")
    review_regime_changes: bool = True
    review_strategy_switches: bool = True

    # Context given to the reviewer
    news_window_ms: int = Field(6 * 3_600_000, ge=0, description="headlines this recent accompany a review")
    news_max_items: int = Field(5, ge=0, le=50)
    news_max_chars: int = Field(500, ge=16, le=5000, description="each headline/summary is cut to this length")

    # Rule-based reviewer
    rule_max_abs_weight: float = Field(1.0, gt=0, description="larger targets are modified down to this")
    rule_reject_abs_weight: float = Field(2.0, gt=0, description="targets this large are rejected")
    rule_crisis_max_abs_weight: float = Field(0.25, ge=0, description="cap while the symbol or market is in crisis")
    rule_min_signal_agreement: float = Field(0.3, ge=0, le=1, description="|sum w*s| / sum |w*s| below this flags a conflict")
    rule_regime_min_confidence: float = Field(0.5, ge=0, le=1, description="less confident regime changes are escalated")
    rule_max_switches: int = Field(3, ge=1, description="strategy switches per symbol allowed in the window")
    rule_switch_window_ms: int = Field(86_400_000, gt=0)

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Self:
        """Replaces the base rule: the key matters only for remote providers, and there it is required in prod."""
        if self.profile != "prod" or self.provider == "rules":
            return self
        key = None if self.api_key is None else self.api_key.get_secret_value()
        if key is None or is_placeholder(key):
            raise ValueError("placeholder or empty secret refused under profile=prod: "
                             f"{env_var(type(self), 'api_key')} (field api_key)")
        return self

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.rule_max_abs_weight > self.rule_reject_abs_weight:
            raise ValueError("ATA_OVERSIGHT_RULE_MAX_ABS_WEIGHT must not exceed ATA_OVERSIGHT_RULE_REJECT_ABS_WEIGHT")
        if self.request_timeout_ms > self.deadline_ms:
            raise ValueError("ATA_OVERSIGHT_REQUEST_TIMEOUT_MS must not exceed ATA_OVERSIGHT_DEADLINE_MS")
        return self

    def endpoint(self) -> str:
        """The provider base URL, defaulted per provider."""
        if self.base_url:
            return self.base_url.rstrip("/")
        return "https://api.anthropic.com" if self.provider == "anthropic" else "https://api.openai.com/v1"
