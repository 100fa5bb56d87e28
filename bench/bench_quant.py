"""ata.quant: metrics over long equity curves and per-update cost of streaming indicators."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ata.quant import indicators
from ata.quant.metrics import summarize
from bench.runner import Context, Metric, benchmark, timeit


def _equity(points: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    equity = 1e6 * np.exp(np.cumsum(rng.normal(2e-4, 1e-2, points)))
    positions = np.where(rng.random(points) < 0.6, 0.5, 0.0) * equity
    trade_pnls = rng.normal(10.0, 100.0, points // 100)
    return equity, positions, trade_pnls


@benchmark(
    name="quant.summarize",
    goal="summarize() of a 1M-point equity curve (about 10 years of minute bars) in <= 0.5 s",
    params={"points": 1_000_000, "repeat": 5, "seed": 1},
    quick={"points": 100_000, "repeat": 3},
)
def bench_summarize(ctx: Context) -> Iterator[Metric]:
    points = ctx.params["points"]
    equity, positions, trade_pnls = _equity(points, ctx.params["seed"])
    ctx.status(f"{points:,} points")
    plain = timeit(lambda: summarize(equity), repeat=ctx.params["repeat"])
    full = timeit(lambda: summarize(equity, positions=positions, trade_pnls=trade_pnls), repeat=ctx.params["repeat"])
    budget_s = 0.5 * points / 1_000_000
    ctx.record("samples_s", {"plain": plain.samples, "with_positions_and_trades": full.samples})
    yield Metric("equity only, best", plain.best * 1e3, "ms", at_most=budget_s * 1e3)
    yield Metric("with positions and trades, best", full.best * 1e3, "ms", at_most=budget_s * 1e3)
    yield Metric("throughput", points / full.best / 1e6, "M points/s")


def _streaming_cases(window: int) -> dict[str, tuple[Callable[[], Any], int]]:
    """Indicator factory and number of update arguments."""
    return {
        "Sma": (lambda: indicators.Sma(window), 1),
        "Ema": (lambda: indicators.Ema(span=window), 1),
        "RollingStd": (lambda: indicators.RollingStd(window), 1),
        "ZScore": (lambda: indicators.ZScore(window), 1),
        "Atr": (lambda: indicators.Atr(window), 3),
        "Donchian": (lambda: indicators.Donchian(window), 2),
        "RealizedVolatility": (lambda: indicators.RealizedVolatility(window), 1),
        "RollingCorrelation": (lambda: indicators.RollingCorrelation(window), 2),
    }


@benchmark(
    name="quant.streaming_indicators",
    goal="every streaming indicator update in <= 25 us (>= 40k updates/s on one core), far inside a bar's budget",
    params={"updates": 200_000, "window": 20, "seed": 2},
    quick={"updates": 20_000},
)
def bench_streaming(ctx: Context) -> Iterator[Metric]:
    n = ctx.params["updates"]
    rng = np.random.default_rng(ctx.params["seed"])
    close = (100.0 + np.cumsum(rng.normal(0.0, 1.0, n))).clip(1.0)
    rows = np.stack([close + 0.5, close - 0.5, close], axis=1).tolist()
    for name, (factory, arity) in _streaming_cases(ctx.params["window"]).items():
        ctx.status(name)
        args = [tuple(r[:arity]) for r in rows]

        def feed(make: Callable[[], Any] = factory, feed_args: list[tuple[float, ...]] = args) -> None:
            update = make().update
            for a in feed_args:
                update(*a)

        t = timeit(feed, repeat=3)
        yield Metric(f"{name} update", t.best / n * 1e6, "us", at_most=25.0)
