"""An RL policy that fails at run time (it raises, computes non-finite outputs, or answers weights that
are non-finite, negative or over other strategies): the decision falls back exactly as without a
policy, carries the failure, and the engine publishes it as an ``AllocationFallbackEngaged``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import pytest

from ata.events import AllocationFallbackEngaged, TargetProposed
from ata.strategy.core import MetaConfig, MetaStrategy, Method, StrategyEngine
from ata.strategy.core.features import FEATURE_NAMES
from ata.strategy.core.strategies import BUILTIN, MarketContext
from ata.strategy.data import load_bars
from ata.strategy.testing import bar_event, overflowing_policy

BARS = load_bars("sp500")[:300]
STRATEGIES = tuple(BUILTIN)
CONFIG = MetaConfig(default_method=Method.RL, methods_by_regime={}, min_history_bars=10)


@dataclass
class Answering:
    """Stands in for a loaded policy (what the meta-strategy reads of one), answering ``answer(obs)``."""

    answer: Callable[[npt.NDArray[np.float64]], object]
    strategies: tuple[str, ...] = STRATEGIES
    n_features: int = len(FEATURE_NAMES)

    def strategy_weights(self, obs: npt.NDArray[np.float64]) -> object:
        return self.answer(obs)


def _raise(obs: npt.NDArray[np.float64]) -> object:
    raise RuntimeError("predict failed")


BAD_POLICIES = {
    "exception": (Answering(_raise), "exception", "RuntimeError: predict failed"),
    "nan weights": (Answering(lambda obs: dict.fromkeys(STRATEGIES, float("nan"))), "non_finite", "non-finite weights"),
    "negative weights": (Answering(lambda obs: dict.fromkeys(STRATEGIES, -1.0)), "bounds_violated", "negative weights"),
    "wrong strategies": (Answering(lambda obs: {"other": 1.0}), "invalid_output", "weights over ['other']"),
    "not a mapping": (Answering(lambda obs: np.ones(len(STRATEGIES))), "invalid_output", "weights over ndarray"),
}


@pytest.mark.parametrize("case", BAD_POLICIES)
def test_a_failing_prediction_falls_back_like_no_policy_and_says_why(case: str) -> None:
    policy, reason, detail = BAD_POLICIES[case]
    failing, reference = MetaStrategy(CONFIG, policy=policy), MetaStrategy(CONFIG)  # type: ignore[arg-type]
    failures = 0
    for bar in BARS:
        decision = failing.on_bar("SPX", bar, MarketContext())
        expected = reference.on_bar("SPX", bar, MarketContext())
        if decision is None:
            assert expected is None
            continue
        assert replace(decision, fallback=None) == expected
        if failing.books["SPX"].last_features is None:  # no prediction asked before the features are warm
            assert decision.fallback is None
            continue
        failures += 1
        record = decision.fallback
        assert record is not None and (record.component, record.reason.value) == ("rl_policy", reason)
        assert detail in record.detail and record.method == decision.method.value != Method.RL.value
    assert failures > 100


def test_engine_publishes_each_runtime_failure_caused_by_its_bar() -> None:
    engine = StrategyEngine(MetaStrategy(CONFIG, policy=overflowing_policy(STRATEGIES)), publish_signals=False)
    outputs_by_bar = [(bar, engine.handle(bar)) for bar in (bar_event("SPX", b) for b in BARS)]
    fell_back = used_policy = 0
    for bar, outputs in outputs_by_bar:
        fallbacks = [m for m in outputs if isinstance(m, AllocationFallbackEngaged)]
        targets = [m for m in outputs if isinstance(m, TargetProposed)]
        if targets and targets[0].method == Method.RL.value:
            used_policy += 1
        if not fallbacks:
            continue
        fell_back += 1
        [event], [target] = fallbacks, targets
        assert event.causation_id == bar.event_id and event.correlation_id == bar.correlation_id
        assert (event.component, event.reason, event.symbols) == ("rl_policy", "non_finite", ("SPX",))
        assert "non-finite policy outputs" in event.detail
        assert event.fallback_method == target.method != Method.RL.value
        assert event.event_id != AllocationFallbackEngaged.caused_by(
            bar, index=0, source=engine.source, component="x", reason="x", detail="", fallback_method="x").event_id
    # The policy fails on rising bars only: both happen, each decided bar by bar.
    assert fell_back > 20 and used_policy > 20
