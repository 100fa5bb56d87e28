"""Strategy core cost per symbol-bar, and the numpy RL policy's action.

- ``strategy.stack``: the full stack per symbol-bar on 10 symbols of real S&P 500 / NASDAQ bars:
  every built-in strategy (regime-adaptive: two parameterisations each), performance tracking,
  switching, aggregation by regime and the conflict rule, through the event engine (BarClosed in,
  SignalGenerated x N + TargetProposed out). Also the meta-strategy alone (no event objects).
- ``strategy.rl_action``: one action of a PPO-shaped numpy policy (17 features, 64x64 tanh).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from ata.events import RegimeLabel
from ata.strategy.core import MetaStrategy, StrategyEngine
from ata.strategy.core.features import FEATURE_NAMES
from ata.strategy.core.policy import NumpyPolicy
from ata.strategy.data import load_bars
from ata.strategy.rl_env import action_table
from ata.strategy.testing import bar_event, regime_state
from bench.runner import Context, Metric, benchmark, timeit

SYMBOLS = tuple(f"S{i:02d}" for i in range(10))


@benchmark(
    name="strategy.stack",
    goal="full strategy stack per symbol-bar <= 200 us (10 symbols, daily bars)",
    params={"bars": 2000},
    quick={"bars": 300},
)
def bench_stack(ctx: Context) -> Iterator[Metric]:
    n = ctx.params["bars"]
    series = [load_bars("sp500")[:n], load_bars("nasdaq")[:n]]
    events = [bar_event(s, series[i % 2][t]) for t in range(n) for i, s in enumerate(SYMBOLS)]
    labels = list(RegimeLabel)
    regimes = [regime_state("_market", series[0][t].ts_ns - 1, labels[(t // 50) % len(labels)]) for t in range(n)]
    engine = StrategyEngine()
    for r in regimes:
        engine.handle(r)
    ctx.status(f"engine: {len(events):,} symbol-bars")
    started = time.perf_counter()
    outputs = sum(len(engine.handle(e)) for e in events)
    engine_us = (time.perf_counter() - started) / len(events) * 1e6
    meta = MetaStrategy()
    contexts = [engine.context_at(SYMBOLS[0], series[0][t].ts_ns) for t in range(n)]
    ctx.status("meta-strategy alone")
    started = time.perf_counter()
    for t in range(n):
        for i, s in enumerate(SYMBOLS):
            meta.on_bar(s, series[i % 2][t], contexts[t])
    meta_us = (time.perf_counter() - started) / len(events) * 1e6
    ctx.record("outputs", outputs)
    yield Metric("engine_per_symbol_bar", engine_us, "us", at_most=200.0)
    yield Metric("meta_per_symbol_bar", meta_us, "us")


@benchmark(
    name="strategy.rl_action",
    goal="numpy RL policy action <= 50 us",
    params={"calls": 20_000},
    quick={"calls": 2_000},
)
def bench_rl_action(ctx: Context) -> Iterator[Metric]:
    rng = np.random.default_rng(0)
    n_features, n_actions = len(FEATURE_NAMES), 7
    shapes = [(64, n_features), (64, 64), (n_actions, 64)]
    policy = NumpyPolicy(kind="ppo", activation="tanh", strategies=tuple(f"s{i}" for i in range(6)),
                         actions=action_table(6), obs_mean=np.zeros(n_features), obs_std=np.ones(n_features),
                         weights=tuple(rng.normal(0, 0.3, s) for s in shapes), biases=tuple(np.zeros(s[0]) for s in shapes))
    states = rng.normal(size=(ctx.params["calls"], n_features))

    def run() -> None:
        for x in states:
            policy.act(x)

    timing = timeit(run, repeat=3, warmup=1)
    yield Metric("action", timing.best / len(states) * 1e6, "us", at_most=50.0)
