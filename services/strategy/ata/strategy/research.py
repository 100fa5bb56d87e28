"""Offline runs of the pure cores over historical bars: the shared engine of evaluate, optimise,
train-rl and the attribution report.

Trading convention: the target decided at the close of bar ``t`` is held over bar ``t+1``, so it
earns ``w_t * r_{t+1}`` with ``r_{t+1} = close_{t+1} / close_t - 1``, less ``cost_bps`` per unit
of weight traded. Regimes come from :class:`ata.strategy.core.regimes.RegimeProxy` (as of the
previous bar, like the live engine's strictly-earlier rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from ata.quant import metrics
from ata.strategy.core.features import FEATURE_NAMES
from ata.strategy.core.meta import MetaConfig, MetaStrategy
from ata.strategy.core.policy import NumpyPolicy
from ata.strategy.core.regimes import label_series
from ata.strategy.core.strategies import BUILTIN, Bar, MarketContext, Strategy, StrategyParams

FloatArray = npt.NDArray[np.float64]


def regimes_before(bars: Sequence[Bar]) -> list[str]:
    """The regime in force at each bar: the proxy's label after the previous bar."""
    labels = label_series(list(bars))
    return ["", *labels[:-1]]


@dataclass(frozen=True)
class MetaRun:
    """Per-bar outputs of a meta-strategy run (index: bar time)."""

    frame: pd.DataFrame  # close, target, regime, method, agreement, s_<name>, c_<name> (contribution weight)
    features: FloatArray  # (n_bars, n_features), NaN rows during warm-up
    strategies: tuple[str, ...]


def run_meta(bars: Sequence[Bar], config: MetaConfig | None = None, *, policy: NumpyPolicy | None = None,
             regimes: Sequence[str] | None = None, sentiment: Sequence[float | None] | None = None,
             features: bool = False) -> MetaRun:
    """Run the meta-strategy over ``bars``; ``features`` also records the online features."""
    config = config or MetaConfig()
    meta = MetaStrategy(config, policy=policy, features=features)
    regimes = regimes_before(bars) if regimes is None else regimes
    names = config.strategies
    n = len(bars)
    target = np.zeros(n)
    strengths = np.zeros((n, len(names)))
    weights = np.zeros((n, len(names)))
    agreement = np.ones(n)
    methods = [""] * n
    features = np.full((n, len(FEATURE_NAMES)), np.nan)
    column = {name: j for j, name in enumerate(names)}
    for i, bar in enumerate(bars):
        context = MarketContext(regimes[i], None if sentiment is None else sentiment[i])
        decision = meta.on_bar("X", bar, context)
        book = meta.books["X"]
        if book.last_features is not None:
            features[i] = book.last_features
        if decision is None:
            continue
        target[i] = decision.target_weight
        agreement[i] = decision.agreement
        methods[i] = decision.method.value
        for c in decision.contributions:
            strengths[i, column[c.strategy]] = c.strength
            weights[i, column[c.strategy]] = c.weight
    index = pd.DatetimeIndex([pd.Timestamp(b.ts_ns) for b in bars])
    frame = pd.DataFrame({"close": [b.close for b in bars], "target": target, "regime": list(regimes),
                          "method": methods, "agreement": agreement}, index=index)
    for name, j in column.items():
        frame[f"s_{name}"] = strengths[:, j]
        frame[f"c_{name}"] = weights[:, j]
    return MetaRun(frame, features, tuple(names))


def strategy_targets(bars: Sequence[Bar], name: str, params: StrategyParams | None = None,
                     regimes: Sequence[str] | None = None, sentiment: Sequence[float | None] | None = None) -> FloatArray:
    """One strategy alone, its strength used as the target weight (0 during warm-up)."""
    strategy: Strategy = BUILTIN[name](params)
    out = np.zeros(len(bars))
    for i, bar in enumerate(bars):
        context = MarketContext("" if regimes is None else regimes[i], None if sentiment is None else sentiment[i])
        signal = strategy.update(bar, context)
        if signal is not None:
            out[i] = signal.strength
    return out


def next_returns(close: FloatArray) -> FloatArray:
    """``r_{t+1}`` aligned at ``t`` (0 for the last bar)."""
    out = np.zeros_like(close)
    out[:-1] = close[1:] / close[:-1] - 1.0
    return out


def portfolio_returns(close: FloatArray, targets: FloatArray, cost_bps: float = 0.0) -> FloatArray:
    """Per-bar returns earned by holding ``targets[t]`` over bar ``t+1`` (aligned at ``t``)."""
    traded = np.abs(np.diff(targets, prepend=0.0))
    return np.asarray(targets * next_returns(close) - traded * cost_bps / 1e4, dtype=np.float64)


def equity_curve(returns: FloatArray) -> FloatArray:
    """Equity starting at 1.0 before the first return (``len(returns) + 1`` points)."""
    return np.concatenate(([1.0], np.cumprod(1.0 + returns)))


@dataclass(frozen=True)
class Fold:
    train: slice
    test: slice


def walk_forward_folds(n_bars: int, train_bars: int, test_bars: int) -> list[Fold]:
    """Consecutive out-of-sample test windows, each preceded by ``train_bars`` of history."""
    if train_bars < 1 or test_bars < 1:
        raise ValueError("train_bars and test_bars must be positive")
    folds = []
    start = train_bars
    while start < n_bars - 1:
        end = min(start + test_bars, n_bars)
        folds.append(Fold(slice(start - train_bars, start), slice(start, end)))
        start = end
    return folds


def stitched(returns: FloatArray, folds: Sequence[Fold]) -> FloatArray:
    """The returns of the test windows, concatenated in time order."""
    return np.concatenate([returns[f.test] for f in folds]) if folds else np.zeros(0)


def score(returns: FloatArray, periods_per_year: float = 252.0) -> dict[str, float]:
    """Sharpe, max drawdown, CAGR and volatility of a return stream, via ``ata.quant.metrics``."""
    equity = equity_curve(returns)
    return {
        "sharpe": metrics.sharpe_ratio(returns, periods_per_year=periods_per_year),
        "max_drawdown": metrics.max_drawdown(equity),
        "cagr": metrics.cagr(equity, periods_per_year),
        "volatility": metrics.annual_volatility(returns, periods_per_year),
    }
