"""The regime service shell: bars in, regime states out, model fits in an executor, state cached in Redis.

All detection happens in :class:`ata.regime.core.RegimeDetector`. Per bar the shell first
installs any fit results that finished since the previous bar, then runs the detector
(O(1) per bar) and returns its events; fits that fall due are submitted to a process (or
thread) pool and never awaited by the handler. The detector state is cached in Redis every
``state_save_every_bars`` bars and on stop, and restored on start; Redis is only a cache,
so without it the service starts fresh and warms up again.

Each fetched batch of bars is handled in one call (the runtime's batch handling): one span, one
produce call and one acknowledgement wait per batch instead of per bar, which cost more than the
detector's own work per bar. A redelivered bar yields the same events again (ids derive from the
bar), so committing after the batch's outputs are acknowledged keeps the delivery contract.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
from collections.abc import Sequence
from typing import Any, Self

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ata.events import Message
from ata.events.market import BarClosed
from ata.events.regime import RegimeChanged
from ata.regime.config import RegimeSettings
from ata.regime.core import RefitRequest, RefitResult, RegimeDetector, run_refit, warm_up
from ata.regime.core.events import on_bar
from ata.runtime import metrics
from ata.runtime.batching import each_message
from ata.runtime.bus import Delivery
from ata.runtime.config import RuntimeSettings, load_settings
from ata.runtime.service import Service, run_service

REFITS = metrics.counter("ata_regime_refits_total", "Model refits by outcome", ("outcome",))
REFITS_IN_FLIGHT = metrics.gauge("ata_regime_refits_in_flight", "Model fits submitted and not yet applied")
CHANGES = metrics.counter("ata_regime_changes_total", "Confirmed regime changes by new label", ("label",))


class RegimeService(Service):
    name = "regime"
    subscriptions = ("market.bars.v1",)

    def __init__(self, settings: RuntimeSettings, regime_settings: RegimeSettings, **kwargs: Any) -> None:
        self.subscriptions = (regime_settings.bars_topic,)  # type: ignore[misc]  # per-instance topic names
        super().__init__(settings, **kwargs)
        self.regime_settings = regime_settings
        self.detector = RegimeDetector(regime_settings.detector_params())
        self._redis: Redis[bytes] | None = None
        self._pool: cf.Executor | None = None
        self._in_flight: dict[str, cf.Future[RefitResult]] = {}
        self._since_save = 0
        self.restored = False

    @classmethod
    def from_env(cls) -> Self:
        return cls(load_settings(RuntimeSettings), load_settings(RegimeSettings))

    def route(self, message: Message) -> str:
        return self.regime_settings.states_topic

    async def on_start(self) -> None:
        rs = self.regime_settings
        if rs.refit_executor == "process":
            # spawn: a forked copy of a process with running Kafka client threads is not safe
            self._pool = cf.ProcessPoolExecutor(rs.refit_workers, mp_context=multiprocessing.get_context("spawn"))
            # Not awaited: the workers spawn and import the fitting libraries while bars warm up
            # the windows; otherwise the first fit pays that (tens of seconds on a busy machine)
            # and no state is published until it lands.
            for _ in range(rs.refit_workers):
                self._pool.submit(warm_up)
        else:
            self._pool = cf.ThreadPoolExecutor(rs.refit_workers, thread_name_prefix="regime-refit")
        self._redis = Redis.from_url(self.settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
        try:
            raw = await self._redis.get(rs.state_key)
        except RedisError as exc:
            self.log.warning("state cache unreachable, starting fresh: %s", exc)
            raw = None
        if raw is not None:
            self.detector = RegimeDetector.restore(orjson.loads(raw), rs.detector_params())
            self.restored = True
            self.log.info("restored regime state from cache")

    async def on_stop(self) -> None:
        await self.save_state()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._redis is not None:
            await self._redis.aclose()  # type: ignore[attr-defined]  # redis>=5; the stubs predate it

    async def save_state(self) -> None:
        if self._redis is None:
            return
        try:
            await self._redis.set(self.regime_settings.state_key, orjson.dumps(self.detector.snapshot()))
            self._since_save = 0
        except RedisError as exc:
            self.log.warning("could not cache regime state: %s", exc)

    async def handle_batch(self, batch: Sequence[tuple[Message, Delivery]]) -> Sequence[Sequence[Message] | Exception]:
        """Every bar of a fetched batch through the detector, in fetch order (finished fits installed before
        each bar, as per message). A bar the detector fails on is that bar's result, dead-lettered by the
        runtime; the others go on. The state is cached once the batch brings the count to
        ``state_save_every_bars``."""
        results = each_message(batch, self._on_bar)
        self._since_save += len(batch)
        if self._since_save >= self.regime_settings.state_save_every_bars:
            await self.save_state()
        return results

    def _on_bar(self, message: Message) -> list[Message]:
        if not isinstance(message, BarClosed):
            return []
        self._apply_finished_refits()
        outputs = on_bar(self.detector, message, self.source)
        for out in outputs:
            # isinstance, not getattr(out, "current", None): a missing attribute of a pydantic
            # model raises inside its __getattr__, ~3 us per RegimeStateUpdated (two per bar).
            if isinstance(out, RegimeChanged):
                CHANGES.labels(label=str(out.current)).inc()
        self._submit_refits(self.detector.needs_refit())
        return outputs

    def _submit_refits(self, requests: list[RefitRequest]) -> None:
        if self._pool is None or not requests:
            return
        for request in requests:
            self._in_flight[request.key] = self._pool.submit(run_refit, request)
        REFITS_IN_FLIGHT.set(len(self._in_flight))

    def _apply_finished_refits(self) -> None:
        if not self._in_flight:
            return
        for key, future in list(self._in_flight.items()):
            if not future.done():
                continue
            del self._in_flight[key]
            try:
                result = future.result()
            except Exception as exc:  # a dead worker or a pickling failure: ask again when due
                self.log.warning("refit of %s failed: %s", key, exc)
                REFITS.labels(outcome="failed").inc()
                self.detector.release_refit(key)
                continue
            REFITS.labels(outcome="partial" if result.errors else "applied").inc()
            if result.errors:
                self.log.warning("refit of %s: %s", key, "; ".join(result.errors))
            self.detector.apply_refit(result)
        REFITS_IN_FLIGHT.set(len(self._in_flight))

    def heartbeat_details(self) -> dict[str, str | float | int | bool]:
        return {"keys": len(self.detector.tracked_keys()), "refits_in_flight": len(self._in_flight)}


def main() -> None:
    run_service(RegimeService)
