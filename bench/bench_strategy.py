"""Strategy core cost per symbol-bar, and the numpy RL policy's action.

- ``strategy.stack``: the full stack per symbol-bar on 10 symbols of real S&P 500 / NASDAQ bars:
  every built-in strategy (regime-adaptive: two parameterisations each), performance tracking,
  switching, aggregation by regime and the conflict rule, through the event engine (BarClosed in,
  SignalGenerated x N + TargetProposed out), in CPU time (wall time for information). Also: the
  same engine with an RL policy that aggregates in every regime (online features and one policy
  action per symbol-bar on top), the engine publishing targets only, the meta-strategy alone (no
  event objects), and a fixed reference workload timed in the same run, to compare runs on
  differently loaded machines.
- ``strategy.rl_action``: one action of a PPO-shaped numpy policy (17 features, 64x64 tanh), CPU
  time (wall time for information).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

import numpy as np

from ata.events import RegimeLabel
from ata.strategy.core import MetaConfig, MetaStrategy, Method, StrategyEngine
from ata.strategy.core.features import FEATURE_NAMES
from ata.strategy.core.policy import NumpyPolicy
from ata.strategy.data import load_bars
from ata.strategy.rl_env import action_table
from ata.strategy.testing import bar_event, regime_state
from bench.runner import Context, Metric, benchmark

SYMBOLS = tuple(f"S{i:02d}" for i in range(10))


def _per_item_us(run: Callable[[], object], items: int) -> tuple[float, float]:
    """(CPU, wall) microseconds per item of one ``run()``. CPU time is the cost measure: on a shared
    machine wall time also counts the time the process waited for a core."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return (time.process_time() - cpu) / items * 1e6, (time.perf_counter() - wall) / items * 1e6


REFERENCE_STEPS = 200_000


def ppo_shaped_policy(strategies: tuple[str, ...], seed: int = 0) -> NumpyPolicy:
    """A policy shaped like SB3's PPO default actor (two 64-unit tanh layers) with random weights."""
    rng = np.random.default_rng(seed)
    n_features, n_actions = len(FEATURE_NAMES), len(strategies) + 1
    shapes = [(64, n_features), (64, 64), (n_actions, 64)]
    return NumpyPolicy(kind="ppo", activation="tanh", strategies=strategies, actions=action_table(len(strategies)),
                       obs_mean=np.zeros(n_features), obs_std=np.ones(n_features),
                       weights=tuple(rng.normal(0, 0.3, s) for s in shapes), biases=tuple(np.zeros(s[0]) for s in shapes))


def _reference_work() -> None:
    """A fixed pure-Python workload, timed in the same run so that results from differently loaded
    machines can be compared (engine cost in units of 1,000 of its steps)."""
    acc = 0.0
    for i in range(REFERENCE_STEPS):
        acc = acc * 0.5 + math.sqrt(i)


@benchmark(
    name="strategy.stack",
    goal="full strategy stack per symbol-bar <= 200 us CPU (10 symbols, daily bars)",
    params={"bars": 2000},
    quick={"bars": 300},
)
def bench_stack(ctx: Context) -> Iterator[Metric]:
    n = ctx.params["bars"]
    series = [load_bars("sp500")[:n], load_bars("nasdaq")[:n]]
    events = [bar_event(s, series[i % 2][t]) for t in range(n) for i, s in enumerate(SYMBOLS)]
    labels = list(RegimeLabel)
    regimes = [regime_state("_market", series[0][t].ts_ns - 1, labels[(t // 50) % len(labels)]) for t in range(n)]

    def engine_run(publish_signals: bool, meta: MetaStrategy | None = None) -> Callable[[], object]:
        engine = StrategyEngine(meta, publish_signals=publish_signals)
        for r in regimes:
            engine.handle(r)
        return lambda: sum(len(engine.handle(e)) for e in events)

    reference_us = min(_per_item_us(_reference_work, REFERENCE_STEPS // 1000)[0] for _ in range(3))
    ctx.status(f"engine: {len(events):,} symbol-bars")
    engine_cpu, engine_wall = _per_item_us(engine_run(publish_signals=True), len(events))
    ctx.status("engine with the RL policy")
    rl_config = MetaConfig(methods_by_regime=dict.fromkeys(labels, Method.RL))
    rl_meta = MetaStrategy(rl_config, policy=ppo_shaped_policy(rl_config.strategies))
    rl_cpu, _ = _per_item_us(engine_run(publish_signals=True, meta=rl_meta), len(events))
    ctx.status("engine, targets only")
    lean_cpu, _ = _per_item_us(engine_run(publish_signals=False), len(events))
    meta = MetaStrategy()
    contexts = [StrategyEngine().context_at(SYMBOLS[0], series[0][t].ts_ns) for t in range(n)]

    def meta_run() -> None:
        for t in range(n):
            for i, s in enumerate(SYMBOLS):
                meta.on_bar(s, series[i % 2][t], contexts[t])

    ctx.status("meta-strategy alone")
    meta_cpu, _ = _per_item_us(meta_run, len(events))
    yield Metric("engine_cpu_per_symbol_bar", engine_cpu, "us", at_most=200.0)
    yield Metric("engine_wall_per_symbol_bar", engine_wall, "us")
    yield Metric("engine_rl_cpu_per_symbol_bar", rl_cpu, "us", at_most=200.0)
    yield Metric("engine_targets_only_cpu_per_symbol_bar", lean_cpu, "us")
    yield Metric("meta_cpu_per_symbol_bar", meta_cpu, "us")
    yield Metric("reference_cpu_per_1000_steps", reference_us, "us")
    yield Metric("engine_cpu_in_reference_units", engine_cpu / reference_us, "x")


@benchmark(
    name="strategy.rl_action",
    goal="numpy RL policy action <= 50 us CPU",
    params={"calls": 20_000},
    quick={"calls": 2_000},
)
def bench_rl_action(ctx: Context) -> Iterator[Metric]:
    policy = ppo_shaped_policy(tuple(f"s{i}" for i in range(6)))
    states = np.random.default_rng(1).normal(size=(ctx.params["calls"], policy.n_features))

    def run() -> None:
        for x in states:
            policy.act(x)

    run()  # warm-up
    cpu, wall = min(_per_item_us(run, len(states)) for _ in range(3))
    yield Metric("action_cpu", cpu, "us", at_most=50.0)
    yield Metric("action_wall", wall, "us")
