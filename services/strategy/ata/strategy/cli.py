"""``ata strategy ...``: list strategies, evaluate walk-forward, optimise (GA), train RL, report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from ata.strategy import research
from ata.strategy.core.features import REGIME_LABELS
from ata.strategy.core.meta import MetaConfig, Method
from ata.strategy.core.policy import NumpyPolicy
from ata.strategy.data import load_bars
from ata.strategy.plots import plot_equity
from ata.strategy.policy_file import load_policy, save_policy
from ata.strategy.portfolio_cli import run_evaluation as run_portfolio_evaluation
from ata.strategy.registry import available_strategies

app = typer.Typer(name="strategy", help="Strategy library, meta-strategy evaluation, optimisation, RL training.",
                  no_args_is_help=True)
console = Console()

Dataset = Annotated[str, typer.Option(help="built-in dataset: sp500 or nasdaq")]


@app.command("list")
def list_strategies() -> None:
    """Installed strategies (built-in and plugins of the ``ata.strategies`` entry-point group)."""
    table = Table("name", "description", "parameters", "source")
    for name, cls in available_strategies().items():
        params = ", ".join(f"{k}={v}" for k, v in cls.params_type().to_dict().items())
        table.add_row(name, cls.description, params, cls.__module__)
    console.print(table)


def _policy(path: Path | None) -> NumpyPolicy | None:
    return None if path is None else load_policy(path)


@app.command()
def evaluate(  # noqa: PLR0917  (typer options are parameters)
    dataset: Dataset = "nasdaq",
    train_bars: Annotated[int, typer.Option(help="history before each out-of-sample window")] = 756,
    test_bars: Annotated[int, typer.Option(help="bars per out-of-sample window")] = 252,
    cost_bps: Annotated[float, typer.Option(help="cost per unit of weight traded, basis points")] = 1.0,
    policy: Annotated[Path | None, typer.Option(help="RL policy .npz for the rl method (trained before the tests)")] = None,
    plot: Annotated[Path, typer.Option(help="PNG of the out-of-sample equity curves")] = Path("strategy-evaluation.png"),
    portfolio: Annotated[bool, typer.Option(
        "--portfolio", help="evaluate the portfolio optimisers instead, on NASDAQ and S&P 500 together plus synthetic "
                            "symbols (as `ata portfolio evaluate`; --dataset and --policy do not apply)")] = False,
    synthetic: Annotated[int, typer.Option(min=0, max=50, help="with --portfolio: synthetic symbols added")] = 4,
) -> None:
    """Walk-forward out of sample: the meta-strategy beside each static strategy and buy-and-hold; with
    ``--portfolio``, each portfolio optimiser beside equal weight."""
    if portfolio:
        run_portfolio_evaluation(synthetic=synthetic, cost_bps=cost_bps)
        return
    bars = load_bars(dataset)
    close = np.array([b.close for b in bars])
    folds = research.walk_forward_folds(len(bars), train_bars, test_bars)
    regimes = research.regimes_before(bars)
    console.print(f"{dataset}: {len(bars)} bars, {len(folds)} out-of-sample windows of {test_bars} bars after {train_bars}")
    loaded = _policy(policy)
    curves: dict[str, np.ndarray] = {}
    config = MetaConfig(methods_by_regime=dict.fromkeys(REGIME_LABELS, Method.RL)) if loaded else MetaConfig()
    meta = research.run_meta(bars, config, policy=loaded, regimes=regimes)
    curves["meta-strategy"] = research.portfolio_returns(close, meta.frame["target"].to_numpy(), cost_bps)
    for name in config.strategies:
        targets = research.strategy_targets(bars, name, regimes=regimes)
        if np.any(targets != 0.0):
            curves[name] = research.portfolio_returns(close, targets, cost_bps)
    curves["buy-and-hold"] = research.portfolio_returns(close, np.ones(len(bars)), 0.0)
    table = Table("strategy", "Sharpe", "max drawdown", "CAGR", "volatility", title=f"{dataset} walk-forward out of sample")
    oos = {name: research.stitched(r, folds) for name, r in curves.items()}
    for name, r in oos.items():
        s = research.score(r)
        table.add_row(name, f"{s['sharpe']:.3f}", f"{s['max_drawdown']:.1%}", f"{s['cagr']:.2%}", f"{s['volatility']:.1%}")
    console.print(table)
    times = [b.ts_ns for b in bars[folds[0].test.start :]]
    plot_equity(plot, {n: research.equity_curve(r)[1:] for n, r in oos.items()}, times,
                title=f"{dataset}: walk-forward out-of-sample equity")
    console.print(f"equity curves written to {plot}")


@app.command("train-rl")
def train_rl(
    dataset: Dataset = "sp500",
    algorithm: Annotated[list[str], typer.Option("--algorithm", help="ppo and/or dqn")] = ["ppo", "dqn"],  # noqa: B006
    timesteps: Annotated[int, typer.Option(help="environment steps per algorithm")] = 20_000,
    seed: int = 0,
    out_dir: Annotated[Path, typer.Option(help="where the SB3 zips and numpy policies go")] = Path("models/strategy"),
) -> None:
    """Train PPO and DQN over the dataset's bars; save each SB3 zip and its numpy policy (.npz)."""
    from rich.progress import Progress

    from ata.strategy import rl
    from ata.strategy.rl_env import EnvData

    bars = load_bars(dataset)
    run = research.run_meta(bars, MetaConfig(), features=True, regimes=research.regimes_before(bars))
    data = EnvData.from_run(run)
    console.print(f"{dataset}: {len(data.returns)} usable bars, {len(data.strategies)} strategies, "
                  f"{data.features.shape[1]} features")
    with Progress(console=console) as progress:
        for algo in algorithm:
            task = progress.add_task(f"training {algo}", total=timesteps)
            trained = rl.train(algo, data, timesteps=timesteps, seed=seed,
                               progress=lambda n, task=task: progress.update(task, completed=n))
            zip_path = rl.save_model(trained, out_dir)
            npz_path = out_dir / f"{algo}.npz"
            save_policy(trained.policy, npz_path)
            progress.console.print(f"{algo}: SB3 model {zip_path}, numpy policy {npz_path}")


@app.command()
def optimize(  # noqa: PLR0917  (typer options are parameters)
    strategy: Annotated[str, typer.Argument(help="strategy to tune")] = "ma_crossover",
    dataset: Dataset = "sp500",
    eval_bars: Annotated[int, typer.Option(help="final bars held out of the search")] = 756,
    population: int = 16,
    generations: int = 6,
    seed: int = 0,
) -> None:
    """Genetic search of a strategy's parameters under walk-forward validation; never sees the evaluation window."""
    from rich.progress import Progress

    from ata.strategy.optimize import optimize as run_optimize

    bars = load_bars(dataset)
    with Progress(console=console) as progress:
        task = progress.add_task(f"optimising {strategy}", total=generations)
        result = run_optimize(bars, strategy, eval_bars=eval_bars, population=population, generations=generations, seed=seed,
                              progress=lambda gen, best: progress.update(task, completed=gen,
                                                                         description=f"optimising {strategy} (best {best:.3f})"))
    table = Table("parameters", "walk-forward fitness (dev)", "evaluation Sharpe", "evaluation max drawdown",
                  title=f"{strategy} on {dataset}: evaluation window = last {eval_bars} bars")
    for label, params, fit, ev in (("default", strategy_default(strategy), result.default_fitness, result.default_evaluation),
                                   ("optimised", result.best, result.fitness, result.evaluation)):
        table.add_row(f"{label}: {params.to_dict()}", f"{fit:.3f}", f"{ev['sharpe']:.3f}", f"{ev['max_drawdown']:.1%}")
    console.print(table)


def strategy_default(name: str) -> research.StrategyParams:
    return available_strategies()[name].params_type()


@app.command()
def report(
    dataset: Dataset = "sp500",
    horizon: Annotated[int, typer.Option(help="bars ahead the feature importance predicts")] = 5,
    plot: Annotated[Path, typer.Option(help="PNG of contributions per strategy and regime")] = Path("strategy-report.png"),
) -> None:
    """Self-assessment: contribution of each strategy per regime, feature importance, recommendations."""
    from ata.strategy import attribution
    from ata.strategy.core.features import FEATURE_NAMES
    from ata.strategy.plots import plot_heatmap

    bars = load_bars(dataset)
    run = research.run_meta(bars, MetaConfig(), features=True)
    contributions = attribution.contributions_by_regime(run)
    standalone = attribution.standalone_sharpe_by_regime(run)
    importance = attribution.feature_importance(run.features, attribution.forward_returns(run.frame["close"].to_numpy(), horizon),
                                                FEATURE_NAMES)
    for title, frame, fmt in (("contribution to meta-strategy return, by regime", contributions, "{:+.4f}"),
                              ("stand-alone Sharpe by regime", standalone, "{:.2f}")):
        table = Table("strategy", *map(str, frame.columns), title=title)
        for name, row in frame.iterrows():
            table.add_row(str(name), *(fmt.format(v) for v in row))
        console.print(table)
    table = Table("feature", "importance (R^2 drop)", "std", "selected", title=f"permutation importance, {horizon}-bar return")
    for row in importance.table.itertuples():
        table.add_row(row.feature, f"{row.importance_mean:+.5f}", f"{row.importance_std:.5f}", "yes" if row.selected else "")
    console.print(table)
    console.print("[bold]recommendations[/bold]")
    for line in attribution.recommendations(contributions, standalone, importance):
        console.print(f"- {line}")
    plot_heatmap(plot, contributions, title=f"{dataset}: strategy contribution by regime", value_label="summed return")
    console.print(f"plot written to {plot}")
