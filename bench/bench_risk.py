"""Risk core throughput: orders checked per second through the pure engine (no I/O).

``risk.orders_checked`` works on 10 symbols, all held, with 60 minute bars of history. Each timed
block covers one order (or target) per symbol and is timed on two clocks (fills: CPU only): the goal is on the CPU
time of this process (``time.process_time``), which a busy machine disturbs less; wall-clock time
(``time.perf_counter``) is reported beside it, with the load average before and after and a
fixed Python reference workload timed in the same run, to compare runs on differently loaded hosts.

- *orders checked*: the goal. Proposed orders of random size and side go through
  ``RiskEngine.check_order``: the order-check inputs are gathered from the live book, every
  pre-trade check runs, and the decision comes out as a ``SubmitOrder`` (booked in flight) or an
  ``OrderDenied``, the very events the service publishes, built the way it builds them. Quantities
  are whole-lot floats, as sizing makes them. Approved orders are then filled, untimed, so the book
  stays realistic (up to ten orders are in flight while a round is checked).
- *targets sized, checked, decided*: the whole path of a target through ``RiskEngine.handle``
  (sizing, checks, decision), with the fills of approved orders booked and timed separately.
- *pre-trade checks only*: ``run_checks`` on one prepared order (no inputs gathered, no event).
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Iterator

from ata.events import Message, OrderDenied, SubmitOrder
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


class _Stopwatch:
    """CPU and wall seconds summed over timed blocks."""

    def __init__(self) -> None:
        self.cpu = self.wall = 0.0
        self._cpu0 = self._wall0 = 0.0

    def start(self) -> None:
        self._cpu0, self._wall0 = time.process_time(), time.perf_counter()

    def stop(self) -> None:
        self.cpu += time.process_time() - self._cpu0
        self.wall += time.perf_counter() - self._wall0


def _reference_us() -> tuple[float, float]:
    """Best CPU and wall microseconds of ``sum(range(1000))``: how fast this host runs Python right now."""
    best_cpu = best_wall = math.inf
    for _ in range(200):
        watch = _Stopwatch()
        watch.start()
        sum(range(1000))
        watch.stop()
        best_cpu, best_wall = min(best_cpu, watch.cpu), min(best_wall, watch.wall)
    return best_cpu * 1e6, best_wall * 1e6


class _Tally:
    """Decisions seen, and the CPU time spent booking the fills of approved orders."""

    def __init__(self, engine: RiskEngine, prices: dict[str, float]) -> None:
        self.engine, self.prices = engine, prices
        self.approved = self.denied = 0
        self.filling = 0.0

    def settle(self, outputs: list[Message], ts: int) -> None:
        for out in outputs:
            if isinstance(out, SubmitOrder):
                self.approved += 1
                fill = fill_for(out, ts, self.prices[out.symbol])
                started = time.process_time()
                self.engine.handle(fill)
                self.filling += time.process_time() - started
            elif isinstance(out, OrderDenied):
                self.denied += 1


@benchmark(
    name="risk.orders_checked",
    goal="orders checked per second through the pure risk core: >= 20,000 orders/s on one core",
    params={"orders": 50_000, "seed": 1},
    quick={"orders": 5_000},
)
def bench_orders_checked(ctx: Context) -> Iterator[Metric]:
    count, seed = ctx.params["orders"], ctx.params["seed"]
    rounds = count // len(SYMBOLS)
    rnd = random.Random(seed)

    ctx.record("load_average_1m_before", os.getloadavg()[0])
    ctx.status(f"{count:,} orders checked")
    engine, prices, ts = _engine(seed)
    equity = engine.portfolio.equity
    proposals = []  # per round, per symbol: (cause, signed quantity of up to 10 % of equity)
    for r in range(rounds):
        at = ts + r * 1_000_000
        # Whole-lot float quantities, as sizing produces them.
        proposals.append([(target(s, at, 0.0, prices[s], key=r), float(round(rnd.uniform(-0.1, 0.1) * equity / prices[s]) or 1))
                          for s in SYMBOLS])
    orders = _Tally(engine, prices)
    checking = _Stopwatch()
    for batch in proposals:
        checking.start()
        decided = [engine.check_order(cause, cause.symbol, qty, cause.reference_price) for cause, qty in batch]
        checking.stop()
        for outputs, (cause, _) in zip(decided, batch, strict=True):
            orders.settle(outputs, cause.ts_event)

    ctx.status(f"{count:,} targets sized and checked")
    engine, prices, ts = _engine(seed)
    batches = [[target(s, ts + r * 1_000_000, rnd.uniform(-0.3, 0.3), prices[s], key=r) for s in SYMBOLS] for r in range(rounds)]
    targets = _Tally(engine, prices)
    deciding = _Stopwatch()
    for batch in batches:
        deciding.start()
        decided = [engine.handle(t) for t in batch]
        deciding.stop()
        for outputs, t in zip(decided, batch, strict=True):
            targets.settle(outputs, t.ts_event)

    checked = rounds * len(SYMBOLS)
    ctx.record("orders", {"approved": orders.approved, "denied": orders.denied})
    ctx.record("targets", {"approved": targets.approved, "denied": targets.denied,
                           "no_order_needed": checked - targets.approved - targets.denied})
    probe = engine.order_check(SYMBOLS[0], 10.0, prices[SYMBOLS[0]], ts + rounds * 1_000_000)
    checks_only = timeit(lambda: [run_checks(probe) for _ in range(10_000)], repeat=5)
    ctx.record("load_average_1m_after", os.getloadavg()[0])
    reference_cpu, reference_wall = _reference_us()
    yield Metric("orders checked", checked / checking.cpu, "orders/s", at_least=20_000)
    yield Metric("orders checked, wall clock", checked / checking.wall, "orders/s")
    yield Metric("orders approved", 100 * orders.approved / checked, "%")
    yield Metric("targets sized, checked, decided", checked / deciding.cpu, "targets/s")
    yield Metric("targets sized, checked, decided, wall clock", checked / deciding.wall, "targets/s")
    yield Metric("targets approved", 100 * targets.approved / checked, "%")
    yield Metric("fills booked", (orders.approved + targets.approved) / (orders.filling + targets.filling), "fills/s")
    yield Metric("pre-trade checks only", 10_000 / checks_only.best, "orders/s")
    yield Metric("reference: sum(range(1000)), CPU", reference_cpu, "us")
    yield Metric("reference: sum(range(1000)), wall", reference_wall, "us")
