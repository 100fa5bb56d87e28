"""Settings of the execution service (env prefix ``ATA_EXECUTION_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ata.runtime.config import ServiceSettings


class ExecutionSettings(ServiceSettings):
    """Brokers, timings and policies of execution. Durations carry their unit in the name."""

    model_config = SettingsConfigDict(env_prefix="ATA_EXECUTION_", frozen=True, extra="forbid")

    brokers: str = Field(default="sim", pattern=r"^[a-z0-9_]+(,[a-z0-9_]+)*$",
                         description="Broker names in priority order; this version ships sim (simulated)")
    sim_broker_url: str = Field(default="", description="URL of a simulated broker process; empty: in-process")
    sim_slippage: str = Field(default="half_spread", pattern="^(fixed_bps|half_spread|sqrt_impact)$")
    sim_slippage_bps: float = Field(default=0.0, ge=0)
    sim_fee_bps: float = Field(default=0.0, ge=0)
    sim_latency_ms: float = Field(default=0.0, ge=0)
    sim_participation: float = Field(default=1.0, gt=0, le=1)
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
    topic_namespace: str = Field(default="", pattern=r"^[a-z0-9_]*$",
                                 description="Isolates topics for tests: d.s.vN becomes d.s_<namespace>.vN")
