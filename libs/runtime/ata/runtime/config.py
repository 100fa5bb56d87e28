"""Settings of the runtime and of each service: environment variables, validated at start-up.

Contract:
- :class:`RuntimeSettings` reads ``ATA_*`` (``ATA_KAFKA_BOOTSTRAP``, ``ATA_PROFILE``, ...): what every
  service needs to reach the infrastructure. The defaults suit a laptop with the embedded broker
  (``ata infra up``) and also work against Apache Kafka.
- :class:`ServiceSettings` is the base of a service's own settings; a subclass sets
  ``model_config = SettingsConfigDict(env_prefix="ATA_<SERVICE>_", frozen=True)``. Its ``profile``
  is read from ``ATA_PROFILE`` (not prefixed), so one variable switches the whole deployment.
- Secrets are fields typed :class:`~pydantic.SecretStr` (or marked ``json_schema_extra={"secret": True}``).
  Under ``profile=prod`` a placeholder value ("changeme", "xxx", "", ...) is refused.
- :func:`load_settings` builds either, or raises :class:`ConfigError` whose message names each
  offending environment variable and field, e.g.
  ``ATA_RISK_MAX_ORDER_NOTIONAL (field max_order_notional): Input should be greater than 0``.
  Values are never echoed, so a secret cannot leak into a log through an error.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

Profile = Literal["dev", "prod"]

#: Values people leave in templates; refused for secrets under ``profile=prod`` (compared lower-cased, stripped).
PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "change_me", "placeholder", "todo", "tbd", "secret", "password", "dummy",
     "example", "none", "null", "your-api-key", "your_api_key", "api-key", "apikey"}
)
#: Also placeholders: runs of x/X/* ("xxx", "****") and unexpanded templates ("<key>", "${KEY}", "{{ key }}").
_PLACEHOLDER_PATTERN = re.compile(r"^(x+|\*+|<.*>|\$\{.*\}|\{\{.*\}\})$", re.IGNORECASE)

S = TypeVar("S", bound=BaseSettings)

DEFAULT_STATE_DIR = ".ata"
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
DEFAULT_LOG_LEVEL: LogLevel = "INFO"
JOURNAL_FILE = "journal.db"


class ConfigError(ValueError):
    """Settings could not be loaded. ``problems`` lists ``"<ENV_VAR> (field <name>): <reason>"`` lines."""

    def __init__(self, settings_name: str, problems: list[str]) -> None:
        self.settings_name = settings_name
        self.problems = problems
        super().__init__(f"invalid {settings_name}: " + "; ".join(problems))


def is_placeholder(value: str) -> bool:
    """True for template values that must never reach production as a secret."""
    stripped = value.strip()
    return stripped.lower() in PLACEHOLDER_SECRETS or bool(_PLACEHOLDER_PATTERN.match(stripped))


def env_var(cls: type[BaseSettings], field_name: str) -> str:
    """The environment variable that sets ``field_name`` of ``cls`` (an explicit ``ATA_*`` alias wins over the prefix)."""
    alias = cls.model_fields[field_name].validation_alias
    if isinstance(alias, AliasChoices):
        for choice in alias.choices:
            if isinstance(choice, str) and choice.upper().startswith("ATA_"):
                return choice.upper()
    prefix = str(cls.model_config.get("env_prefix", ""))
    return f"{prefix}{field_name}".upper()


def _default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class _AtaSettings(BaseSettings):
    """Shared behaviour: frozen, unknown init keys refused, placeholder secrets refused in prod."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True)

    profile: Profile = "dev"

    @classmethod
    def secret_fields(cls) -> list[str]:
        """Fields treated as secrets: typed ``SecretStr`` or marked ``json_schema_extra={"secret": True}``."""
        names = []
        for name, info in cls.model_fields.items():
            extra = info.json_schema_extra
            marked = isinstance(extra, dict) and extra.get("secret") is True
            if marked or "SecretStr" in repr(info.annotation):
                names.append(name)
        return names

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Self:
        if self.profile != "prod":
            return self
        bad = []
        for name in self.secret_fields():
            value = getattr(self, name)
            if value is None:
                # An optional secret left unset means "that integration is off"; the service's own
                # validation requires it where the integration is switched on.
                continue
            text = value.get_secret_value() if isinstance(value, SecretStr) else value
            if isinstance(text, str) and is_placeholder(text):
                bad.append(f"{env_var(type(self), name)} (field {name})")
        if bad:
            raise ValueError("placeholder or empty secret refused under profile=prod: " + ", ".join(bad))
        return self


class RuntimeSettings(_AtaSettings):
    """Infrastructure endpoints and Kafka client tuning shared by every service (env prefix ``ATA_``).

    The Kafka timing defaults are chosen for the embedded broker and are safe on Apache Kafka:
    a consumer-group join waits about half the session timeout and the broker does not wake a
    waiting fetch when data arrives, so a short session timeout and fetch wait keep start-up and
    latency low. On a busy production cluster raise ``kafka_session_timeout_ms`` (e.g. 30000)
    and ``kafka_fetch_max_wait_ms`` (e.g. 100-500) to trade latency for fewer requests.
    """

    model_config = SettingsConfigDict(env_prefix="ATA_", frozen=True, extra="forbid")

    profile: Profile = Field(
        default="dev",
        description="dev: laptop defaults, placeholder secrets tolerated; prod: placeholder secrets refused.",
    )
    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092",
        min_length=1,
        description="Kafka bootstrap servers, comma-separated host:port. `ata infra up` / `make run` export the embedded one.",
    )
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", min_length=1, description="Redis URL (hot state and dedup cache).")
    journal_url: str = Field(
        default="",
        description="Journal database URL: sqlite:///path or postgresql://...; empty or unset: sqlite:///<state_dir>/journal.db.",
    )
    http_host: str = Field(default="127.0.0.1", min_length=1, description="Interface for /healthz, /readyz, /metrics.")
    http_port: int = Field(default=0, ge=0, le=65535, description="Port for /healthz, /readyz, /metrics; 0 picks a free port.")
    state_dir: Path = Field(
        default=Path(DEFAULT_STATE_DIR), description="Directory for local state: infra record, SQLite journal, logs."
    )
    instance_id: str = Field(
        default_factory=_default_instance_id,
        min_length=1,
        max_length=128,
        description="This process's identity in heartbeats and `source` fields; default <hostname>-<pid>.",
    )
    kafka_session_timeout_ms: int = Field(
        default=6000, ge=1000, description="Consumer-group session timeout; a dead consumer's partitions move after this."
    )
    kafka_heartbeat_interval_ms: int = Field(
        default=1000, ge=100, description="Consumer heartbeat interval; must be below a third of the session timeout."
    )
    kafka_fetch_max_wait_ms: int = Field(
        default=20, ge=0, description="Longest a fetch waits for data; bounds end-to-end latency on the embedded broker."
    )
    kafka_max_poll_records: int = Field(
        default=500, ge=1, description="Most records one consumer batch handles before its offsets are committed."
    )
    kafka_linger_ms: int = Field(default=1, ge=0, description="Producer batching delay; small to keep latency low.")
    kafka_request_timeout_ms: int = Field(
        default=30000, ge=1000, description="Producer/consumer request timeout; a publish that is not acknowledged by then fails."
    )
    log_level: LogLevel = Field(
        default=DEFAULT_LOG_LEVEL, description="Level of the JSON logs a service writes to stderr (case-insensitive)."
    )
    service_heartbeat_interval_ms: int | None = Field(
        default=None,
        ge=10,
        description="Period of a service's HeartbeatEmitted events; unset: the service's own default (5 s).",
    )
    kafka_enable_idempotence: bool = Field(
        default=False,
        description=(
            "Broker-side idempotence for the aiokafka producer. Off by default because the embedded broker "
            "(Tansu) does not support it with aiokafka; turn it on against Apache Kafka. Correctness never "
            "depends on it: consumers drop already-applied event ids. The confluent bulk producer always uses it."
        ),
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="before")
    @classmethod
    def _default_journal_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("journal_url"):
            state_dir = Path(data.get("state_dir") or DEFAULT_STATE_DIR)
            data = {**data, "journal_url": f"sqlite:///{state_dir / JOURNAL_FILE}"}
        return data

    @model_validator(mode="after")
    def _check_heartbeat(self) -> Self:
        if self.kafka_heartbeat_interval_ms * 3 > self.kafka_session_timeout_ms:
            raise ValueError(
                "ATA_KAFKA_HEARTBEAT_INTERVAL_MS (field kafka_heartbeat_interval_ms) must be at most a third of "
                "ATA_KAFKA_SESSION_TIMEOUT_MS (field kafka_session_timeout_ms)"
            )
        return self


class ServiceSettings(_AtaSettings):
    """Base of a service's own settings. Subclass with ``env_prefix="ATA_<SERVICE>_"``.

    Give units in field names (``max_staleness_ms``), no defaults for secrets, and type secrets
    as ``SecretStr`` so they are refused as placeholders under ``profile=prod`` and never printed.
    """

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    profile: Profile = Field(
        default="dev",
        validation_alias=AliasChoices("ATA_PROFILE"),
        description="Deployment profile, read from ATA_PROFILE (shared with RuntimeSettings).",
    )


def _problems(cls: type[BaseSettings], exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = error["loc"]
        field = str(loc[0]) if loc else None
        if field is not None and field in cls.model_fields:
            env = env_var(cls, field)
            where = ".".join(str(part) for part in loc)
            problems.append(f"{env} (field {where}): {error['msg']}")
        elif field is not None:
            problems.append(f"{field}: {error['msg']}")
        else:
            # Model-level validators already name the variables in their message.
            problems.append(str(error["msg"]).removeprefix("Value error, "))
    return problems


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build ``cls`` from the environment (``overrides`` win, by field name); raise :class:`ConfigError` on a bad value."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        # ``from None``: pydantic's own message echoes input values, secrets included.
        raise ConfigError(cls.__name__, _problems(cls, exc)) from None
    except SettingsError as exc:
        # Raised while parsing a complex value (JSON) from the environment; its message names the field.
        raise ConfigError(cls.__name__, [str(exc)]) from None
