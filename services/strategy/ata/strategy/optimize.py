"""Genetic optimisation of a strategy's parameters (``deap``) under walk-forward validation.

The bars are split once: the last ``eval_bars`` form the **evaluation window**, which the search
never sees. The fitness of a parameter set is the mean out-of-sample Sharpe over the inner
walk-forward test windows of the development bars only (each window preceded by history; a
strategy's warm-up comes from that history). After the search, the best parameters are scored
once on the evaluation window (run over development + evaluation bars, counted on the window).

GA: real-valued genes within each parameter's ``SPACE`` bounds (integers rounded), tournament
selection (3), blend crossover (alpha 0.5, p 0.6), Gaussian mutation (10 % of the range, p 0.3 per
gene), clamped to bounds, elitism of one. Invalid combinations (e.g. fast >= slow) score -inf.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from deap import base, creator, tools

from ata.strategy import research
from ata.strategy.core.strategies import BUILTIN, Bar, StrategyParams

Fitness = Callable[[Sequence[Bar], str, StrategyParams], float]

if not hasattr(creator, "AtaFitnessMax"):
    creator.create("AtaFitnessMax", base.Fitness, weights=(1.0,))
    creator.create("AtaIndividual", list, fitness=creator.AtaFitnessMax)


def split_evaluation(bars: Sequence[Bar], eval_bars: int) -> tuple[Sequence[Bar], Sequence[Bar]]:
    if not 0 < eval_bars < len(bars):
        raise ValueError("eval_bars must leave some development bars")
    return bars[:-eval_bars], bars[-eval_bars:]


def walk_forward_fitness(bars: Sequence[Bar], name: str, params: StrategyParams, *, train_bars: int = 504,
                         test_bars: int = 252) -> float:
    """Mean out-of-sample Sharpe of ``name`` with ``params`` over the inner walk-forward windows."""
    close = np.array([b.close for b in bars])
    returns = research.portfolio_returns(close, research.strategy_targets(bars, name, params), cost_bps=1.0)
    sharpes = [research.score(returns[f.test])["sharpe"] for f in research.walk_forward_folds(len(bars), train_bars, test_bars)]
    finite = [s for s in sharpes if math.isfinite(s)]
    return float(np.mean(finite)) if finite else -math.inf


@dataclass(frozen=True)
class OptimizeResult:
    strategy: str
    best: StrategyParams
    fitness: float
    default_fitness: float
    evaluation: dict[str, float]
    default_evaluation: dict[str, float]
    history: list[float] = field(default_factory=list)  # best fitness per generation


def _decode(genes: Sequence[float], params_type: type[StrategyParams]) -> StrategyParams:
    template = params_type().to_dict()
    values: dict[str, Any] = {}
    for (name, _), g in zip(params_type.SPACE.items(), genes, strict=True):
        values[name] = round(g) if isinstance(template[name], int) else float(g)
    return params_type.from_dict(values)


def optimize(bars: Sequence[Bar], name: str, *, eval_bars: int = 756, population: int = 16, generations: int = 6,
             seed: int = 0, fitness: Fitness = walk_forward_fitness,
             progress: Callable[[int, float], None] | None = None) -> OptimizeResult:
    """Search ``name``'s parameters on the development bars; score the best once on the evaluation window."""
    params_type = BUILTIN[name].params_type
    space = list(params_type.SPACE.values())
    if not space:
        raise ValueError(f"{name} has no tunable parameters")
    dev, _ = split_evaluation(bars, eval_bars)
    rng = random.Random(seed)
    lows, highs = [lo for lo, _ in space], [hi for _, hi in space]

    def evaluate(genes: Sequence[float]) -> tuple[float]:
        try:
            params = _decode(genes, params_type)
        except ValueError:
            return (-math.inf,)
        return (fitness(dev, name, params),)

    def clamp(ind: list[float]) -> None:
        for i, (lo, hi) in enumerate(space):
            ind[i] = min(hi, max(lo, ind[i]))

    toolbox = base.Toolbox()
    pop = [creator.AtaIndividual([rng.uniform(lo, hi) for lo, hi in space]) for _ in range(population)]
    history: list[float] = []
    for ind in pop:
        ind.fitness.values = evaluate(ind)
    for gen in range(generations):
        elite = tools.selBest(pop, 1)[0]
        offspring = [toolbox.clone(i) for i in tools.selTournament(pop, len(pop) - 1, tournsize=3)]
        random.seed(rng.random())  # deap's operators draw from the global generator
        for a, b in zip(offspring[::2], offspring[1::2], strict=False):
            if rng.random() < 0.6:
                tools.cxBlend(a, b, alpha=0.5)
                del a.fitness.values, b.fitness.values
        for ind in offspring:
            if rng.random() < 0.9:
                tools.mutGaussian(ind, mu=0.0, sigma=[0.1 * (hi - lo) for lo, hi in zip(lows, highs, strict=True)], indpb=0.3)
                del ind.fitness.values
            clamp(ind)
            if not ind.fitness.valid:
                ind.fitness.values = evaluate(ind)
        pop = [toolbox.clone(elite), *offspring]
        best_fit = tools.selBest(pop, 1)[0].fitness.values[0]
        history.append(best_fit)
        if progress is not None:
            progress(gen + 1, best_fit)
    best_ind = tools.selBest(pop, 1)[0]
    best = _decode(best_ind, params_type)
    default = params_type()
    return OptimizeResult(name, best, best_ind.fitness.values[0], fitness(dev, name, default),
                          _evaluate(bars, name, best, eval_bars), _evaluate(bars, name, default, eval_bars), history)


def _evaluate(bars: Sequence[Bar], name: str, params: StrategyParams, eval_bars: int) -> dict[str, float]:
    close = np.array([b.close for b in bars])
    returns = research.portfolio_returns(close, research.strategy_targets(bars, name, params), cost_bps=1.0)
    return research.score(returns[len(bars) - eval_bars : -1])
