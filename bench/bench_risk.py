"""Risk core throughput: orders checked per second through the pure engine (no I/O).

- ``risk.orders_checked``: targets on 10 symbols with held positions become sized and checked
  orders (every target is decided: approved or denied), each approved order filled at once so
  the book stays realistic. Reported against the goal of >= 20,000 orders checked per second;
  also the cost of the pre-trade checks alone on a prepared order.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator

from ata.events import OrderDenied, SubmitOrder
from ata.risk.config import RiskSettings
from ata.risk.core import RiskEngine
from ata.risk.core.checks import run_checks
from ata.risk.testing import NS_PER_S, T0, bar, fill_for, target
from bench.runner import Context, Metric, benchmark, timeit

SYMBOLS = tuple(f"S{i:02d}" for i in range(10))


def _engine(seed: int) -> tuple[RiskEngine, dict[str, float], int]:
    engine = RiskEngine(RiskSettings(symbols=SYMBOLS, max_orders_per_minute=10_000_000, order_burst=1_000_000,
                                     correlation_refresh_bars=20, max_staleness_ms=10**12))
    rnd = random.Random(seed)
    prices = dict.fromkeys(SYMBOLS, 100.0)
    ts = T0
    for _ in range(60):
        ts += 60 * NS_PER_S
        for s in SYMBOLS:
            prices[s] *= math.exp(rnd.gauss(0, 0.01))
            engine.handle(bar(s, ts, prices[s]))
    return engine, prices, ts


@benchmark(
    name="risk.orders_checked",
    goal="targets sized and checked by the pure risk core: >= 20,000 orders/s on one core",
    params={"targets": 50_000, "seed": 1},
    quick={"targets": 5_000},
)
def bench_orders_checked(ctx: Context) -> Iterator[Metric]:
    count = ctx.params["targets"]
    engine, prices, ts = _engine(ctx.params["seed"])
    rnd = random.Random(ctx.params["seed"])
    targets = []
    for n in range(count):
        symbol = SYMBOLS[n % len(SYMBOLS)]
        targets.append(target(symbol, ts + n * 1_000_000, rnd.uniform(-0.3, 0.3), prices[symbol], key=n))
    ctx.status(f"{count:,} targets")
    approved = denied = 0
    deciding = filling = 0.0
    for t in targets:
        started = time.perf_counter()
        outputs = engine.handle(t)
        deciding += time.perf_counter() - started
        for out in outputs:
            if isinstance(out, SubmitOrder):
                approved += 1
                fill = fill_for(out, t.ts_event, prices[out.symbol])
                started = time.perf_counter()
                engine.handle(fill)
                filling += time.perf_counter() - started
            elif isinstance(out, OrderDenied):
                denied += 1
    ctx.record("decisions", {"approved": approved, "denied": denied, "no_order_needed": count - approved - denied})
    probe = engine.order_check(SYMBOLS[0], 10.0, prices[SYMBOLS[0]], ts + count * 1_000_000)
    checks_only = timeit(lambda: [run_checks(probe) for _ in range(10_000)], repeat=5)
    yield Metric("targets sized, checked, decided", count / deciding, "orders/s", at_least=20_000)
    yield Metric("fills booked", approved / filling if filling else 0.0, "fills/s")
    yield Metric("approved share", 100 * approved / count, "%")
    yield Metric("pre-trade checks only", 10_000 / checks_only.best, "orders/s")
