"""ata.quant.portfolio: time of one optimisation at 50 and 500 symbols, per optimiser.

The problems are realistic: a five-factor covariance of daily returns, per-symbol caps of
three times equal weight, and for mean-variance signal-derived expected returns with an L1
turnover cost from the previous weights. The heaviest case is long-short mean-variance with
turnover (absolute values in the gross budget and in the cost). BLAS runs single-threaded
(``threadpoolctl``): a service optimises one portfolio at a time, and on a shared machine
multi-threaded BLAS on matrices this small is slower, not faster.

The goal is on the median wall time. On a shared machine wall time includes waiting for a CPU,
so each case also reports its median CPU time (``process_time``; one BLAS thread, so CPU time is
the optimisation's own work) and the bench records the 1-minute load average beside them.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator
from functools import partial

import numpy as np
from threadpoolctl import threadpool_limits

from ata.quant.portfolio import optimisers as op
from ata.quant.portfolio.constraints import Constraints
from bench.runner import Context, Metric, benchmark

HEAVIEST = "mean_variance_long_short_turnover"


def _problem(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(n, 5))
    cov = (factors @ factors.T * 0.3 + np.diag(rng.uniform(0.5, 2.0, n))) * 1e-4
    expected = op.expected_returns_from_signals(np.tanh(rng.normal(size=n)), np.sqrt(np.diag(cov)))
    previous = rng.dirichlet(np.ones(n))
    return cov, expected, previous


def _cases(n: int) -> dict[str, tuple[op.Optimiser, Constraints, bool]]:
    """name -> (optimiser, constraints, uses expected returns)."""
    long_only = Constraints.long_only_portfolio(n, max_weight=3.0 / n)
    long_short = Constraints.long_short_portfolio(n, max_abs_weight=3.0 / n, gross_max=1.5, net_target=0.0)
    return {
        "equal_weight": (op.EqualWeight(), long_only, False),
        "inverse_volatility": (op.InverseVolatility(), long_only, False),
        "risk_parity": (op.RiskParity(), long_only, False),
        "hrp": (op.HierarchicalRiskParity(), long_only, False),
        "minimum_variance": (op.MinimumVariance(), long_only, False),
        "mean_variance": (op.MeanVariance(risk_aversion=10.0), long_only, True),
        HEAVIEST: (op.MeanVariance(risk_aversion=10.0, turnover_cost=2e-4), long_short, True),
    }


def _timed(func: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median wall and median CPU seconds of ``repeat`` runs after one untimed run."""
    func()
    wall, cpu = [], []
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        func()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def _optimisation_times(ctx: Context, n: int, budget_ms: float) -> Iterator[Metric]:
    cov, expected, previous = _problem(n, ctx.params["seed"])
    times: dict[str, float] = {}
    cpu_times: dict[str, float] = {}
    yield Metric("load average (1 min) at start", os.getloadavg()[0], "")
    with threadpool_limits(limits=1):
        for name, (opt, cons, uses_expected) in _cases(n).items():
            ctx.status(f"{n} symbols: {name}")
            mu = expected if uses_expected else None
            result = opt.weights(cov, expected=mu, previous=previous, constraints=cons)
            if not result.converged or cons.violations(result.weights):
                raise AssertionError(f"{name} at {n} symbols did not converge to a feasible portfolio")
            wall, cpu = _timed(partial(opt.weights, cov, expected=mu, previous=previous, constraints=cons),
                               ctx.params["repeat"])
            times[name], cpu_times[name] = wall * 1e3, cpu * 1e3
            yield Metric(f"{name}, median", times[name], "ms", at_most=budget_ms if name == HEAVIEST else None)
            yield Metric(f"{name}, median CPU", cpu_times[name], "ms")
    ctx.record(f"median_ms_{n}", times)
    ctx.record(f"median_cpu_ms_{n}", cpu_times)
    ctx.record(f"load_average_1m_end_{n}", os.getloadavg()[0])


@benchmark(
    name="portfolio.optimise_50",
    goal="one optimisation at 50 symbols <= 50 ms for the heaviest optimiser (long-short mean-variance with turnover)",
    params={"repeat": 7, "seed": 1},
    quick={"repeat": 3},
)
def bench_optimise_50(ctx: Context) -> Iterator[Metric]:
    yield from _optimisation_times(ctx, 50, 50.0)


@benchmark(
    name="portfolio.optimise_500",
    goal="one optimisation at 500 symbols <= 2 s for the heaviest optimiser (long-short mean-variance with turnover)",
    params={"repeat": 3, "seed": 2},
    quick={"repeat": 1},
)
def bench_optimise_500(ctx: Context) -> Iterator[Metric]:
    yield from _optimisation_times(ctx, 500, 2000.0)
