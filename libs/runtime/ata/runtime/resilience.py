"""Resilience primitives: a tiered circuit breaker, exponential backoff with full jitter, retry.

Circuit breaker contract
------------------------
A :class:`CircuitBreaker` guards calls to one dependency (a broker API, an LLM endpoint).

- ``CLOSED``: calls pass; outcomes are recorded in a sliding time window and as a run of
  consecutive failures. After every failure the tiers are evaluated, highest first:

  * **fatal**: the breaker opens and *latches*: it stays ``OPEN`` until :meth:`CircuitBreaker.reset`
    is called by an operator (no automatic probing);
  * **critical**: the breaker opens; after ``open_cooldown_s`` it lets probes through;
  * **warning**: reported only (``tier`` becomes ``WARNING`` and tier listeners are called);
    calls still pass.

  A tier trips when *either* its consecutive-failure count *or* its failure rate over the
  window (with at least ``min_calls`` outcomes in the window) is reached.
- ``OPEN``: calls are refused with :class:`CircuitOpenError` until the cooldown has elapsed,
  then the breaker is ``HALF_OPEN``.
- ``HALF_OPEN``: at most ``half_open_probes`` calls are admitted at once; a failure re-opens
  the breaker (and restarts the cooldown), ``half_open_probes`` successes close it and clear
  the window.

Time comes from an injected monotonic clock (seconds), so the logic is deterministic under
test; nothing here reads the wall clock.

Backoff contract
----------------
Attempt ``n`` (0-based) waits ``uniform(0, min(cap_s, initial_s * multiplier**n))`` with
full jitter (AWS architecture blog, "Exponential Backoff And Jitter"), or exactly the
ceiling without jitter. The random source is injected, so a seeded ``random.Random`` gives
reproducible delays. ``max_attempts`` counts every attempt including the first
(``None``: unbounded).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

T = TypeVar("T")

Clock = Callable[[], float]
"""Monotonic seconds; ``time.monotonic`` in production, a fake in tests."""


class BreakerState(IntEnum):
    """Exported as the value of ``ata_circuit_breaker_state``."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


class Tier(StrEnum):
    """How bad the recent failures are. Only CRITICAL and FATAL change the state."""

    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    FATAL = "fatal"


class CircuitOpenError(RuntimeError):
    """A call was refused because the breaker is OPEN (or HALF_OPEN with every probe slot taken)."""

    def __init__(self, name: str, state: BreakerState, retry_after_s: float | None) -> None:
        when = "after a manual reset" if retry_after_s is None else f"in {retry_after_s:.3f}s"
        super().__init__(f"circuit breaker {name!r} is {state.name}; retry {when}")
        self.name = name
        self.state = state
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Threshold:
    """When a tier trips: ``consecutive_failures`` in a row, or ``failure_rate`` (0..1] of the
    outcomes in the breaker's window once it holds at least ``min_calls``. ``None`` disables a rule."""

    consecutive_failures: int | None = None
    failure_rate: float | None = None
    min_calls: int = 10

    def __post_init__(self) -> None:
        if self.consecutive_failures is not None and self.consecutive_failures < 1:
            raise ValueError("consecutive_failures must be >= 1")
        if self.failure_rate is not None and not 0.0 < self.failure_rate <= 1.0:
            raise ValueError("failure_rate must be in (0, 1]")
        if self.min_calls < 1:
            raise ValueError("min_calls must be >= 1")

    def tripped(self, consecutive: int, failures: int, calls: int) -> bool:
        if self.consecutive_failures is not None and consecutive >= self.consecutive_failures:
            return True
        return self.failure_rate is not None and calls >= self.min_calls and failures / calls >= self.failure_rate


@dataclass(frozen=True)
class BreakerPolicy:
    """Thresholds and timings of a breaker. A ``None`` tier never trips."""

    warning: Threshold | None = Threshold(consecutive_failures=3)
    critical: Threshold | None = Threshold(consecutive_failures=5, failure_rate=0.5, min_calls=20)
    fatal: Threshold | None = None
    window_s: float = 60.0
    open_cooldown_s: float = 30.0
    half_open_probes: int = 1

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.open_cooldown_s < 0:
            raise ValueError("window_s must be > 0 and open_cooldown_s >= 0")
        if self.half_open_probes < 1:
            raise ValueError("half_open_probes must be >= 1")
        counts = [t.consecutive_failures for t in (self.warning, self.critical, self.fatal)
                  if t is not None and t.consecutive_failures is not None]
        if counts != sorted(counts):
            raise ValueError("consecutive_failures must not decrease from warning to critical to fatal")


TransitionListener = Callable[["CircuitBreaker", BreakerState, BreakerState], None]
TierListener = Callable[["CircuitBreaker", Tier], None]


class CircuitBreaker:
    """A tiered circuit breaker (see the module docstring for the state machine)."""

    def __init__(self, name: str, policy: BreakerPolicy | None = None, clock: Clock = time.monotonic) -> None:
        self.name = name
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._tier = Tier.OK
        self._latched = False
        self._opened_at = 0.0
        self._outcomes: deque[tuple[float, bool]] = deque()
        self._consecutive = 0
        self._probes_in_flight = 0
        self._probe_successes = 0
        self._transition_listeners: list[TransitionListener] = []
        self._tier_listeners: list[TierListener] = []

    # -- observation -------------------------------------------------------------------------
    @property
    def state(self) -> BreakerState:
        """The current state; an OPEN breaker whose cooldown elapsed turns HALF_OPEN here."""
        if (self._state is BreakerState.OPEN and not self._latched
                and self._clock() - self._opened_at >= self.policy.open_cooldown_s):
            self._transition(BreakerState.HALF_OPEN)
        return self._state

    @property
    def tier(self) -> Tier:
        """The most severe tier reached since the breaker last closed."""
        return self._tier

    @property
    def latched(self) -> bool:
        """True after a fatal trip: only :meth:`reset` closes the breaker again."""
        return self._latched

    def retry_after_s(self) -> float | None:
        """Seconds until an OPEN breaker admits probes (0 if it does now, None if latched)."""
        if self._latched:
            return None
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.policy.open_cooldown_s - self._clock())

    def on_transition(self, listener: TransitionListener) -> None:
        self._transition_listeners.append(listener)

    def on_tier(self, listener: TierListener) -> None:
        self._tier_listeners.append(listener)

    # -- calls ----------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Admit one call or raise :class:`CircuitOpenError`. Pair with ``record_*``."""
        state = self.state
        if state is BreakerState.CLOSED:
            return
        if state is BreakerState.HALF_OPEN and self._probes_in_flight < self.policy.half_open_probes:
            self._probes_in_flight += 1
            return
        raise CircuitOpenError(self.name, state, self.retry_after_s())

    def record_success(self) -> None:
        """Record a successful call. Outcomes of calls that finish while OPEN are ignored."""
        if self._state is BreakerState.HALF_OPEN:
            self._consecutive = 0
            self._probes_in_flight = max(0, self._probes_in_flight - 1)
            self._probe_successes += 1
            if self._probe_successes >= self.policy.half_open_probes:
                self._close()
        elif self._state is BreakerState.CLOSED:
            self._consecutive = 0
            self._remember(self._clock(), ok=True)

    def record_failure(self) -> None:
        """Record a failed call and evaluate the tiers. A failed probe re-opens the breaker;
        the consecutive count survives probing, so repeated failed probes escalate to fatal."""
        if self._state is BreakerState.OPEN:
            return
        probing = self._state is BreakerState.HALF_OPEN
        if probing:
            self._probes_in_flight = max(0, self._probes_in_flight - 1)
        now = self._clock()
        self._consecutive += 1
        self._remember(now, ok=False)
        self._evaluate(now, probe_failed=probing)

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """``with breaker.guard(): ...`` — admits the call and records its outcome.

        Any exception escaping the block counts as a failure and is re-raised.
        """
        self.acquire()
        try:
            yield
        except BaseException:
            self.record_failure()
            raise
        self.record_success()

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Await ``fn()`` through the breaker (cancellation is not counted as a failure)."""
        self.acquire()
        try:
            result = await fn()
        except asyncio.CancelledError:
            if self._state is BreakerState.HALF_OPEN:
                self._probes_in_flight = max(0, self._probes_in_flight - 1)
            raise
        except BaseException:
            self.record_failure()
            raise
        self.record_success()
        return result

    def reset(self) -> None:
        """Operator reset: close the breaker, clear the latch, the window and the tier."""
        self._latched = False
        self._close()

    # -- internals ------------------------------------------------------------------------------
    def _remember(self, now: float, *, ok: bool) -> None:
        self._outcomes.append((now, ok))
        horizon = now - self.policy.window_s
        while self._outcomes and self._outcomes[0][0] <= horizon:
            self._outcomes.popleft()

    def _evaluate(self, now: float, *, probe_failed: bool) -> None:
        calls = len(self._outcomes)
        failures = sum(1 for _, ok in self._outcomes if not ok)

        def trips(threshold: Threshold | None) -> bool:
            return threshold is not None and threshold.tripped(self._consecutive, failures, calls)

        if trips(self.policy.fatal):
            self._raise_tier(Tier.FATAL)
            self._latched = True
            self._open(now)
        elif trips(self.policy.critical):
            self._raise_tier(Tier.CRITICAL)
            self._open(now)
        elif probe_failed:
            self._open(now)
        elif trips(self.policy.warning):
            self._raise_tier(Tier.WARNING)

    def _raise_tier(self, tier: Tier) -> None:
        order = list(Tier)
        if order.index(tier) > order.index(self._tier):
            self._tier = tier
            for listener in list(self._tier_listeners):
                listener(self, tier)

    def _open(self, now: float) -> None:
        self._opened_at = now
        self._probes_in_flight = 0
        self._probe_successes = 0
        if self._state is not BreakerState.OPEN:
            self._transition(BreakerState.OPEN)

    def _close(self) -> None:
        self._outcomes.clear()
        self._consecutive = 0
        self._probes_in_flight = 0
        self._probe_successes = 0
        self._tier = Tier.OK
        if self._state is not BreakerState.CLOSED:
            self._transition(BreakerState.CLOSED)

    def _transition(self, to: BreakerState) -> None:
        previous, self._state = self._state, to
        for listener in list(self._transition_listeners):
            listener(self, previous, to)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with optional full jitter, a cap and a bound on attempts."""

    initial_s: float = 0.1
    multiplier: float = 2.0
    cap_s: float = 30.0
    max_attempts: int | None = 5
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.initial_s < 0 or self.cap_s < 0:
            raise ValueError("initial_s and cap_s must be >= 0")
        if self.multiplier < 1:
            raise ValueError("multiplier must be >= 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")

    def ceiling(self, attempt: int) -> float:
        """The largest delay after the ``attempt``-th failure (0-based): ``min(cap, initial * m**n)``."""
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        try:
            raw = self.initial_s * self.multiplier**attempt
        except OverflowError:
            return self.cap_s
        return min(self.cap_s, raw) if math.isfinite(raw) else self.cap_s

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The wait after the ``attempt``-th failure: uniform in [0, ceiling] with jitter."""
        ceiling = self.ceiling(attempt)
        return rng.uniform(0.0, ceiling) if self.jitter else ceiling

    def delays(self, rng: random.Random) -> Iterator[float]:
        """The waits between successive attempts: ``max_attempts - 1`` of them (endless if None)."""
        attempt = 0
        while self.max_attempts is None or attempt < self.max_attempts - 1:
            yield self.delay(attempt, rng)
            attempt += 1


RetryPredicate = Callable[[BaseException], bool]


def retry_on(*types: type[BaseException]) -> RetryPredicate:
    """A predicate that retries exactly the given exception types (and their subclasses)."""
    return lambda exc: isinstance(exc, types)


async def retry(
    fn: Callable[[], Awaitable[T]],
    *,
    backoff: Backoff,
    retryable: RetryPredicate,
    rng: random.Random | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Await ``fn()`` until it succeeds, waiting ``backoff`` delays between attempts.

    An exception for which ``retryable`` is false propagates at once; after
    ``backoff.max_attempts`` attempts the last exception propagates. ``on_retry(attempt,
    exc, delay_s)`` is called before each wait (attempt is 1-based: the one that failed).
    ``sleep`` is injectable so tests need no real time.
    """
    source = rng if rng is not None else random.Random()
    waits = backoff.delays(source)
    attempt = 0
    while True:
        attempt += 1
        try:
            return await fn()
        except Exception as exc:
            if not retryable(exc):
                raise
            delay = next(waits, None)
            if delay is None:
                raise
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            await sleep(delay)


class _StateCollector(Collector):
    """Reads every breaker's state at scrape time, so a lazily elapsed cooldown shows up."""

    def __init__(self, breakers: dict[str, CircuitBreaker]) -> None:
        self._breakers = breakers

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily("ata_circuit_breaker_state", "Circuit breaker state: 0 closed, 1 open, 2 half-open",
                                  labels=["name"])
        for name, breaker in sorted(self._breakers.items()):
            gauge.add_metric([name], float(breaker.state))
        yield gauge


class BreakerRegistry:
    """Named breakers of one process, exported as Prometheus metrics.

    ``ata_circuit_breaker_state{name}`` (0 closed / 1 open / 2 half-open),
    ``ata_circuit_breaker_transitions_total{name,from_state,to_state}`` and
    ``ata_circuit_breaker_tier_total{name,tier}`` (warning/critical/fatal trips).
    """

    def __init__(self, registry: CollectorRegistry, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}
        registry.register(_StateCollector(self._breakers))
        self._transitions = Counter("ata_circuit_breaker_transitions", "Circuit breaker state transitions",
                                    ["name", "from_state", "to_state"], registry=registry)
        self._tiers = Counter("ata_circuit_breaker_tier", "Circuit breaker tier trips", ["name", "tier"], registry=registry)

    def get(self, name: str, policy: BreakerPolicy | None = None) -> CircuitBreaker:
        """The breaker called ``name``, created with ``policy`` on first use."""
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = CircuitBreaker(name, policy, clock=self._clock)
            breaker.on_transition(self._count_transition)
            breaker.on_tier(self._count_tier)
            self._breakers[name] = breaker
        return breaker

    def states(self) -> dict[str, BreakerState]:
        return {name: breaker.state for name, breaker in sorted(self._breakers.items())}

    def _count_transition(self, breaker: CircuitBreaker, previous: BreakerState, current: BreakerState) -> None:
        self._transitions.labels(breaker.name, previous.name.lower(), current.name.lower()).inc()

    def _count_tier(self, breaker: CircuitBreaker, tier: Tier) -> None:
        self._tiers.labels(breaker.name, tier.value).inc()
