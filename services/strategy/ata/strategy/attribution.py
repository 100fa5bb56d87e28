"""Feature importance and selection, attribution of strategy contributions per regime, and a
self-assessment with recommendations.

- **Attribution**: the meta-strategy's target is ``sum_i weight_i * s_i`` exactly (see the conflict
  rule), so its gross return over bar ``t+1`` splits additively: strategy ``i`` contributes
  ``weight_i,t * s_i,t * r_{t+1}``. Summed per regime (the regime in force at ``t``), the
  contributions add up to the meta-strategy's gross return in that regime.
- **Importance**: a ridge regression of the next ``horizon`` bars' return on the online features,
  fitted on the first ``train_fraction`` of the rows; permutation importance (scikit-learn, R^2
  drop) on the rest. **Selection** keeps features whose mean importance exceeds its spread.
- **Recommendations** (rules): a strategy that loses in a regime both inside the meta-strategy
  (contribution < 0) and alone (Sharpe < 0) should be switched off there; the best stand-alone
  strategy of each regime should be favoured there; features the selection dropped are noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.inspection import permutation_importance
from sklearn.linear_model import Ridge

from ata.strategy.research import MetaRun, next_returns, score

FloatArray = npt.NDArray[np.float64]


def contributions_by_regime(run: MetaRun) -> pd.DataFrame:
    """Strategies x regimes: summed contribution to the meta-strategy's gross return."""
    r = next_returns(run.frame["close"].to_numpy())
    data = {name: run.frame[f"c_{name}"].to_numpy() * run.frame[f"s_{name}"].to_numpy() * r for name in run.strategies}
    frame = pd.DataFrame(data, index=run.frame.index)
    frame["regime"] = run.frame["regime"].replace("", "warm-up").to_numpy()
    return frame.groupby("regime").sum().T


def standalone_sharpe_by_regime(run: MetaRun) -> pd.DataFrame:
    """Strategies x regimes: annualised Sharpe of each strategy alone (strength as weight) in each regime."""
    r = next_returns(run.frame["close"].to_numpy())
    regimes = run.frame["regime"].replace("", "warm-up").to_numpy()
    table = {}
    for name in run.strategies:
        returns = run.frame[f"s_{name}"].to_numpy() * r
        table[name] = {regime: score(returns[regimes == regime])["sharpe"] for regime in sorted(set(regimes))}
    return pd.DataFrame(table).T


@dataclass(frozen=True)
class Importance:
    table: pd.DataFrame  # feature, importance_mean, importance_std, selected; sorted by importance
    selected: tuple[str, ...]


def feature_importance(features: FloatArray, target: FloatArray, names: tuple[str, ...], *, train_fraction: float = 0.7,
                       repeats: int = 10, seed: int = 0) -> Importance:
    """Permutation importance of ``features`` for ``target`` (rows with NaN dropped), out of sample."""
    keep = ~np.isnan(features).any(axis=1) & np.isfinite(target)
    x, y = features[keep], target[keep]
    split = int(len(y) * train_fraction)
    mean, std = x[:split].mean(axis=0), x[:split].std(axis=0)
    std[std == 0] = 1.0
    z = (x - mean) / std
    model = Ridge(alpha=1.0).fit(z[:split], y[:split])
    result = permutation_importance(model, z[split:], y[split:], n_repeats=repeats, random_state=seed, scoring="r2")
    table = pd.DataFrame({"feature": names, "importance_mean": result.importances_mean, "importance_std": result.importances_std})
    table["selected"] = table["importance_mean"] > table["importance_std"]
    table = table.sort_values("importance_mean", ascending=False, ignore_index=True)
    return Importance(table, tuple(table.loc[table["selected"], "feature"]))


def forward_returns(close: FloatArray, horizon: int) -> FloatArray:
    """``close_{t+h} / close_t - 1`` aligned at ``t`` (NaN at the end)."""
    out = np.full_like(close, np.nan)
    out[:-horizon] = close[horizon:] / close[:-horizon] - 1.0
    return out


def recommendations(contributions: pd.DataFrame, standalone: pd.DataFrame, importance: Importance | None = None) -> list[str]:
    out: list[str] = []
    for regime in contributions.columns:
        if regime == "warm-up" or regime not in standalone.columns:
            continue
        for strategy in contributions.index:
            c, s = contributions.at[strategy, regime], standalone.at[strategy, regime]
            if c < 0 and s < 0:
                out.append(f"switch off {strategy} in {regime}: contribution {c:+.4f}, stand-alone Sharpe {s:.2f}")
        sharpes = standalone[regime].dropna()
        if not sharpes.empty and sharpes.max() > 0:
            out.append(f"favour {sharpes.idxmax()} in {regime}: best stand-alone Sharpe {sharpes.max():.2f}")
    if importance is not None:
        dropped = [f for f in importance.table["feature"] if f not in importance.selected]
        if dropped:
            out.append(f"drop uninformative features: {', '.join(dropped)}")
    return out
