"""The backtest benchmark's rule run by backtrader and NautilusTrader beside our fast path, same data, same run.

The rule is ``backtest.minimal``'s (long-only SMA 10/30 crossover on close, 100 units, market
orders filled at the next bar's open, no costs) on seeded synthetic 1-minute bars, prices rounded
to :data:`DECIMALS` places so that every engine sees the same numbers (NautilusTrader keeps prices
at an instrument's fixed precision). Each peer runs as a subprocess of the bench virtual
environment (``.venv-bench``, built by ``make bench`` from ``bench/peers/requirements.txt``) with
its own script in ``bench/peers/`` and reports its wall time for the run and its trades; every
engine's trades are compared with the plain per-bar reference
(:func:`ata.backtest.sma.reference_trades`), so the rates compare the same work.
"""

from __future__ import annotations

import json
import math
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ata.backtest.fast import run_fast
from ata.backtest.sma import SmaCrossover, reference_trades
from ata.quant.synthetic import SyntheticConfig, generate_bars
from bench.runner import Context, Metric, benchmark

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "bench" / "peers"
PEER_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
FRAMEWORKS = ("backtrader", "nautilus")
DECIMALS = 6
#: Bar close times: one minute apart from an arbitrary start (the rule does not look at time).
T0_NS, STEP_NS = 1_600_000_000_000_000_000, 60_000_000_000
PEER_TIMEOUT_S = 1800.0

Trade = tuple[int, int, float, float]


def same_trades(got: Sequence[Sequence[float]], expected: Sequence[Trade]) -> int:
    """How many trades differ from the reference (bars and quantity exactly, price to 1e-12 relative)."""
    mismatches = abs(len(got) - len(expected))
    for g, e in zip(got, expected, strict=False):
        if (int(g[0]), int(g[1]), float(g[2])) != e[:3] or not math.isclose(float(g[3]), e[3], rel_tol=1e-12):
            mismatches += 1
    return mismatches


def run_peer(framework: str, bars_file: Path) -> dict[str, object]:
    """Run ``bench/peers/sma_<framework>.py`` in the bench environment and return its JSON report."""
    if not PEER_PYTHON.exists():
        raise RuntimeError(f"{PEER_PYTHON.relative_to(ROOT)} is missing: run `make bench`, which builds it "
                           "from bench/peers/requirements.txt")
    done = subprocess.run([str(PEER_PYTHON), str(PEERS / f"sma_{framework}.py"), str(bars_file)],
                          capture_output=True, text=True, timeout=PEER_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{framework} exited with {done.returncode}:\n{done.stderr[-3000:]}")
    report: dict[str, object] = json.loads(done.stdout)
    return report


@benchmark(
    name="backtest.peers",
    goal="backtest.minimal's rule in backtrader and NautilusTrader beside ours, same 1,000,000 bars; all trades == reference",
    params={"bars": 1_000_000, "seed": 7},
    quick={"bars": 20_000},
)
def bench_peers(ctx: Context) -> Iterator[Metric]:
    n = ctx.params["bars"]
    ctx.status(f"generating {n:,} bars")
    block = generate_bars(SyntheticConfig(n_symbols=1, seed=ctx.params["seed"]), n)
    prices = {k: np.round(getattr(block, k)[:, 0], DECIMALS) for k in ("open", "high", "low", "close")}
    expected, _ = reference_trades(prices["open"], prices["close"])
    ctx.status("ours (fast path)")
    started = time.perf_counter()
    ours = run_fast(SmaCrossover(), prices["open"], prices["close"])
    ours_rate = n / (time.perf_counter() - started)
    ours_trades = [(t.signal_bar, t.fill_bar, t.quantity, t.price) for t in ours.trades]
    yield Metric("ata bars_per_s", ours_rate, "bars/s")
    yield Metric("ata trades != reference", same_trades(ours_trades, expected), "trades", at_most=0)
    ctx.record("reference_trades", len(expected))
    with tempfile.TemporaryDirectory(prefix="ata-peers-") as tmp:
        bars_file = Path(tmp) / "bars.npz"
        ts = T0_NS + STEP_NS * np.arange(1, n + 1, dtype=np.int64)
        np.savez(bars_file, ts=ts, volume=block.volume[:, 0], **prices)
        for framework in FRAMEWORKS:
            ctx.status(framework)
            report = run_peer(framework, bars_file)
            rate = n / float(report["seconds"])  # type: ignore[arg-type]
            trades = report["trades"]
            assert isinstance(trades, list)
            ctx.record(f"{framework}_version", report["version"])
            yield Metric(f"{framework} bars_per_s", rate, "bars/s")
            yield Metric(f"ata / {framework}", ours_rate / rate, "x")
            yield Metric(f"{framework} trades != reference", same_trades(trades, expected), "trades", at_most=0)
