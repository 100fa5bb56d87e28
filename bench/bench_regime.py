"""Regime detection: hot-path cost per symbol-bar (fits excluded: they run off the hot path)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from ata.events.market import BarClosed
from ata.quant.synthetic import SyntheticConfig, SyntheticMarket
from ata.regime.core import DetectorParams, RegimeDetector, run_refit
from ata.regime.core.events import on_bar
from bench.runner import Context, Metric, benchmark

DAY_NS = 86_400 * 10**9
T0 = 1_600_000_000 * 10**9


def _bars(n_symbols: int, n_bars: int, seed: int) -> list[BarClosed]:
    block = SyntheticMarket(SyntheticConfig(n_symbols=n_symbols, seed=seed, bars_per_year=252.0)).generate(n_bars)
    out = []
    for t in range(n_bars):
        ts = T0 + t * DAY_NS
        for j in range(n_symbols):
            sym = f"S{j:03d}"
            out.append(
                BarClosed.origin(
                    natural_key=("bench", sym, ts),
                    ts_event=ts,
                    ts_init=ts,
                    source="bench",
                    symbol=sym,
                    timeframe="1d",
                    ts_open=ts - DAY_NS // 4,
                    open=float(block.open[t, j]),
                    high=float(block.high[t, j]),
                    low=float(block.low[t, j]),
                    close=float(block.close[t, j]),
                    volume=float(block.volume[t, j]),
                )
            )
    return out


@benchmark(
    name="regime.hot_path",
    goal="per symbol-bar cost of regime detection (factors, filters, label, confirmation) <= 50 us, 1 and 100 symbols",
    params={"symbols": [1, 100], "warmup_bars": 300, "timed_bars": 300, "seed": 3},
    quick={"symbols": [1, 20], "timed_bars": 100},
)
def bench_hot_path(ctx: Context) -> Iterator[Metric]:
    # Machine reference, to read the numbers on a shared or loaded host: one empty loop iteration.
    start = time.perf_counter()
    for _ in range(1_000_000):
        pass
    yield Metric("reference: empty Python loop iteration", (time.perf_counter() - start) * 1e3, "ns")
    params = DetectorParams()
    for n_symbols in ctx.params["symbols"]:
        warm, timed = ctx.params["warmup_bars"], ctx.params["timed_bars"]
        bars = _bars(n_symbols, warm + timed, ctx.params["seed"])
        ctx.status(f"{n_symbols} symbols: warming up (fits inline)")
        detector = RegimeDetector(params)
        for bar in bars[: warm * n_symbols]:
            on_bar(detector, bar, "regime/bench")
            for request in detector.needs_refit():
                detector.apply_refit(run_refit(request))
        # The timed loop is what the service does per bar; due fits are handed out (and dropped) but never run.
        timed_bars = bars[warm * n_symbols :]
        ctx.status(f"{n_symbols} symbols: timing")
        numeric = RegimeDetector.restore(detector.snapshot(), params)
        start = time.perf_counter()
        for bar in timed_bars:
            numeric.update(bar.symbol, bar.ts_event, bar.close, bar.volume, bar.timeframe)
            numeric.needs_refit()
        core_us = (time.perf_counter() - start) / len(timed_bars) * 1e6
        start = time.perf_counter()
        for bar in timed_bars:
            on_bar(detector, bar, "regime/bench")
            detector.needs_refit()
        events_us = (time.perf_counter() - start) / len(timed_bars) * 1e6
        yield Metric(f"{n_symbols} symbols: detector update", core_us, "us/symbol-bar", at_most=50.0)
        yield Metric(f"{n_symbols} symbols: update + events", events_us, "us/symbol-bar", at_most=50.0)
