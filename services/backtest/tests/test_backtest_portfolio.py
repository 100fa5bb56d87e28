"""The backtest's strategy stage runs portfolio construction exactly as the live strategy service does."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from ata.backtest.config import BacktestConfig
from ata.backtest.data import DataSpec, records
from ata.backtest.engine import Backtest
from ata.backtest.stages import REGIME_TOPIC
from ata.events import Message, TargetProposed
from ata.execution.service import BARS
from ata.runtime.config import RuntimeSettings
from ata.strategy.config import StrategySettings
from ata.strategy.service import StrategyService

UNIVERSE = ("SYNA", "SYNB", "SYNC")
SPEC = DataSpec(data="synthetic", symbols=UNIVERSE, seed=5, synthetic_bars=400, calendar="")
PORTFOLIO = {"covariance_window_bars": 60, "covariance_min_bars": 20,
             "optimisers": {"default": "risk_parity", "by_regime": {"bear_volatile": "inverse_volatility"}}}
STRATEGY = {"strategies": ["ma_crossover", "mean_reversion"], "min_history_bars": 5,
            "params": {"ma_crossover": {"fast": 3, "slow": 8}, "mean_reversion": {"window": 5}}}
REGIME = {"min_fit_bars": 100, "fit_window_bars": 200, "refit_every_bars": 200, "rv_history_bars": 100}


class Tap:
    """Records what the bus delivers on some topics, in delivery order."""

    def __init__(self) -> None:
        self.seen: list[Message] = []

    async def handle(self, message: Message) -> Sequence[Message]:
        self.seen.append(message)
        return ()


def backtest(strategy: dict[str, object]) -> tuple[list[Message], list[TargetProposed]]:
    """The strategy stage's inputs and the targets it proposed, in order."""
    config = BacktestConfig.model_validate({"stages": ["regime", "strategy"], "regime": REGIME, "strategy": strategy})
    engine = Backtest(config)
    inputs, targets = Tap(), Tap()
    engine.bus.subscribe([BARS, REGIME_TOPIC], inputs.handle)
    engine.bus.subscribe(["strategy.targets.v1"], targets.handle)
    asyncio.run(engine.run(records(SPEC, None)))
    return inputs.seen, [t for t in targets.seen if isinstance(t, TargetProposed)]


def test_backtest_targets_equal_the_live_strategy_cores_with_portfolio_construction() -> None:
    inputs, targets = backtest({**STRATEGY, "symbols": list(UNIVERSE), "portfolio": PORTFOLIO})
    # the engine exactly as the live service builds it from its own settings (instance "backtest",
    # so that sources match too; nothing here connects to Kafka or Redis)
    settings = StrategySettings.model_validate({**STRATEGY, "symbols": UNIVERSE, "portfolio": PORTFOLIO})
    runtime = RuntimeSettings(kafka_bootstrap="127.0.0.1:9", redis_url="redis://127.0.0.1:9", instance_id="backtest")
    live = StrategyService(runtime, settings).engine
    expected = [out for message in inputs for out in live.handle(message) if isinstance(out, TargetProposed)]
    assert len(targets) > 50
    assert targets == expected
    assert {t.method for t in targets} <= {"risk_parity", "inverse_volatility", "capped_inverse_volatility"}
    # portfolio construction changed the outcome: per-symbol targets are not the optimised ones
    _, plain = backtest(STRATEGY)
    assert [(t.symbol, t.ts_event, t.target_weight) for t in plain] != [(t.symbol, t.ts_event, t.target_weight) for t in targets]


def test_portfolio_construction_needs_the_universe() -> None:
    with pytest.raises(ValueError, match=r"strategy\.symbols"):
        strategy_only(portfolio=PORTFOLIO)


def strategy_only(**strategy: object) -> Backtest:
    return Backtest(BacktestConfig.model_validate({"stages": ["strategy"], "strategy": {**STRATEGY, **strategy}}))


def test_coordination_settings_reach_the_meta_strategy_validated() -> None:
    engine = strategy_only(coordination={"correlation_window_bars": 30, "risk_budgets": {"ma_crossover": 2.0}})
    config = engine.stage("strategy").engine.meta.config  # type: ignore[attr-defined]
    assert config.coordination.correlation_window_bars == 30
    assert config.coordination.budget("ma_crossover") == 2.0
    with pytest.raises(ValueError, match="risk_budgets"):
        strategy_only(coordination={"risk_budgets": {"ma_crossover": -1.0}})
