"""GA optimisation: the fitness never sees the evaluation window, and the search improves on its start."""

from __future__ import annotations

from collections.abc import Sequence

from ata.strategy.core.strategies import Bar, MaCrossoverParams, StrategyParams
from ata.strategy.data import load_bars
from ata.strategy.optimize import optimize, walk_forward_fitness

BARS = load_bars("sp500")


def test_fitness_never_sees_the_evaluation_window() -> None:
    eval_bars = 756
    eval_start = BARS[-eval_bars].ts_ns
    seen: list[int] = []
    calls: list[StrategyParams] = []

    def recording(bars: Sequence[Bar], name: str, params: StrategyParams) -> float:
        seen.append(max(b.ts_ns for b in bars))
        calls.append(params)
        return walk_forward_fitness(bars, name, params)

    result = optimize(BARS, "ma_crossover", eval_bars=eval_bars, population=6, generations=2, seed=3, fitness=recording)
    assert len(calls) >= 6
    assert max(seen) < eval_start
    assert max(seen) == BARS[-eval_bars - 1].ts_ns, "the whole development period is used"
    assert isinstance(result.best, MaCrossoverParams) and result.best.fast < result.best.slow
    assert result.history == sorted(result.history), "elitism: the best fitness never falls"
    assert result.fitness >= max(walk_forward_fitness(BARS[:-eval_bars], "ma_crossover", p) for p in calls[:6]) - 1e-12
    assert set(result.evaluation) >= {"sharpe", "max_drawdown"}
