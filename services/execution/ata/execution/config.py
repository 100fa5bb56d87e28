"""Settings of the execution service (env prefix ``ATA_EXECUTION_``)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from ata.runtime.config import ServiceSettings, env_var, is_placeholder

#: Brokers this version can build (see :func:`ata.execution.service.build_ports`).
KNOWN_BROKERS = ("sim", "alpaca")


class ExecutionSettings(ServiceSettings):
    """Brokers, timings and policies of execution. Durations carry their unit in the name."""

    model_config = SettingsConfigDict(env_prefix="ATA_EXECUTION_", frozen=True, extra="forbid")

    brokers: str = Field(default="sim", pattern=r"^[a-z0-9_]+(,[a-z0-9_]+)*$",
                         description="Broker names in priority order: sim (simulated), alpaca")
    sim_broker_url: str = Field(default="", description="URL of a simulated broker process; empty: in-process")
    sim_slippage: str = Field(default="half_spread", pattern="^(fixed_bps|half_spread|sqrt_impact)$")
    sim_slippage_bps: float = Field(default=0.0, ge=0)
    sim_fee_bps: float = Field(default=0.0, ge=0)
    sim_latency_ms: float = Field(default=0.0, ge=0)
    sim_participation: float = Field(default=1.0, gt=0, le=1)
    clock: Literal["market", "wall"] = Field(
        default="market", description="Time of the engine's timers and the in-process simulated broker: market, the "
        "latest bar/quote/command time received (paper trading over replayed data); wall, the machine clock (live quotes)")
    http_timeout_ms: int = Field(default=2000, ge=50)
    breaker_failures: int = Field(default=5, ge=1, description="Consecutive broker failures that open its breaker")
    breaker_cooldown_s: float = Field(default=30.0, ge=0)
    inflight_recheck_ms: int = Field(default=5000, ge=100)
    poll_interval_ms: int = Field(default=10_000, ge=100)
    timer_interval_ms: int = Field(default=200, ge=10)
    twap_min_quantity: float = Field(default=0.0, ge=0, description="Orders at or above this size are sliced; 0 disables")
    twap_slices: int = Field(default=5, ge=1)
    twap_interval_ms: int = Field(default=60_000, ge=1)
    adopt_extra_orders: bool = True
    redis_prefix: str = Field(default="ata:execution", min_length=1)
    alpaca_api_key: SecretStr | None = Field(default=None, description="Alpaca key id; required when brokers include alpaca")
    alpaca_secret_key: SecretStr | None = Field(default=None,
                                                description="Alpaca secret key; required when brokers include alpaca")
    alpaca_paper: bool = Field(default=True, description="Paper account (paper-api.alpaca.markets); false: live trading")
    alpaca_base_url: str = Field(default="", description="Override of the Alpaca trading REST URL; empty: paper or live")
    alpaca_stream_url: str = Field(default="", description="Override of the trade-update websocket URL; "
                                   "empty: derived from alpaca_base_url, else paper or live")
    alpaca_timeout_s: float = Field(default=10.0, gt=0, description="Bound of every Alpaca REST call and of the stream's connect")
    alpaca_silence_timeout_s: float = Field(default=30.0, gt=0,
                                            description="No message or pong for this long: the trade-update stream is restarted")
    alpaca_backoff_initial_s: float = Field(default=0.5, ge=0, description="First wait before restarting the stream")
    alpaca_backoff_cap_s: float = Field(default=30.0, ge=0, description="Longest wait before restarting the stream")
    alpaca_fee_bps: float = Field(default=0.0, ge=0, description="Alpaca's cost in bps, for routing between brokers")
    journal_recovery: Literal["off", "resolve", "cancel", "adopt"] = Field(
        default="resolve", description="Journal recovery at start (orphaned orders per policy); off: Redis and brokers only")
    journal_recovery_required: bool = Field(
        default=False, description="Fail closed: stay not ready until journal recovery has run (retrying); "
        "false: an unreachable or empty journal is logged and skipped")
    topic_namespace: str = Field(default="", pattern=r"^[a-z0-9_]*$",
                                 description="Isolates topics for tests: d.s.vN becomes d.s_<namespace>.vN")

    def broker_names(self) -> list[str]:
        return self.brokers.split(",")

    @model_validator(mode="after")
    def _known_brokers(self) -> Self:
        field = f"{env_var(type(self), 'brokers')} (field brokers)"
        names = self.broker_names()
        unknown = [n for n in names if n not in KNOWN_BROKERS]
        if unknown:
            raise ValueError(f"{field}: unknown broker(s) {', '.join(unknown)}; known: {', '.join(KNOWN_BROKERS)}")
        if len(set(names)) != len(names):
            raise ValueError(f"{field}: a broker is listed twice")
        return self

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Self:
        """Alpaca keys are required (and, under ``profile=prod``, must not be placeholders) only when alpaca is used.

        Replaces the base check, which would refuse the unset keys of a deployment without alpaca.
        """
        if "alpaca" not in self.broker_names():
            return self
        bad = []
        for name in ("alpaca_api_key", "alpaca_secret_key"):
            value: SecretStr | None = getattr(self, name)
            text = value.get_secret_value() if value is not None else ""
            if not text.strip() or (self.profile == "prod" and is_placeholder(text)):
                bad.append(f"{env_var(type(self), name)} (field {name})")
        if bad:
            what = "placeholder or empty secret refused under profile=prod" if self.profile == "prod" else "required"
            raise ValueError(f"{what} when brokers include alpaca: " + ", ".join(bad))
        return self
