"""Backtest throughput on the issue's exact work: long-only SMA 10/30 crossover on close, one symbol,
buy 100 units on a cross above, sell to flat on a cross below, market orders filled at the next
bar's open, no costs, seeded synthetic 1-minute bars (``ata.quant.synthetic``).

- ``backtest.minimal``: the fast path (:mod:`ata.backtest.fast`: the rule vectorised in numpy, a
  Python loop only over trade bars) on 1,000,000 bars; its trades are compared with the plain
  per-bar reference of the rule (:func:`ata.backtest.sma.reference_trades`) in the same run.
  Data generation is not timed.
- ``backtest.full_stack``: the event-driven engine with the live cores — market data integrity
  checks, regime detection (inline refits), the strategy core running the same rule, risk
  (its own sizing), execution on the simulated exchange, portfolio accounting —
  over the lean direct dispatcher and over ``ata.runtime.bus.InMemoryBus`` in the same run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

from ata.backtest.config import BacktestConfig
from ata.backtest.data import DataSpec, records
from ata.backtest.engine import Backtest
from ata.backtest.fast import run_fast
from ata.backtest.sma import SmaCrossover, reference_trades
from ata.quant.synthetic import SyntheticConfig, generate_bars
from ata.regime.evaluation import SYNTHETIC_PARAMS
from bench.runner import Context, Metric, benchmark

#: Risk sizes the rule's target (weight 1 while long, 0 flat) with its own policy, so order sizes are
#: risk's, not the rule's 100 units; rebalances under 1 % of equity are skipped. Regime runs the
#: detector settings documented for 1-minute bars (``SYNTHETIC_PARAMS``: windows in minutes, a refit
#: every 8,000 bars on the last 12,000, the first fit after 4,000); its daily defaults would refit
#: every 250 minutes, which no 1-minute deployment would run.
FULL_STACK = {
    "stages": ["regime", "strategy", "risk", "execution"],
    "periods_per_year": 98_280,
    "regime": dataclasses.asdict(SYNTHETIC_PARAMS),
    "strategy": {"strategies": ["sma_cross"], "adaptive_parameters": False, "switching": False},
    "risk": {"bars_per_year": 98_280, "max_staleness_ms": 10**12, "min_trade_notional": 10_000},
}


@benchmark(
    name="backtest.minimal",
    goal="SMA 10/30 crossover fast path on 1,000,000 synthetic 1-minute bars: >= 200,000 bars/s; trades == numpy reference",
    params={"bars": 1_000_000, "seed": 7},
    quick={"bars": 100_000},
)
def bench_minimal(ctx: Context) -> Iterator[Metric]:
    n = ctx.params["bars"]
    ctx.status(f"generating {n:,} bars")
    block = generate_bars(SyntheticConfig(n_symbols=1, seed=ctx.params["seed"]), n)
    open_, close = block.open[:, 0].copy(), block.close[:, 0].copy()
    ctx.status("fast path")
    timings = []
    result = None
    for _ in range(3):
        started = time.perf_counter()
        result = run_fast(SmaCrossover(), open_, close)
        timings.append(time.perf_counter() - started)
    assert result is not None
    ctx.status("numpy reference")
    expected, _ = reference_trades(open_, close)
    got = [(t.signal_bar, t.fill_bar, t.quantity, t.price) for t in result.trades]
    ctx.record("trades", len(got))
    yield Metric("bars_per_s", n / min(timings), "bars/s", at_least=200_000)
    yield Metric("trades", len(got), "trades")
    yield Metric("trades_equal_reference", float(got == expected), "bool", at_least=1.0)


@dataclass(frozen=True)
class FullStackRun:
    bars: int
    fills: int
    wall_s: float
    cpu_s: float

    @property
    def bars_per_s(self) -> float:
        return self.bars / self.wall_s

    @property
    def bars_per_cpu_s(self) -> float:
        return self.bars / self.cpu_s


def _full_stack(bars: int, seed: int, bus: str) -> FullStackRun:
    """One run; CPU time beside wall time (the machine may be shared: CPU per bar is the steadier number)."""
    config = BacktestConfig.model_validate({**FULL_STACK, "bus": bus})
    engine = Backtest(config, strategy_factory=lambda _meta: lambda _name: SmaCrossover())
    spec = DataSpec(data="synthetic", symbols=("SYN000",), seed=seed, synthetic_bars=bars, calendar="")
    cpu, started = time.process_time(), time.perf_counter()
    result = asyncio.run(engine.run(records(spec, None)))
    return FullStackRun(result.bars, len(result.fills), time.perf_counter() - started, time.process_time() - cpu)


@benchmark(
    name="backtest.full_stack",
    goal="regime + strategy + risk + simulated execution + accounting through the event engine: >= 20,000 bars/s",
    params={"bars": 20_000, "seed": 7},
    quick={"bars": 6_000},  # past the first regime fit (bar 4,000)
)
def bench_full_stack(ctx: Context) -> Iterator[Metric]:
    n, seed = ctx.params["bars"], ctx.params["seed"]
    ctx.status(f"{n:,} bars, direct dispatch")
    direct = _full_stack(n, seed, "direct")
    ctx.status(f"{n:,} bars, InMemoryBus")
    memory = _full_stack(n, seed, "memory")
    ctx.record("fills", direct.fills)
    ctx.record("load_average_1m", os.getloadavg()[0])
    yield Metric("bars_per_s", direct.bars_per_s, "bars/s", at_least=20_000)
    yield Metric("bars_per_cpu_s", direct.bars_per_cpu_s, "bars/CPU-s")
    yield Metric("bars_per_s_inmemorybus", memory.bars_per_s, "bars/s")
    yield Metric("bars_per_cpu_s_inmemorybus", memory.bars_per_cpu_s, "bars/CPU-s")
    yield Metric("fills", direct.fills, "fills")
    yield Metric("same_fills_both_buses", float(direct.fills == memory.fills and direct.bars == n), "bool", at_least=1.0)
