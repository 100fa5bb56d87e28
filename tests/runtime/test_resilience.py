"""Circuit breaker, backoff and retry: pure logic driven by a fake clock and a seeded RNG."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ata.runtime.resilience import (
    Backoff,
    BreakerPolicy,
    BreakerRegistry,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    Threshold,
    Tier,
    retry,
    retry_on,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


POLICY = BreakerPolicy(
    warning=Threshold(consecutive_failures=2),
    critical=Threshold(consecutive_failures=4),
    fatal=Threshold(consecutive_failures=7),
    window_s=60.0,
    open_cooldown_s=10.0,
    half_open_probes=2,
)


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        breaker.acquire()
        breaker.record_failure()


def test_warning_only_reports_and_critical_opens() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("alpaca", POLICY, clock)
    tiers: list[Tier] = []
    breaker.on_tier(lambda _b, tier: tiers.append(tier))

    fail(breaker, 2)
    assert breaker.tier is Tier.WARNING
    assert breaker.state is BreakerState.CLOSED
    breaker.acquire()  # a warning never refuses calls
    breaker.record_failure()
    fail(breaker, 1)
    assert breaker.state is BreakerState.OPEN
    assert tiers == [Tier.WARNING, Tier.CRITICAL]
    with pytest.raises(CircuitOpenError) as refused:
        breaker.acquire()
    assert refused.value.retry_after_s == pytest.approx(10.0)


def test_success_resets_the_consecutive_run() -> None:
    breaker = CircuitBreaker("x", POLICY, FakeClock())
    for _ in range(10):
        fail(breaker, 3)
        breaker.acquire()
        breaker.record_success()
    assert breaker.state is BreakerState.CLOSED


def test_cooldown_half_open_probes_then_close() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("x", POLICY, clock)
    fail(breaker, 4)
    clock.advance(9.999)
    assert breaker.state is BreakerState.OPEN
    clock.advance(0.001)
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.acquire()
    breaker.acquire()
    with pytest.raises(CircuitOpenError):
        breaker.acquire()  # only half_open_probes calls at once
    breaker.record_success()
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.tier is Tier.OK


def test_failed_probe_reopens_and_restarts_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("x", POLICY, clock)
    fail(breaker, 4)
    clock.advance(10)
    breaker.acquire()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_after_s() == pytest.approx(10.0)
    clock.advance(5)
    assert breaker.state is BreakerState.OPEN


def test_fatal_latches_until_manual_reset() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("x", POLICY, clock)
    fail(breaker, 4)  # critical: consecutive 4
    for _ in range(3):  # three failed probes: consecutive 7 -> fatal
        clock.advance(10)
        breaker.acquire()
        breaker.record_failure()
    assert breaker.tier is Tier.FATAL and breaker.latched
    clock.advance(3600)
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_after_s() is None
    with pytest.raises(CircuitOpenError, match="manual reset"):
        breaker.acquire()
    breaker.reset()
    assert breaker.state is BreakerState.CLOSED
    breaker.acquire()


def test_failure_rate_in_window_trips_and_old_outcomes_expire() -> None:
    clock = FakeClock()
    policy = BreakerPolicy(warning=None, critical=Threshold(failure_rate=0.5, min_calls=10), window_s=30.0)
    breaker = CircuitBreaker("x", policy, clock)
    for i in range(9):  # alternate: 5 failures of 9 calls, below min_calls
        breaker.acquire()
        breaker.record_failure() if i % 2 == 0 else breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    clock.advance(31)  # everything so far leaves the window
    for i in range(10):
        breaker.acquire()
        breaker.record_failure() if i % 3 == 0 else breaker.record_success()
    assert breaker.state is BreakerState.CLOSED, "4 failures of 10 is below 50 %"
    fail(breaker, 1)
    assert breaker.state is BreakerState.CLOSED, "5 failures of 11 is below 50 %"
    fail(breaker, 1)
    assert breaker.state is BreakerState.OPEN, "6 failures of 12 reaches 50 %"


def test_failure_rate_exact_threshold() -> None:
    clock = FakeClock()
    policy = BreakerPolicy(warning=None, critical=Threshold(failure_rate=0.5, min_calls=4), window_s=30.0)
    breaker = CircuitBreaker("x", policy, clock)
    for outcome in (True, False, True):
        breaker.acquire()
        breaker.record_success() if outcome else breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED  # 3 calls < min_calls
    breaker.acquire()
    breaker.record_failure()  # 2 of 4 = 50 %
    assert breaker.state is BreakerState.OPEN


def test_policy_rejects_decreasing_tiers() -> None:
    with pytest.raises(ValueError, match="must not decrease"):
        BreakerPolicy(warning=Threshold(consecutive_failures=5), critical=Threshold(consecutive_failures=3))


async def test_call_counts_exceptions_and_passes_results() -> None:
    breaker = CircuitBreaker("x", POLICY, FakeClock())

    async def ok() -> int:
        return 7

    async def boom() -> int:
        raise ConnectionError("down")

    assert await breaker.call(ok) == 7
    for _ in range(4):
        with pytest.raises(ConnectionError):
            await breaker.call(boom)
    with pytest.raises(CircuitOpenError):
        await breaker.call(ok)


def test_backoff_ceiling_grows_then_caps() -> None:
    backoff = Backoff(initial_s=0.5, multiplier=2.0, cap_s=5.0, max_attempts=None, jitter=False)
    assert [backoff.ceiling(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff.ceiling(10_000) == 5.0  # no overflow for huge attempt numbers
    rng = random.Random(1)
    assert backoff.delay(2, rng) == 2.0


def test_full_jitter_stays_in_bounds_and_is_seeded() -> None:
    backoff = Backoff(initial_s=1.0, multiplier=3.0, cap_s=20.0, max_attempts=None)
    rng = random.Random(42)
    for attempt in range(12):
        samples = [backoff.delay(attempt, rng) for _ in range(200)]
        ceiling = backoff.ceiling(attempt)
        assert all(0.0 <= s <= ceiling for s in samples)
        # full jitter spreads over the whole range, not around the ceiling
        assert min(samples) < 0.1 * ceiling and max(samples) > 0.9 * ceiling
    first = list(zip(range(8), Backoff(max_attempts=None).delays(random.Random(7)), strict=False))
    second = list(zip(range(8), Backoff(max_attempts=None).delays(random.Random(7)), strict=False))
    assert first == second


def test_delays_bounded_by_max_attempts() -> None:
    assert len(list(Backoff(max_attempts=4).delays(random.Random(0)))) == 3
    assert list(Backoff(max_attempts=1).delays(random.Random(0))) == []


def make_flaky(failures: int, exc: Exception) -> tuple[Callable[[], Awaitable[str]], list[int]]:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise exc
        return "done"

    return flaky, calls


async def test_retry_waits_backoff_delays_then_succeeds() -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    backoff = Backoff(initial_s=1.0, multiplier=2.0, cap_s=3.0, max_attempts=5, jitter=False)
    flaky, calls = make_flaky(3, TimeoutError("slow"))
    result = await retry(flaky, backoff=backoff, retryable=retry_on(TimeoutError), sleep=fake_sleep)
    assert result == "done"
    assert len(calls) == 4
    assert slept == [1.0, 2.0, 3.0]


async def test_retry_gives_up_after_max_attempts_with_last_error() -> None:
    slept: list[float] = []
    retried: list[int] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    flaky, calls = make_flaky(10, TimeoutError("slow"))
    with pytest.raises(TimeoutError):
        await retry(flaky, backoff=Backoff(max_attempts=3), retryable=retry_on(TimeoutError), rng=random.Random(3),
                    sleep=fake_sleep, on_retry=lambda attempt, _e, _d: retried.append(attempt))
    assert len(calls) == 3
    assert retried == [1, 2]
    assert len(slept) == 2 and all(0 <= s <= 0.2 for s in slept)


async def test_retry_does_not_retry_other_errors() -> None:
    async def never(_: float) -> None:
        raise AssertionError("must not sleep")

    flaky, calls = make_flaky(1, ValueError("bad request"))
    with pytest.raises(ValueError):
        await retry(flaky, backoff=Backoff(), retryable=retry_on(TimeoutError), sleep=never)
    assert len(calls) == 1


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_registry_exports_states_and_transitions() -> None:
    clock = FakeClock()
    prom = CollectorRegistry()
    breakers = BreakerRegistry(prom, clock)
    broker = breakers.get("broker", POLICY)
    assert breakers.get("broker") is broker
    breakers.get("llm", POLICY)

    fail(broker, 4)
    samples = _samples(prom)
    assert samples[("ata_circuit_breaker_state", (("name", "broker"),))] == 1.0
    assert samples[("ata_circuit_breaker_state", (("name", "llm"),))] == 0.0
    assert samples[("ata_circuit_breaker_tier_total", (("name", "broker"), ("tier", "critical")))] == 1.0

    clock.advance(10)
    samples = _samples(prom)  # the cooldown elapsed: the scrape itself sees HALF_OPEN
    assert samples[("ata_circuit_breaker_state", (("name", "broker"),))] == 2.0
    key = ("ata_circuit_breaker_transitions_total", (("from_state", "open"), ("name", "broker"), ("to_state", "half_open")))
    assert samples[key] == 1.0
    assert breakers.states() == {"broker": BreakerState.HALF_OPEN, "llm": BreakerState.CLOSED}
