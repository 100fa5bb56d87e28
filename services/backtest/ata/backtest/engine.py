"""The backtest engine: market data replay through the live services' cores, in one process.

``Backtest.run`` passes every source record through marketdata's
:class:`~ata.marketdata.core.IntegrityChecker` and publishes what comes out on an in-process bus
(:mod:`ata.backtest.dispatch`) whose subscribers are the configured stages
(:mod:`ata.backtest.stages`: regime → sentiment → strategy → oversight → risk → execution on the
simulated exchange) and the :class:`~ata.backtest.recorder.Recorder` (portfolio accounting).
Each record is delivered with everything it causes before the next one is read, so the run is a
pure function of the data, the configuration and the seed: the same inputs give the same event
ids, orders and fills, in the same order, every time. News items (``NewsPublished``) are merged
into the stream by publication time, ahead of the bar whose close they precede.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ata.backtest.config import BacktestConfig
from ata.backtest.data import DataSpec, build_calendar, records
from ata.backtest.dispatch import DirectBus, MemoryBusAdapter
from ata.backtest.recorder import Recorder, Records
from ata.backtest.stages import Stage, build_stages, risk_settings
from ata.events import Message, NewsPublished
from ata.marketdata.core import IntegrityChecker, IntegrityConfig, RawBar, SessionCalendar, SourceItem
from ata.strategy.core import MetaConfig
from ata.strategy.core.meta import StrategyFactory

MARKETDATA_SOURCE = "marketdata/backtest"
#: Records between two progress callbacks.
PROGRESS_EVERY = 1000


@dataclass
class RunStats:
    bars: int
    records: int
    seconds: float

    @property
    def bars_per_second(self) -> float:
        return self.bars / self.seconds if self.seconds > 0 else float("inf")


def _event_time(item: SourceItem) -> int:
    return item.ts_close if isinstance(item, RawBar) else (item.ts or 0)


class Backtest:
    """One run's wiring. ``strategy_factory`` overrides how the meta-strategy builds its strategies."""

    def __init__(self, config: BacktestConfig, *, calendar: SessionCalendar | None = None,
                 strategy_factory: Callable[[MetaConfig], StrategyFactory] | None = None) -> None:
        self.config = config
        risk = risk_settings(config)
        self.stages: list[Stage] = build_stages(config, strategy_factory=strategy_factory, risk=risk)
        self.recorder = Recorder(risk.initial_cash)
        self.bus = DirectBus() if config.bus == "direct" else MemoryBusAdapter()
        for stage in self.stages:
            self.bus.subscribe(stage.topics, stage.handle)
        self.bus.subscribe(self.recorder.topics, self.recorder.handle)
        self.checker = IntegrityChecker(IntegrityConfig(), calendar=calendar, source=MARKETDATA_SOURCE)
        self.stats = RunStats(0, 0, 0.0)

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    async def run(self, items: Iterable[SourceItem], news: Sequence[NewsPublished] = (),
                  progress: Callable[[int], None] | None = None) -> Records:
        """Replay ``items`` (event-time order) with ``news``; ``progress(bars so far)`` every few records."""
        started = time.perf_counter()
        bus = self.bus
        for stage in self.stages:
            await bus.publish(await stage.start())
        pending = sorted(news, key=lambda n: (n.ts_event, str(n.event_id)))
        next_news = 0
        checker = self.checker
        count = 0
        for item in items:
            ts = _event_time(item)
            while next_news < len(pending) and pending[next_news].ts_event <= ts:
                await bus.publish([pending[next_news]])
                next_news += 1
            outputs: list[Message] = checker.process(item, ts)
            await bus.publish(outputs)
            count += 1
            if progress is not None and count % PROGRESS_EVERY == 0:
                progress(self.recorder.bars)
        result = self.recorder.finish(dict(bus.counts))
        self.stats = RunStats(result.bars, count, time.perf_counter() - started)
        if progress is not None:
            progress(result.bars)
        return result


async def run_backtest(spec: DataSpec, config: BacktestConfig, *, news: Sequence[NewsPublished] = (),
                       progress: Callable[[int], None] | None = None,
                       strategy_factory: Callable[[MetaConfig], StrategyFactory] | None = None) -> tuple[Records, RunStats]:
    """Build the calendar, the source and the engine for ``spec`` and run it."""
    calendar = build_calendar(spec)
    engine = Backtest(config, calendar=calendar, strategy_factory=strategy_factory)
    result = await engine.run(records(spec, calendar), news, progress)
    return result, engine.stats
