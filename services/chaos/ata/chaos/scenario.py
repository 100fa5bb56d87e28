"""Scenario files (YAML): steady-state hypothesis, faults, duration and verdict criteria.

Example::

    name: kill-execution
    description: kill -9 execution during an order burst
    services: [execution]
    load: {orders: 200}
    steady_state: {ready_within_s: 60}
    faults:
      - {kind: kill_service, target: execution, after_s: 1}
    duration_s: 5
    verdict: {recover_within_s: 60, no_lost_orders: true, no_duplicate_orders: true}
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class FaultKind(StrEnum):
    KILL_SERVICE = "kill_service"  # SIGKILL one service; the supervisor restarts it
    RESTART_BROKER = "restart_broker"  # stop the embedded broker for duration_s, start it again on its port
    STOP_REDIS = "stop_redis"  # stop Redis for duration_s, start it again on its port
    STALL_SIM_BROKER = "stall_sim_broker"  # freeze the simulated broker (SIGSTOP) for duration_s


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Fault(_Model):
    kind: FaultKind
    target: str | None = Field(None, description="service to kill (kill_service only)")
    after_s: float = Field(0.0, ge=0, description="delay after the previous fault (or the steady state)")
    duration_s: float = Field(0.0, ge=0, le=600, description="how long the dependency stays down or frozen")

    @model_validator(mode="after")
    def _target_for_kills(self) -> Self:
        if (self.kind is FaultKind.KILL_SERVICE) != (self.target is not None):
            raise ValueError("target names the service to kill, and only kill_service takes one")
        return self


class Load(_Model):
    orders: int = Field(0, ge=0, le=10_000, description="SubmitOrder commands published after the steady state")


class SteadyState(_Model):
    ready_within_s: float = Field(60.0, gt=0, le=600, description="every service ready (/readyz 200) within this")


class Verdict(_Model):
    recover_within_s: float = Field(60.0, gt=0, le=600, description="every service ready again within this after the faults")
    no_lost_orders: bool = True
    no_duplicate_orders: bool = True


class Scenario(_Model):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = ""
    services: tuple[str, ...] | None = Field(None, description="services to run; None: every installed one")
    sim_broker: bool = Field(True, description="run the simulated broker as its own process for execution")
    load: Load = Load()
    steady_state: SteadyState = SteadyState()
    faults: tuple[Fault, ...] = Field(min_length=1)
    duration_s: float = Field(5.0, ge=0, le=3600, description="observation after the last fault, before the verdict")
    verdict: Verdict = Verdict()

    @model_validator(mode="after")
    def _kills_target_running_services(self) -> Self:
        if self.services is not None:
            strays = sorted({f.target for f in self.faults if f.target and f.target not in self.services})
            if strays:
                raise ValueError(f"faults target services the scenario does not run: {', '.join(strays)}")
        if self.load.orders and self.services is not None and "execution" not in self.services:
            raise ValueError("load.orders needs the execution service")
        return self


class ScenarioError(ValueError):
    """A scenario file that cannot be read or does not validate; the message names the file and fields."""


def load_scenario(path: Path) -> Scenario:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Scenario.model_validate(data)
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
                             for e in exc.errors(include_url=False))
        raise ScenarioError(f"{path}: {problems}") from None
