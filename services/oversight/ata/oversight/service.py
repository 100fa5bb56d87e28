"""The oversight service shell: subjects in, reviewed verdicts with their audit trail out.

Consumes ``strategy.targets.v1`` (target proposals), ``regime.states.v1`` (states as context,
confirmed changes as subjects) and ``news.items.v1`` (headlines as quoted context); publishes
one :class:`~ata.events.OversightReviewed` per review on ``oversight.reviews.v1``. The
:class:`~ata.oversight.core.OversightEngine` decides what to review; the
:class:`~ata.oversight.reviewer.Reviewer` gets the verdict within the deadline (falling back to
the rules). The engine's context is cached in Redis on stop and restored on start (a cache:
without it the service starts with empty context).

Each fetched batch is handled in one call (the runtime's batch handling): its messages in fetch
order, their reviews one after another. Verdicts are published and acknowledged before the batch
is committed, so a crash never loses a review (a redelivered subject is reviewed again under the
same deterministic review id). Rule-based reviews cost microseconds, so their verdicts share one
span, one produce call and one acknowledgement wait per batch. Before a review that calls the
provider, the verdicts reached so far are published and acknowledged: a slow provider delays no
verdict that is already decided, only the subjects behind it (as with one message at a time); in
gating mode keep ``deadline_ms`` well below risk's oversight timeout.

Pacing (advisory and off modes): nothing waits for these verdicts (risk acts on them only in gating
mode), so the service asks the runtime for batch pacing (:meth:`Service.batch_interval_s`,
``batch_interval_ms``): after a batch that was not full, its verdicts published, the next batch is
handled no sooner than the interval after this one began and holds what arrived meanwhile. A steady
stream of subjects then costs one fetch, one applied-id look-up and write, one produce call, one
acknowledgement wait and one commit per interval instead of per few subjects. Verdicts come up to
that much later. Gating mode never pauses.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, ClassVar, Self

import orjson
from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ata.events import Message, OversightReviewed, TopicRegistry
from ata.oversight import metrics
from ata.oversight.config import OversightSettings
from ata.oversight.core import OversightEngine, ReviewOutcome, ReviewRequest
from ata.oversight.providers import Provider
from ata.oversight.reviewer import Reviewer, breaker_policy, build_reviewer
from ata.runtime import metrics as runtime_metrics
from ata.runtime.bus import Delivery
from ata.runtime.config import RuntimeSettings, load_settings
from ata.runtime.resilience import CircuitBreaker
from ata.runtime.service import Service, run_service

SUBSCRIPTIONS = ("strategy.targets.v1", "regime.states.v1", "news.items.v1")
BREAKER_STATE = runtime_metrics.gauge("ata_oversight_breaker_state", "Provider breaker: 0 closed, 1 open, 2 half-open",
                                      ("provider",))


class OversightService(Service):
    name = "oversight"
    subscriptions: ClassVar[tuple[str, ...]] = SUBSCRIPTIONS

    def __init__(self, settings: RuntimeSettings, oversight_settings: OversightSettings, *,
                 registry: TopicRegistry | None = None, topic_names: dict[str, str] | None = None,
                 provider: Provider | None = None, **kwargs: Any) -> None:
        """``registry`` / ``topic_names``: isolated topics (tests, side-by-side runs);
        ``provider`` replaces the configured one."""
        if registry is not None:
            self.registry = registry  # type: ignore[misc]  # per-instance topics
        if topic_names:
            self.subscriptions = tuple(topic_names.get(t, t) for t in SUBSCRIPTIONS)  # type: ignore[misc]
        super().__init__(settings, **kwargs)
        self.oversight_settings = oversight_settings
        self.engine = OversightEngine(oversight_settings, source=self.source)
        self._provider = provider
        self._redis: Redis[bytes] | None = None
        self.reviewer: Reviewer | None = None

    @classmethod
    def from_env(cls) -> Self:
        return cls(load_settings(RuntimeSettings), load_settings(OversightSettings))

    @property
    def state_key(self) -> str:
        return f"{self.oversight_settings.redis_prefix}:state"

    async def on_start(self) -> None:
        settings = self.oversight_settings
        self._redis = Redis.from_url(self.settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
        breaker = CircuitBreaker(f"oversight-{settings.provider}", breaker_policy(settings))
        BREAKER_STATE.labels(settings.provider).set_function(lambda: float(breaker.state))
        self.reviewer = build_reviewer(settings, self._redis, breaker, provider=self._provider)
        try:
            raw = await self._redis.get(self.state_key)
        except RedisError as exc:
            self.log.warning("context cache unreachable, starting with empty context: %s", exc)
            raw = None
        if raw is not None:
            self.engine = OversightEngine.restore(settings, orjson.loads(raw), source=self.source)
        self.log.info("oversight started", extra={"mode": settings.mode, "provider": settings.provider})

    async def on_stop(self) -> None:
        if self._redis is not None:
            try:
                await self._redis.set(self.state_key, orjson.dumps(self.engine.snapshot()))
            except RedisError as exc:
                self.log.warning("could not cache the review context: %s", exc)
        if self.reviewer is not None:
            await self.reviewer.provider.aclose()
        if self._redis is not None:
            await self._redis.aclose()  # type: ignore[attr-defined]  # redis>=5; the stubs predate it

    async def handle_batch(self, batch: Sequence[tuple[Message, Delivery]]) -> Sequence[Sequence[Message] | Exception]:
        """Review the subjects of a fetched batch in fetch order (see the module contract).

        A message whose review fails is that message's result (dead-lettered by the runtime); the others
        go on. Messages whose verdicts were published early (before a provider call) answer with no outputs,
        or with the exception that refused their publication.
        """
        reviewer = self.reviewer
        assert reviewer is not None, "handle_batch() before on_start()"
        results: list[Sequence[Message] | Exception] = []
        unsent: dict[int, list[Message]] = {}  # outputs not published yet, by their message's index
        for message, _ in batch:
            outputs: list[Message] = []
            try:
                for request in self.engine.observe(message):
                    if not reviewer.answers_at_once(request):
                        await self._publish_decided(results, unsent)
                    outputs.append(self._reviewed(request, await reviewer.review(request)))
            except Exception as exc:  # one failed review must not stop the others
                results.append(exc)
                continue
            if outputs:
                unsent[len(results)] = outputs
            results.append(outputs)
        return results

    def batch_interval_s(self) -> float:
        """Paced in advisory and off modes (see the module contract); never in gating mode, where risk waits for the verdicts."""
        settings = self.oversight_settings
        return 0.0 if settings.mode == "gating" else settings.batch_interval_ms / 1000

    async def _publish_decided(self, results: list[Sequence[Message] | Exception], unsent: dict[int, list[Message]]) -> None:
        """Publish ``unsent`` now and wait for the acknowledgements; on success their messages' results become
        empty (nothing left for the runtime to publish), on failure the exception."""
        if not unsent:
            return
        try:
            await self.publish([output for outputs in unsent.values() for output in outputs])
        except Exception as exc:  # the runtime dead-letters these messages, as when its own publication fails
            for index in unsent:
                results[index] = exc
        else:
            for index in unsent:
                results[index] = ()
        unsent.clear()

    def _reviewed(self, request: ReviewRequest, outcome: ReviewOutcome) -> OversightReviewed:
        review: OversightReviewed = self.engine.reviewed(request, outcome, ts_init=self.now_ns())
        _reviews_of(review.subject_type, review.verdict.value).inc()
        return review


@functools.cache
def _reviews_of(subject_type: str, verdict: str) -> Counter:
    """The review counter of a subject type and verdict, resolved once (``labels()`` costs microseconds a call)."""
    return metrics.REVIEWS.labels(subject_type, verdict)


def main() -> None:
    run_service(OversightService)
