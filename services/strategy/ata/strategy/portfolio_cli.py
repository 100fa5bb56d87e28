"""``ata portfolio evaluate`` (also ``ata strategy evaluate --portfolio``): walk-forward comparison of the
portfolio optimisers.

The universe is the real NASDAQ Composite and S&P 500 daily series shipped with ``arch``
(aligned on their common dates) plus seeded synthetic symbols (regime-switching, correlated,
:mod:`ata.quant.synthetic`, daily bars). Each optimiser runs walk-forward
(:func:`ata.quant.portfolio.backtest.walk_forward`); the table shows Sharpe, volatility, max
drawdown and turnover of each beside equal weight, plus how often the fallback took over.
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from ata.quant.portfolio.backtest import WalkForwardConfig, WalkForwardResult, momentum_expected_returns, walk_forward
from ata.quant.portfolio.constraints import Constraints
from ata.quant.portfolio.covariance import METHODS, CovarianceConfig, Method
from ata.quant.portfolio.optimisers import make_optimiser
from ata.quant.synthetic import SyntheticConfig, generate_bars
from ata.strategy.data import load_frame

app = typer.Typer(name="portfolio", help="Portfolio construction: walk-forward evaluation of the optimisers.",
                  no_args_is_help=True)
console = Console()


@app.callback()
def portfolio() -> None:
    """Portfolio construction commands (a group, so ``evaluate`` stays a named subcommand)."""

#: Evaluated in this order; equal weight is the benchmark row.
OPTIMISERS = ("equal_weight", "inverse_volatility", "risk_parity", "hrp", "minimum_variance", "mean_variance")


def universe(synthetic: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Daily simple returns (bars x symbols): NASDAQ, S&P 500, then ``synthetic`` generated symbols."""
    closes = pd.concat({name: load_frame(name)["Adj Close"] for name in ("nasdaq", "sp500")}, axis=1, join="inner").dropna()
    returns = closes.pct_change().dropna().to_numpy()
    names = ["NASDAQ", "SP500"]
    if synthetic:
        cfg = SyntheticConfig(n_symbols=synthetic, seed=seed, bars_per_year=252.0)
        close = generate_bars(cfg, returns.shape[0] + 1).close
        returns = np.hstack([returns, close[1:] / close[:-1] - 1.0])
        names += [f"SYN{i}" for i in range(synthetic)]
    return names, returns


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.1f}%"


@app.command()
def evaluate(
    *,
    synthetic: Annotated[int, typer.Option(min=0, max=50, help="synthetic symbols added to the two indices")] = 4,
    seed: Annotated[int, typer.Option(help="seed of the synthetic symbols")] = 7,
    window: Annotated[int, typer.Option(min=20, help="covariance window, bars")] = 252,
    method: Annotated[str, typer.Option(help=f"covariance estimator: {', '.join(METHODS)}")] = "ledoit_wolf",
    rebalance_every: Annotated[int, typer.Option(min=1, help="bars between rebalancing decisions")] = 21,
    cost_bps: Annotated[float, typer.Option(min=0.0, help="cost per unit of weight traded, basis points")] = 1.0,
    max_weight: Annotated[float, typer.Option(min=0.0, max=1.0, help="per-symbol cap (long-only, fully invested)")] = 0.5,
) -> None:
    """Walk-forward out of sample: each optimiser beside equal weight."""
    est_method: Method | None = next((m for m in METHODS if m == method), None)
    if est_method is None:
        raise typer.BadParameter(f"method must be one of {', '.join(METHODS)}")
    run_evaluation(synthetic=synthetic, seed=seed, window=window, method=est_method, rebalance_every=rebalance_every,
                   cost_bps=cost_bps, max_weight=max_weight)


def run_evaluation(*, synthetic: int = 4, seed: int = 7, window: int = 252, method: Method = "ledoit_wolf",
                   rebalance_every: int = 21, cost_bps: float = 1.0, max_weight: float = 0.5) -> None:
    """Run every optimiser walk-forward over :func:`universe` and print the table (see the module docstring);
    also behind ``ata strategy evaluate --portfolio``."""
    names, returns = universe(synthetic, seed)
    cfg = WalkForwardConfig(covariance=CovarianceConfig(method, window, min(window, 126)),
                            rebalance_every=rebalance_every, cost_bps=cost_bps)
    cons = Constraints.long_only_portfolio(len(names), max_weight=max(max_weight, 1.0 / len(names)))
    console.print(f"{len(names)} symbols ({', '.join(names)}), {returns.shape[0]} daily bars; {method} covariance over "
                  f"{window} bars, rebalanced every {rebalance_every} bars, {cost_bps:g} bp per unit traded")
    results: list[WalkForwardResult] = []
    for name in OPTIMISERS:
        console.print(f"  running {name} ...")
        opt = make_optimiser(name, **({"risk_aversion": 10.0, "turnover_cost": 2e-4} if name == "mean_variance" else {}))
        results.append(walk_forward(returns, opt, cons, cfg, momentum_expected_returns() if name == "mean_variance" else None))
    table = Table("optimiser", "Sharpe", "volatility", "max drawdown", "turnover / year", "CAGR", "fallbacks",
                  title="walk-forward, out of sample")
    for res in results:
        s = res.summary
        table.add_row(res.name, f"{s.sharpe:.2f}", _pct(s.annual_volatility), _pct(s.max_drawdown),
                      f"{res.turnover_annual:.2f}", _pct(s.cagr), str(res.fallbacks))
    console.print(table)
