"""The review pipeline around a provider: cache, budget, breaker, retries, deadline, validation, fallback.

:meth:`Reviewer.review` always returns a :class:`~ata.oversight.core.ReviewOutcome` within
``deadline_ms`` (plus the fallback's negligible time) and never raises for a provider's
sake. For one request:

1. the rule-based provider, and targets below the review thresholds (gating mode), are
   answered by the rules at once;
2. the prompt cache (Redis, by provider, model and prompt hash) is consulted; a hit that
   still validates is used without a call;
3. otherwise the provider is called: each attempt first spends one unit of the per-minute and
   per-day budgets and passes the circuit breaker, and is bounded by ``request_timeout_ms``;
   transient failures (timeouts, connection errors, HTTP 429/5xx) are retried with
   exponential backoff and jitter; the whole sequence is bounded by ``deadline_ms``;
4. the answer is validated (schema and bounds); a valid one is cached and returned;
5. anything else (deadline, budget, open breaker, HTTP error, malformed or out-of-bounds
   answer) falls back: ``fallback=rules`` answers with the rule-based verdict,
   ``fallback=unreviewed`` with no verdict (risk applies its own policy). The failed attempt's
   prompt and raw response stay in the audit trail; the malformed answer is never executed.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from ata.oversight import metrics
from ata.oversight.budget import BudgetExhaustedError, CallBudget
from ata.oversight.cache import PromptCache
from ata.oversight.config import OversightSettings
from ata.oversight.core import Prompt, PromptLimits, ReviewOutcome, ReviewRequest, Unusable, build_prompt, parse_verdict
from ata.oversight.providers import (
    Completion,
    Provider,
    ProviderError,
    ProviderTimeoutError,
    RuleProvider,
    TransientProviderError,
    make_provider,
    rule_provider,
)
from ata.runtime.resilience import Backoff, BreakerPolicy, CircuitBreaker, CircuitOpenError, Threshold, retry, retry_on


@dataclass
class _Attempts:
    """What the provider calls of one review produced, for the audit trail."""

    last_text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Reviewer:
    def __init__(
        self,
        settings: OversightSettings,
        provider: Provider,
        fallback: RuleProvider,
        *,
        breaker: CircuitBreaker,
        cache: PromptCache | None = None,
        budget: CallBudget | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.provider = provider
        self.fallback = fallback
        self.breaker = breaker
        self.cache = cache
        self.budget = budget
        self.limits = PromptLimits(news_max_chars=settings.news_max_chars)
        self.backoff = Backoff(initial_s=settings.retry_initial_ms / 1000, cap_s=settings.retry_cap_ms / 1000,
                               max_attempts=settings.retry_attempts, jitter=True)
        self._review_seconds = metrics.REVIEW_SECONDS.labels(settings.mode)
        self._rng = rng or random.Random()
        self._sleep = sleep

    async def review(self, request: ReviewRequest) -> ReviewOutcome:
        started = time.monotonic()
        if self.answers_at_once(request):
            # The rules read the request, not the prompt text, and their verdict carries no prompt: none is rendered.
            outcome = self._rules(request, started, provider="policy" if request.below_threshold else "rules")
        else:
            outcome = await self._remote(build_prompt(request, self.limits), started)
        self._review_seconds.observe(outcome.latency_ms / 1000)
        return outcome

    def answers_at_once(self, request: ReviewRequest) -> bool:
        """Whether :meth:`review` answers ``request`` by the rules, without a provider call (step 1)."""
        return request.below_threshold or not self.provider.remote

    def _rules(self, request: ReviewRequest, started: float, *, provider: str) -> ReviewOutcome:
        """The rule-based verdict as the review's own answer (no provider call, so no prompt in the audit)."""
        answer, text = self.fallback.verdict(request)
        return ReviewOutcome(answer=answer, provider=provider, model=self.fallback.model, response=text,
                             latency_ms=_elapsed_ms(started))

    def _rules_after(self, prompt: Prompt, started: float, failure: str, detail: str, attempts: _Attempts) -> ReviewOutcome:
        """The rule-based verdict standing in for a provider that gave none (``failure``); the audit keeps the
        prompt and the provider's last raw answer."""
        answer, _ = self.fallback.verdict(prompt.request)
        answer = answer.model_copy(update={"rationale": f"{self.provider.name} gave no usable verdict ({failure}); "
                                                        f"rule-based: {answer.rationale}"[:2000]})
        return ReviewOutcome(
            answer=answer, provider=self.fallback.name, model=self.fallback.model, prompt=prompt.transcript(),
            prompt_sha256=prompt.sha256, response=attempts.last_text, latency_ms=_elapsed_ms(started),
            fallback_used=True, failure=failure, detail=detail,
            prompt_tokens=attempts.prompt_tokens, completion_tokens=attempts.completion_tokens)

    async def _remote(self, prompt: Prompt, started: float) -> ReviewOutcome:
        name, model = self.provider.name, self.provider.model
        cache_key = self.cache.key(name, model, prompt.sha256) if self.cache is not None else ""
        if self.cache is not None:
            cached = await self.cache.get(cache_key)
            answer = None if cached is None else parse_verdict(cached.text, prompt.request)
            if cached is not None and answer is not None and not isinstance(answer, Unusable):
                metrics.CACHE.labels("hit").inc()
                return ReviewOutcome(answer=answer, provider=name, model=cached.model, prompt=prompt.transcript(),
                                     prompt_sha256=prompt.sha256, response=cached.text, latency_ms=_elapsed_ms(started),
                                     cache_hit=True)
            metrics.CACHE.labels("miss").inc()
        attempts = _Attempts()
        try:
            async with asyncio.timeout(self.settings.deadline_ms / 1000):
                completion = await retry(lambda: self._attempt(prompt, attempts), backoff=self.backoff,
                                         retryable=retry_on(TransientProviderError), rng=self._rng, sleep=self._sleep)
        except TimeoutError:
            return await self._fail(prompt, started, "deadline", f"no verdict within {self.settings.deadline_ms} ms", attempts)
        except BudgetExhaustedError as exc:
            metrics.BUDGET_REFUSALS.labels(exc.window).inc()
            return await self._fail(prompt, started, "budget", str(exc), attempts)
        except CircuitOpenError as exc:
            return await self._fail(prompt, started, "circuit_open", str(exc), attempts)
        except ProviderTimeoutError as exc:
            return await self._fail(prompt, started, "timeout", str(exc), attempts)
        except ProviderError as exc:
            return await self._fail(prompt, started, exc.kind, str(exc), attempts)
        answer = parse_verdict(completion.text, prompt.request)
        metrics.CALLS.labels(name, answer.kind if isinstance(answer, Unusable) else "ok").inc()
        if isinstance(answer, Unusable):
            return await self._fail(prompt, started, answer.kind, answer.detail, attempts)
        if self.cache is not None:
            await self.cache.put(cache_key, completion)
        return ReviewOutcome(answer=answer, provider=name, model=completion.model, prompt=prompt.transcript(),
                             prompt_sha256=prompt.sha256, response=completion.text, latency_ms=_elapsed_ms(started),
                             prompt_tokens=attempts.prompt_tokens, completion_tokens=attempts.completion_tokens)

    async def _attempt(self, prompt: Prompt, attempts: _Attempts) -> Completion:
        name = self.provider.name
        if self.budget is not None:
            await self.budget.take()
        timeout_s = self.settings.request_timeout_ms / 1000
        started = time.monotonic()
        try:
            completion = await self.breaker.call(lambda: self.provider.complete(prompt, timeout_s=timeout_s))
        except ProviderError as exc:
            metrics.CALLS.labels(name, exc.kind).inc()
            raise
        finally:
            metrics.CALL_SECONDS.labels(name).observe(time.monotonic() - started)
        metrics.TOKENS.labels(name, "prompt").inc(completion.prompt_tokens)
        metrics.TOKENS.labels(name, "completion").inc(completion.completion_tokens)
        attempts.last_text = completion.text
        attempts.prompt_tokens += completion.prompt_tokens
        attempts.completion_tokens += completion.completion_tokens
        return completion

    async def _fail(self, prompt: Prompt, started: float, failure: str, detail: str, attempts: _Attempts) -> ReviewOutcome:
        metrics.FALLBACKS.labels(failure).inc()
        if self.settings.fallback == "rules":
            return self._rules_after(prompt, started, failure, detail, attempts)
        return ReviewOutcome(answer=None, provider=self.provider.name, model=self.provider.model, prompt=prompt.transcript(),
                             prompt_sha256=prompt.sha256, response=attempts.last_text, latency_ms=_elapsed_ms(started),
                             fallback_used=True, failure=failure, detail=detail, prompt_tokens=attempts.prompt_tokens,
                             completion_tokens=attempts.completion_tokens)


def breaker_policy(settings: OversightSettings) -> BreakerPolicy:
    """Open after ``breaker_failures`` consecutive failed attempts; probe again after the cooldown."""
    failures = settings.breaker_failures
    return BreakerPolicy(warning=Threshold(consecutive_failures=max(1, failures // 2)) if failures > 1 else None,
                         critical=Threshold(consecutive_failures=failures), open_cooldown_s=settings.breaker_cooldown_s)


def build_reviewer(settings: OversightSettings, redis: Redis[bytes] | None, breaker: CircuitBreaker, *,
                   provider: Provider | None = None) -> Reviewer:
    """The reviewer the settings describe; ``redis`` backs the cache and the budgets (None: neither)."""
    cache = budget = None
    if redis is not None:
        budget = CallBudget(redis, settings.redis_prefix, settings.calls_per_minute, settings.calls_per_day)
        cache = PromptCache(redis, settings.redis_prefix, settings.cache_ttl_s) if settings.cache_ttl_s else None
    return Reviewer(settings, provider or make_provider(settings), rule_provider(settings), breaker=breaker, cache=cache,
                    budget=budget)


def _elapsed_ms(started: float) -> float:
    return (time.monotonic() - started) * 1000
