"""LLM oversight reviews: verdicts and their audit trail."""

from __future__ import annotations

import uuid
from enum import StrEnum

from pydantic import Field

from ata.events.envelope import Event
from ata.events.values import Probability


class Verdict(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    MODIFY = "modify"
    ESCALATE = "escalate"
    UNREVIEWED = "unreviewed"


class OversightReviewed(Event):
    """A verdict on one subject (a target proposal, a regime change, a strategy switch)."""

    subject_event_id: uuid.UUID
    subject_type: str = Field(min_length=1, max_length=64)
    symbol: str = Field(default="", max_length=32)
    verdict: Verdict
    rationale: str = Field(max_length=5000)
    confidence: Probability
    risk_flags: tuple[str, ...] = ()
    max_target_weight: float | None = Field(default=None, ge=0, le=10, allow_inf_nan=False)
    provider: str = Field(min_length=1, max_length=64)
    model: str = Field(default="", max_length=128)
    fallback_used: bool = False
    latency_ms: float = Field(ge=0, allow_inf_nan=False)
    prompt: str = Field(default="", max_length=100000)
    response: str = Field(default="", max_length=100000)
    mode: str = Field(default="", max_length=16, description="oversight mode when reviewed: advisory or gating")
    prompt_sha256: str = Field(default="", max_length=64, description="hash keying the prompt/response cache")
    cache_hit: bool = Field(default=False, description="the response came from the prompt cache, not a provider call")
    prompt_tokens: int = Field(default=0, ge=0, description="tokens billed for the prompt (0 when no provider call)")
    completion_tokens: int = Field(default=0, ge=0, description="tokens billed for the response")
