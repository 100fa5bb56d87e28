"""One adapter per live service: the service's own core behind the topics the service subscribes to.

Each stage is what the service's shell does, minus Kafka: it takes a message from one of the
service's subscribed topics, calls the core, and returns the core's outputs for the backtest's
bus to route by the topic registry. No decision logic lives here. What differs from the live
shells, and why:

- **time**: every clock is the replay's event time (the close of the latest bar), never the
  wall clock; this is what makes a run deterministic for a seed;
- **regime refits** run inline right after the bar that made them due (live runs them in the
  background and applies them when they finish), so outputs are a pure function of the bars;
- **oversight** always answers with the rule-based reviewer (no network in a backtest);
- **execution** feeds each bar to the in-process simulated exchange and applies the broker
  updates it publishes at once (live follows the broker's update stream concurrently).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from pydantic import TypeAdapter

from ata.backtest.config import BacktestConfig, ExecutionConfig
from ata.events import (
    BarClosed,
    Message,
    NewsPublished,
    QuoteUpdated,
    SubmitOrder,
)
from ata.events.orders import CancelOrder
from ata.execution.brokers.simulated import FeeModel, SimConfig, SimulatedBroker, SimulatedExchange
from ata.execution.core.engine import BrokerRoute, EngineConfig, ExecutionEngine, MemoryOrderStore
from ata.execution.core.slippage import model_from_name
from ata.execution.core.state_machine import TrackedOrder
from ata.execution.service import BARS, COMMANDS, QUOTES
from ata.oversight.config import OversightSettings
from ata.oversight.core import OversightEngine
from ata.oversight.providers import rule_provider
from ata.oversight.reviewer import Reviewer, breaker_policy
from ata.regime.core import DetectorParams, RegimeDetector, run_refit
from ata.regime.core.events import on_bar
from ata.risk.config import RiskSettings
from ata.risk.core import RiskEngine
from ata.risk.service import SUBSCRIPTIONS as RISK_TOPICS
from ata.runtime.resilience import CircuitBreaker
from ata.sentiment.core import Scorer, SentimentEngine
from ata.sentiment.core.engine import EngineParams
from ata.strategy.core import MetaConfig, MetaStrategy, Method, StrategyEngine
from ata.strategy.core.coordination import CoordinationConfig
from ata.strategy.core.meta import StrategyFactory, make_factory
from ata.strategy.core.portfolio import PortfolioConstructor, PortfolioSettings
from ata.strategy.registry import available_strategies

REGIME_TOPIC = "regime.states.v1"
TARGETS, NEWS, SCORES = "strategy.targets.v1", "news.items.v1", "sentiment.scores.v1"


class Stage(Protocol):
    """A live service's core behind its subscriptions."""

    name: str
    topics: tuple[str, ...]

    async def start(self) -> list[Message]:
        """Outputs of starting (e.g. execution's reconciliation); usually none."""
        ...

    def handle(self, message: Message) -> Sequence[Message] | Awaitable[Sequence[Message]]:
        """Outputs of ``message``: returned where the core is synchronous, by a coroutine where it awaits
        (the bus awaits only coroutine functions, see :mod:`ata.backtest.dispatch`)."""
        ...


def source_of(name: str) -> str:
    """``Message.source`` of a stage: the live service name with a ``backtest`` instance.

    Derived ids are salted by the part before ``/`` only, so ids equal those of the live service.
    """
    return f"{name}/backtest"


class _Base:
    name = ""
    topics: tuple[str, ...] = ()

    async def start(self) -> list[Message]:
        return []


class RegimeStage(_Base):
    """``RegimeDetector`` per bar; its states become events exactly as the live service builds them
    (:func:`ata.regime.core.events.on_bar`: same ids, timestamps and fields)."""

    name = "regime"
    topics = (BARS,)

    def __init__(self, params: DetectorParams | None = None) -> None:
        self.detector = RegimeDetector(params)
        self.source = source_of(self.name)

    def handle(self, message: Message) -> Sequence[Message]:
        if not isinstance(message, BarClosed):
            return []
        detector = self.detector
        out = on_bar(detector, message, self.source)
        for request in detector.needs_refit():
            detector.apply_refit(run_refit(request))
        return out


class SentimentStage(_Base):
    """``SentimentEngine``: news items in; its clock advances with each bar's close (point in time)."""

    name = "sentiment"
    topics = (BARS, NEWS)

    def __init__(self, params: EngineParams | None = None, scorer: Scorer | None = None) -> None:
        self.engine = SentimentEngine(scorer or Scorer(), params, source=source_of(self.name))

    def handle(self, message: Message) -> Sequence[Message]:
        if isinstance(message, NewsPublished):
            return self.engine.on_news(message)
        if isinstance(message, BarClosed):
            return self.engine.advance(message.ts_event)
        return []


class StrategyStage(_Base):
    """``StrategyEngine`` (the meta-strategy behind the event contract, with portfolio construction
    when configured), built from the ``[strategy]`` table by :func:`strategy_engine`."""

    name = "strategy"
    topics = (BARS, REGIME_TOPIC, SCORES)

    def __init__(self, engine: StrategyEngine) -> None:
        self.engine = engine

    def handle(self, message: Message) -> Sequence[Message]:
        return self.engine.handle(message)


class OversightStage(_Base):
    """``OversightEngine`` selecting subjects, answered by the rule-based reviewer."""

    name = "oversight"
    topics = (TARGETS, REGIME_TOPIC, NEWS)

    def __init__(self, settings: OversightSettings) -> None:
        self.engine = OversightEngine(settings, source=source_of(self.name))
        rules = rule_provider(settings)
        self.reviewer = Reviewer(settings, rules, rules, breaker=CircuitBreaker("oversight-backtest", breaker_policy(settings)))

    async def handle(self, message: Message) -> Sequence[Message]:
        out: list[Message] = []
        for request in self.engine.observe(message):
            outcome = await self.reviewer.review(request)
            out.append(self.engine.reviewed(request, outcome))
        return out


class RiskStage(_Base):
    """``RiskEngine``: every input risk subscribes to; orders, denials, states, snapshots out."""

    name = "risk"
    topics = tuple(RISK_TOPICS)

    def __init__(self, settings: RiskSettings) -> None:
        self.engine = RiskEngine(settings, source=source_of(self.name))

    def handle(self, message: Message) -> Sequence[Message]:
        return self.engine.handle(message)


class ReferenceOrderStore(MemoryOrderStore):
    """Execution's order record for one uninterrupted process: keeps the live objects instead of a
    snapshot per save (a backtest never restarts, and snapshotting every order change dominated its
    cost). ``load`` still answers with snapshots."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[str, TrackedOrder] = {}

    async def load(self) -> list[dict[str, Any]]:
        return [order.snapshot() for order in self.live.values()]

    async def save(self, order: TrackedOrder) -> None:
        self.live[order.client_order_id] = order


class ExecutionStage(_Base):
    """``ExecutionEngine`` over the in-process simulated exchange, timed by the replay clock.

    A bar goes to the engine (arrival prices) and to the exchange; the order updates the exchange
    reports for it (fills, expiries) are applied as the live shell applies its broker's update
    stream. Submissions are answered synchronously by the exchange, as live.
    """

    name = "execution"
    topics = (COMMANDS, QUOTES, BARS)

    def __init__(self, config: ExecutionConfig) -> None:
        self.now_ns = 0
        sim = SimConfig(slippage=model_from_name(config.slippage, bps=config.slippage_bps),
                        fees=FeeModel(bps=config.fee_bps), latency_ns=int(config.latency_ms * 1e6),
                        participation=config.participation)
        self.exchange = SimulatedExchange(sim)
        self.broker = SimulatedBroker("sim", self.exchange, clock=self.clock)
        self.engine = ExecutionEngine([BrokerRoute(self.broker, fee_bps=config.fee_bps)], ReferenceOrderStore(), self.clock,
                                      EngineConfig(source=source_of(self.name)))

    def clock(self) -> int:
        return self.now_ns

    async def start(self) -> list[Message]:
        return await self.engine.start()

    async def handle(self, message: Message) -> Sequence[Message]:
        self.now_ns = max(self.now_ns, message.ts_event)
        engine = self.engine
        if isinstance(message, SubmitOrder):
            return await engine.handle_submit(message)
        if isinstance(message, CancelOrder):
            return await engine.handle_cancel(message)
        if isinstance(message, BarClosed | QuoteUpdated):
            engine.on_market(message)
            changed = self.exchange.on_bar(message) if isinstance(message, BarClosed) else self.exchange.on_quote(message)
            out: list[Message] = []
            for view in changed:
                out += await engine.on_broker_update(self.broker.name, view)
            return out
        return []


#: ``[strategy]`` keys that configure the engine around the meta-strategy, with the meaning of the
#: strategy service's settings of the same names (``ATA_STRATEGY_SYMBOLS``, ``_TIMEFRAME``,
#: ``_PUBLISH_SIGNALS``, ``_PORTFOLIO``); every other key is a ``MetaConfig`` field.
ENGINE_KEYS = frozenset({"symbols", "timeframe", "publish_signals", "portfolio"})


def meta_config(raw: dict[str, Any]) -> MetaConfig:
    """``MetaConfig`` from plain config values (method names as strings)."""
    data = {k: v for k, v in raw.items() if k not in ENGINE_KEYS}
    if "methods_by_regime" in data:
        data["methods_by_regime"] = {k: Method(v) for k, v in data["methods_by_regime"].items()}
    if "default_method" in data:
        data["default_method"] = Method(data["default_method"])
    if "strategies" in data:
        data["strategies"] = tuple(data["strategies"])
    if data.get("coordination") is not None:  # validated as the service validates ATA_STRATEGY_COORDINATION
        data["coordination"] = TypeAdapter(CoordinationConfig).validate_python(data["coordination"])
    return MetaConfig(**data)


def strategy_engine(raw: dict[str, Any], factory: StrategyFactory | None = None) -> StrategyEngine:
    """The strategy core as the live service builds it from the same settings (``StrategyService._new_engine``).

    ``portfolio`` (``PortfolioSettings`` fields, the JSON of ``ATA_STRATEGY_PORTFOLIO``) turns on
    portfolio construction over the universe ``symbols``, which it needs, as live. Signals are not
    published unless ``publish_signals`` is set: nothing in a backtest consumes them, and leaving
    them out changes no other output (each output type has its own id salt).
    """
    meta = meta_config(raw)
    symbols = tuple(raw.get("symbols", ()))
    portfolio = None
    if raw.get("portfolio") is not None:
        if not symbols:
            raise ValueError("strategy.portfolio (portfolio construction) needs the universe: set strategy.symbols")
        portfolio = PortfolioConstructor(PortfolioSettings.model_validate(raw["portfolio"]), symbols,
                                         max_abs_target=meta.max_abs_target, periods_per_year=meta.periods_per_year)
    strategies = MetaStrategy(meta, factory=factory or make_factory(meta, available_strategies()))
    return StrategyEngine(strategies, source=source_of(StrategyStage.name), timeframe=raw.get("timeframe"),
                          symbols=symbols, publish_signals=bool(raw.get("publish_signals", False)), portfolio=portfolio)


def build_stages(config: BacktestConfig, *, strategy_factory: Callable[[MetaConfig], StrategyFactory] | None = None,
                 risk: RiskSettings | None = None) -> list[Stage]:
    """The configured stages in subscription order (execution first: fills of a bar precede the
    decisions the bar causes, as an exchange reports executions before the close is known).

    ``strategy_factory`` builds the per-symbol strategies from the meta config (default: the
    installed strategy registry, built-ins and plugins)."""
    stages: list[Stage] = []
    for name in config.stages_in_order():
        if name == "execution":
            stages.append(ExecutionStage(config.execution))
        elif name == "regime":
            stages.append(RegimeStage(DetectorParams(**config.regime)))
        elif name == "sentiment":
            stages.append(SentimentStage())
        elif name == "strategy":
            factory = strategy_factory(meta_config(config.strategy)) if strategy_factory else None
            stages.append(StrategyStage(strategy_engine(config.strategy, factory)))
        elif name == "oversight":
            stages.append(OversightStage(OversightSettings(**{**config.oversight, "provider": "rules"})))
        elif name == "risk":
            stages.append(RiskStage(risk or risk_settings(config)))
    return stages


def risk_settings(config: BacktestConfig) -> RiskSettings:
    return RiskSettings(**config.risk)
